"""Reading policies from YAML/JSON and resolving the policy a deployment names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from canarystream.documents import read_document
from canarystream.errors import PolicyError, field_errors
from canarystream.policy.model import Policy

__all__ = ["PolicyRegistry", "load_policy", "policy_from_mapping"]


def policy_from_mapping(data: Any, *, source: str = "policy") -> Policy:
    """Validate a decoded policy object; errors name the field, e.g. ``stages.2.min_duration``."""
    if not isinstance(data, Mapping):
        raise PolicyError(f"{source}: a policy is a mapping, got {type(data).__name__}")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {where or '<policy>'}: {msg}" for where, msg in field_errors(exc)]
        raise PolicyError(f"{source}: invalid policy\n" + "\n".join(lines)) from exc


def load_policy(path: str | Path) -> Policy:
    """Load and validate a policy file (``.yaml``, ``.yml`` or ``.json``)."""
    try:
        data = read_document(path, "policy", PolicyError)
    except RecursionError:
        raise PolicyError(f"{path}: not a policy: nested too deeply") from None
    except ValueError as exc:  # the YAML reader's own limits, e.g. an int of 5,000 digits
        raise PolicyError(f"{path}: not a policy: {exc}") from exc
    return policy_from_mapping(data, source=str(path))


class PolicyRegistry:
    """Named policies; the default policy is always present under ``default``."""

    def __init__(self, policies: Iterable[Policy] = (), *, default: Policy | None = None) -> None:
        self.default = default or Policy()
        self._by_name: dict[str, Policy] = {self.default.name: self.default}
        for policy in policies:
            self._by_name[policy.name] = policy

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path]) -> PolicyRegistry:
        """Load every policy file named, or found in the directories named."""
        policies: list[Policy] = []
        for raw in paths:
            path = Path(raw)
            files = (
                sorted(p for p in path.iterdir() if p.suffix in {".yaml", ".yml", ".json"})
                if path.is_dir()
                else [path]
            )
            policies.extend(load_policy(file) for file in files)
        return cls(policies)

    def names(self) -> list[str]:
        """Names of the known policies, sorted."""
        return sorted(self._by_name)

    def resolve(self, spec: str | Mapping[str, Any] | None) -> Policy:
        """The policy a deployment asks for: absent → default, a name, or an inline object."""
        if spec is None:
            return self.default
        if isinstance(spec, str):
            try:
                return self._by_name[spec]
            except KeyError:
                raise PolicyError(
                    f"policy: unknown policy {spec!r}; known: {', '.join(self.names())}"
                ) from None
        return policy_from_mapping(spec, source="policy (inline)")

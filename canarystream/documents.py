"""Reading YAML or JSON documents (policies, scenarios) with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from canarystream.errors import CanarystreamError

__all__ = ["read_document"]


def read_document(path: str | Path, what: str, error: type[CanarystreamError]) -> Any:
    """The decoded content of a ``.json`` file, or of a YAML one (any other suffix).

    Failures raise ``error`` naming the file and saying what was expected, e.g.
    ``policy.yaml: not valid YAML: ...`` or ``x.json: cannot read scenario: No such file``.
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from exc
    is_json = path.suffix == ".json"
    try:
        return orjson.loads(text) if is_json else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise error(f"{path}: not valid {'JSON' if is_json else 'YAML'}: {exc}") from exc

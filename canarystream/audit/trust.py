"""Who may write each audited topic: the keys the recorder checks a message against before it
chains it.

Pure: the recorder hands in the record kind of the topic, the exact message bytes and the
signature header; no I/O. A message counts as its writer's when its signature
(``canarystream-signature``, over the exact bytes) verifies with that writer's key:

* a verdict or a decision: the worker's key (the decisions' verify keys);
* an actuation report: the key of the actuator instance the report names in ``actuator``
  (``kind/name``); a report naming no instance with a key (one of the format written before
  that field, or not JSON) is ``unknown_actuator``.

A message counts, too, only in the chain its content names (:meth:`TrailTrust.filed`): a
genuine verdict, decision or report copied under another Kafka key is ``key_mismatch``.

A message that does not count (``unsigned``, ``bad_signature``, ``unknown_actuator``,
``key_mismatch``) is not chained: whoever can write ``canary.verdicts.v1`` cannot put an
"accepted" verdict in the trail without the worker's key. A message that counts but is no
record of its topic is chained as ``unreadable``: a trusted writer's contract mismatch, not a
forgery.

>>> from canarystream.contracts.signing import Signer
>>> worker = Signer.hmac(b"k")
>>> trust = TrailTrust(worker=worker.verifier(), actuators={})
>>> trust.check(AuditKind.VERDICT, b"{}", worker.sign(b"{}").encode()) is None
True
>>> trust.check(AuditKind.VERDICT, b"{}", None).reason
'unsigned'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from canarystream.audit.chain import chain_name
from canarystream.contracts.audit import AuditKind
from canarystream.contracts.signing import Verifier

__all__ = ["Refusal", "TrailTrust"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message does not count as its writer's: a dead-letter reason and a sentence."""

    reason: str  # unsigned, bad_signature, unknown_actuator or key_mismatch
    detail: str


class TrailTrust:
    """The writers' keys of the audited topics.

    Parameters
    ----------
    worker:
        Verifies verdicts and decisions; None: they are taken unchecked (insecure mode).
    actuators:
        Each actuator instance (``kind/name``) and the verifier of its reports; None: reports
        are taken unchecked (insecure mode). An empty mapping trusts no report.
    """

    def __init__(
        self, *, worker: Verifier | None, actuators: Mapping[str, Verifier] | None
    ) -> None:
        self.worker = worker
        self.actuators = None if actuators is None else dict(actuators)

    @classmethod
    def unverified(cls) -> TrailTrust:
        """Every message taken unchecked: the insecure mode, for local drills only."""
        return cls(worker=None, actuators=None)

    @property
    def checks_all(self) -> bool:
        """Whether every kind of message is checked against a key."""
        return self.worker is not None and self.actuators is not None

    def check(self, kind: AuditKind, raw: bytes, signature: bytes | str | None) -> Refusal | None:
        """None when ``raw`` counts as written by its topic's writer, else why not."""
        writer = self._writer(kind, raw)
        if writer is None or isinstance(writer, Refusal):
            return writer
        verifier, who = writer
        reason = verifier.check(raw, signature)
        if reason is None:
            return None
        if reason == "unsigned":
            return Refusal(reason, f"no signature; a {kind.value} is signed by {who}")
        return Refusal(reason, f"the signature is not {who}'s")

    def _writer(self, kind: AuditKind, raw: bytes) -> tuple[Verifier, str] | Refusal | None:
        """The verifier of the message's writer and who that is; None: taken unchecked."""
        if kind is not AuditKind.ACTUATION:
            return None if self.worker is None else (self.worker, "the worker")
        if self.actuators is None:
            return None
        actuator = _actuator_of(raw)
        if actuator is None:
            return Refusal(
                "unknown_actuator",
                "the report names no actuator (written before reports named their actuator, "
                "or no report): no key to check it with",
            )
        verifier = self.actuators.get(actuator)
        if verifier is None:
            return Refusal(
                "unknown_actuator",
                f"the report names actuator {actuator[:200]!r}, whose key the recorder does "
                "not hold",
            )
        return verifier, f"actuator {actuator!r}"

    @staticmethod
    def filed(kind: AuditKind, raw: bytes, key: bytes | None) -> Refusal | None:
        """None when ``raw`` is keyed by the chain its content names, else why not.

        The worker keys a verdict by its deployment, else its service, else nothing; decisions
        and reports are keyed by their deployment. A message naming no deployment (no record
        of its topic) is filed where its key says. Checked whatever the keys, so even unchecked
        messages stay in their own chains.
        """
        data = _object(raw)
        if data is None or "deployment" not in data:
            return None
        named = data.get("deployment")
        if kind is AuditKind.VERDICT:
            named = named or data.get("service") or ""
        if not isinstance(named, str) or chain_name(key) == chain_name(
            named.encode("utf-8", "surrogatepass")
        ):
            return None
        return Refusal(
            "key_mismatch",
            f"the {kind.value} names deployment {named[:200]!r} but is keyed "
            f"{chain_name(key)[:200]!r}: it would land in another chain",
        )


def _object(raw: bytes) -> dict[str, Any] | None:
    """``raw`` as a JSON object; None when it is none."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _actuator_of(raw: bytes) -> str | None:
    """The ``actuator`` a report names; None when it names none (or is no JSON object)."""
    data = _object(raw)
    actuator = data.get("actuator") if data is not None else None
    return actuator if isinstance(actuator, str) and actuator else None

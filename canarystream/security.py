"""What a service needs before it starts: its keys, or the explicit, loudly reported insecure mode.

Signing is on by default (``signing_scheme: ed25519``): the worker refuses to start without
its signing key and its access file (who may steer which rollouts), and an actuator without
the keys that verify decisions, with an error that names the settings and how to make them.
``insecure: true`` (``CANARYSTREAM_INSECURE``, ``--insecure``) lets either run without them,
for local drills: every start then logs, at WARNING, what an attacker can do, and the
service's ``/metrics`` shows ``canarystream_insecure_mode 1``. Keys and an access file that
are configured are used even then.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Gauge

from canarystream.audit.trust import TrailTrust
from canarystream.contracts.signing import Signer, Verifier
from canarystream.contracts.topics import (
    ACTUATIONS_TOPIC,
    DECISIONS_TOPIC,
    DEPLOYMENTS_TOPIC,
    VERDICTS_TOPIC,
)
from canarystream.errors import ConfigError

__all__ = [
    "INSECURE_GAUGE",
    "actuator_verifier",
    "insecure_gauge",
    "insecure_warnings",
    "recorder_trust",
    "warn_if_insecure",
    "worker_access_file",
    "worker_signer",
]

INSECURE_GAUGE = "canarystream_insecure_mode"

Role = Literal["worker", "actuator", "notifier", "audit recorder"]

_OPT_OUT = (
    "or, for a local drill only, run without signatures with --insecure (CANARYSTREAM_INSECURE=1)"
)


def _scheme_off(settings: Any) -> bool:
    """True when signatures are turned off; an error unless the insecure mode is explicit."""
    if settings.signing_scheme != "none":
        return False
    if not settings.insecure:
        raise ConfigError(
            "CANARYSTREAM_SIGNING_SCHEME (signing_scheme) is none: decisions would be unsigned. "
            "Use ed25519 (the default) with keys from `canarystream keys generate`, " + _OPT_OUT
        )
    return True


def worker_signer(settings: Any) -> Signer | None:
    """The worker's signer for decisions, verdicts and heartbeats; None only in insecure mode.

    Without a key, :class:`ConfigError` names the settings and how to make a key.
    """
    if _scheme_off(settings):
        return None
    if settings.signing_key is None:
        if settings.insecure:
            return None
        raise ConfigError(
            "the worker signs its decisions and heartbeats, and CANARYSTREAM_SIGNING_KEY "
            f"(signing_key) is not set: make a key pair with `canarystream keys generate "
            f"worker` and set it to the content of worker.key (signing_scheme "
            f"{settings.signing_scheme}); give the actuators worker.pub in "
            "CANARYSTREAM_VERIFY_KEYS; " + _OPT_OUT
        )
    return Signer.from_settings(settings.signing_scheme, settings.signing_key.get_secret_value())


def worker_access_file(settings: Any) -> Path | None:
    """The worker's access file; None (everyone obeyed) only in insecure mode.

    Without one, :class:`ConfigError` names the setting, the option and how to write one.
    """
    if settings.access_file is not None or settings.insecure:
        return settings.access_file  # type: ignore[no-any-return]
    raise ConfigError(
        "the worker obeys only announcements and control events signed by a principal its "
        "access file grants, and CANARYSTREAM_ACCESS_FILE (access_file, --access) is not set: "
        "write one after deploy/access.example.yaml, with the public key "
        "`canarystream keys generate NAME` prints for each principal (the deploy system, the "
        "people who approve or abort, and the worker for its heartbeats); "
        "or, for a local drill only, obey anyone who can write to "
        f"{DEPLOYMENTS_TOPIC} with --insecure (CANARYSTREAM_INSECURE=1)"
    )


def _worker_verifier(settings: Any, why: str) -> Verifier | None:
    """A verifier of what the worker signs; None only in insecure mode. ``why`` opens the
    error that names the settings when no key is configured."""
    if _scheme_off(settings):
        return None
    keys = [key.get_secret_value() for key in settings.verify_keys]
    if not keys and settings.signing_key is not None and settings.signing_scheme == "hmac-sha256":
        keys = [settings.signing_key.get_secret_value()]  # one shared secret for both ends
    if not keys:
        if settings.insecure:
            return None
        raise ConfigError(
            f"{why}, and CANARYSTREAM_VERIFY_KEYS "
            "(verify_keys) is empty: set it to a JSON list holding the worker's public key "
            "(worker.pub from `canarystream keys generate worker`; signing_scheme "
            f"{settings.signing_scheme}); " + _OPT_OUT
        )
    return Verifier.from_settings(settings.signing_scheme, keys)


def actuator_verifier(settings: Any) -> Verifier | None:
    """The actuators' verifier of decisions; None (unsigned decisions applied) only in
    insecure mode. Without keys, :class:`ConfigError` names the settings."""
    return _worker_verifier(settings, "actuators act only on decisions the worker signed")


def recorder_trust(settings: Any, log: logging.Logger) -> TrailTrust:
    """The audit recorder's keys: the worker's (``verify_keys``) for verdicts and decisions,
    each actuator instance's (``audit_actuator_keys``) for its reports.

    Without the worker's key, :class:`ConfigError` names the setting, unless in insecure mode,
    where verdicts and decisions are chained unchecked. Without actuator keys, no report is
    chained (unchecked in insecure mode). Either way the start says so at WARNING.
    """
    worker = _worker_verifier(
        settings, "the audit recorder chains only the verdicts and decisions the worker signed"
    )
    keys: dict[str, Verifier] = {}
    for instance, key in settings.audit_actuator_keys.items():
        try:
            keys[instance] = Verifier(ed25519_keys=[key])
        except ConfigError as exc:
            raise ConfigError(f"audit_actuator_keys.{instance}: {exc}") from exc
    actuators = None if not keys and settings.insecure else keys
    trust = TrailTrust(worker=worker, actuators=actuators)
    if warn_if_insecure(settings, "audit recorder", log, signed=trust.checks_all):
        return trust
    if not actuators:
        log.warning(
            "CANARYSTREAM_AUDIT_ACTUATOR_KEYS (audit_actuator_keys) is empty: every actuation "
            "report is left out of the trail (dead-lettered). Map each actuator instance "
            '(kind/name) to its public key: {"haproxy/edge-1": "<edge-1.pub>"}'
        )
    return trust


def insecure_warnings(
    role: Role,
    *,
    signed: bool,
    authenticated: bool = True,
) -> list[str]:
    """The lines a service in insecure mode logs at every start: what is off and what an
    attacker with write access to a topic can then do."""
    lines = [
        f"INSECURE MODE: this {role} runs with insecure=true (--insecure, "
        "CANARYSTREAM_INSECURE); for local drills only, never in production."
    ]
    if role == "worker" and not signed:
        lines.append(
            f"INSECURE: decisions are not signed; anyone who can write to {DECISIONS_TOPIC} "
            "can steer traffic."
        )
    if role == "worker" and not authenticated:
        lines.append(_unauthenticated_line())
    if role == "notifier" and not signed:
        lines.append(
            "INSECURE: unsigned decisions notify people; anyone who can write to "
            f"{DECISIONS_TOPIC} can page on-call or announce rollbacks that never happened."
        )
    if role == "actuator" and not signed:
        lines.append(
            "INSECURE: unsigned decisions are applied; anyone who can write to "
            f"{DECISIONS_TOPIC} can move traffic and trigger compensation hooks."
        )
    if role == "audit recorder" and not signed:
        lines.append(
            "INSECURE: messages without a key to check them are chained unchecked; anyone who "
            f"can write to {VERDICTS_TOPIC}, {DECISIONS_TOPIC} or {ACTUATIONS_TOPIC} can put "
            "a forged verdict, decision or report in the audit trail."
        )
    lines.append(
        "INSECURE: make keys with `canarystream keys generate NAME` and drop --insecure to "
        "run securely."
    )
    return lines


def warn_if_insecure(
    settings: Any,
    role: Role,
    log: logging.Logger,
    *,
    signed: bool,
    authenticated: bool = True,
) -> bool:
    """Log :func:`insecure_warnings` at WARNING when ``settings.insecure``; whether it did."""
    if not settings.insecure:
        return False
    for line in insecure_warnings(role, signed=signed, authenticated=authenticated):
        log.warning("%s", line)
    return True


def _unauthenticated_line() -> str:
    return (
        "INSECURE: announcements and control events are not authenticated; anyone who "
        f"can write to {DEPLOYMENTS_TOPIC} can start, approve, pause or abort rollouts."
    )


def insecure_gauge(registry: CollectorRegistry, insecure: bool) -> Gauge:
    """``canarystream_insecure_mode`` on ``registry``: 1 in insecure mode, else 0."""
    gauge = Gauge(
        INSECURE_GAUGE,
        "1 when this service runs with insecure=true (signatures or authentication may be "
        "off), else 0.",
        registry=registry,
    )
    gauge.set(1 if insecure else 0)
    return gauge

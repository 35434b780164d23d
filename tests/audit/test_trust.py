"""Who may write each audited topic: the recorder's check of every message against its
writer's key, and the settings that give it those keys."""

from __future__ import annotations

import hashlib
import logging

import orjson
import pytest
from typer.testing import CliRunner

from canarystream.audit.trust import TrailTrust
from canarystream.cli import app
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.audit import AuditKind
from canarystream.contracts.verdict import InputVerdict
from canarystream.errors import ConfigError
from canarystream.security import recorder_trust
from canarystream.settings import load_settings
from tests.support.access import principal
from tests.support.actuators import make_decision

WORKER, EDGE, OTHER, MALLORY = (
    principal("worker"),
    principal("edge"),
    principal("other"),
    principal("mallory"),
)


def accepted_verdict() -> bytes:
    raw = b'{"type":"deployment_started"}'
    return (
        InputVerdict(
            id="canary.deployments.v1/0@1",
            ts=1_790_000_000.0,
            event_type="deployment_started",
            deployment="d1",
            service="shop",
            principal="deploy-bot",
            verdict="accepted",
            sha256=hashlib.sha256(raw).hexdigest(),
        )
        .model_dump_json()
        .encode()
    )


def report(actuator: str | None) -> bytes:
    data = ActuationReport(
        actuation_id="a-1",
        decision_id="d1-0",
        deployment="d1",
        service="shop",
        seq=0,
        action="advance",
        backend="haproxy",
        status=ActuationStatus.APPLIED,
        ts=1_790_000_100.0,
        traffic_percent_requested=10.0,
        actuator=actuator,
    ).model_dump(mode="json")
    if actuator is None:  # the format before reports named their actuator
        del data["actuator"]
    return orjson.dumps(data)


def trust() -> TrailTrust:
    return TrailTrust(
        worker=WORKER.signer.verifier(),
        actuators={"haproxy/edge-1": EDGE.signer.verifier()},
    )


def sig(who, raw: bytes) -> bytes:
    return who.sign(raw).encode()


@pytest.mark.parametrize("kind", [AuditKind.VERDICT, AuditKind.DECISION])
def test_verdicts_and_decisions_count_only_with_the_worker_signature(kind: AuditKind) -> None:
    raw = accepted_verdict() if kind is AuditKind.VERDICT else make_decision(0).model_dump_json()
    raw = raw.encode() if isinstance(raw, str) else raw
    assert trust().check(kind, raw, sig(WORKER, raw)) is None
    assert trust().check(kind, raw, None).reason == "unsigned"
    forged = trust().check(kind, raw, sig(MALLORY, raw))
    assert forged.reason == "bad_signature"
    assert "worker" in forged.detail
    # The worker's signature over other bytes does not carry over.
    assert trust().check(kind, raw + b" ", sig(WORKER, raw)).reason == "bad_signature"


def test_a_report_counts_only_with_the_key_of_the_actuator_it_names() -> None:
    raw = report("haproxy/edge-1")
    assert trust().check(AuditKind.ACTUATION, raw, sig(EDGE, raw)) is None
    assert trust().check(AuditKind.ACTUATION, raw, None).reason == "unsigned"
    # Another actuator's key, or the worker's, does not make a report of edge-1.
    assert trust().check(AuditKind.ACTUATION, raw, sig(OTHER, raw)).reason == "bad_signature"
    assert trust().check(AuditKind.ACTUATION, raw, sig(WORKER, raw)).reason == "bad_signature"
    stranger = report("haproxy/edge-2")
    refusal = trust().check(AuditKind.ACTUATION, stranger, sig(EDGE, stranger))
    assert refusal.reason == "unknown_actuator"
    assert "haproxy/edge-2" in refusal.detail


def test_reports_of_the_old_format_and_garbage_name_no_actuator() -> None:
    old = report(None)
    refusal = trust().check(AuditKind.ACTUATION, old, sig(EDGE, old))
    assert refusal.reason == "unknown_actuator"
    assert "names no actuator" in refusal.detail
    for raw in (b"{not json", b"[1]", b'{"actuator": 7}'):
        assert trust().check(AuditKind.ACTUATION, raw, sig(EDGE, raw)).reason == "unknown_actuator"


def test_a_message_filed_under_another_deployment_than_it_names_does_not_count() -> None:
    """A genuine "accepted" verdict (or decision, or report) copied under another key would
    land in that deployment's chain."""
    verdict, reported = accepted_verdict(), report("haproxy/edge-1")
    assert trust().filed(AuditKind.VERDICT, verdict, b"d1") is None
    moved = trust().filed(AuditKind.VERDICT, verdict, b"d2")
    assert moved.reason == "key_mismatch"
    assert "'d1'" in moved.detail and "'d2'" in moved.detail
    assert trust().filed(AuditKind.ACTUATION, reported, b"d1") is None
    assert trust().filed(AuditKind.ACTUATION, reported, b"d2").reason == "key_mismatch"
    decision = make_decision(0, deployment="d1").model_dump_json().encode()
    assert trust().filed(AuditKind.DECISION, decision, None).reason == "key_mismatch"
    # A verdict on an input naming no deployment is keyed by its service, or by nothing.
    data = orjson.loads(verdict)
    by_service = orjson.dumps({**data, "deployment": None})
    assert trust().filed(AuditKind.VERDICT, by_service, b"shop") is None
    by_nothing = orjson.dumps({**data, "deployment": None, "service": None})
    assert trust().filed(AuditKind.VERDICT, by_nothing, None) is None
    # What names no deployment (no record) is filed where its key says.
    assert trust().filed(AuditKind.DECISION, b"{not json", b"any") is None
    # Even in insecure mode: a message is chained where its content says it belongs.
    assert TrailTrust.unverified().filed(AuditKind.VERDICT, verdict, b"d2") is not None


def test_a_worker_signed_message_that_is_no_record_still_counts_as_its_writers() -> None:
    # Chained as unreadable afterwards: a contract mismatch of a trusted writer, not a forgery.
    raw = b"{not json"
    assert trust().check(AuditKind.DECISION, raw, sig(WORKER, raw)) is None


def test_without_keys_nothing_is_checked_and_no_actuator_is_trusted_by_default() -> None:
    raw = accepted_verdict()
    assert TrailTrust.unverified().check(AuditKind.VERDICT, raw, None) is None
    assert TrailTrust.unverified().check(AuditKind.ACTUATION, b"x", None) is None
    no_actuators = TrailTrust(worker=WORKER.signer.verifier(), actuators={})
    reported = report("haproxy/edge-1")
    assert no_actuators.check(AuditKind.ACTUATION, reported, sig(EDGE, reported)).reason == (
        "unknown_actuator"
    )


# ------------------------------------------------------------------ settings


def test_the_recorder_needs_the_worker_key_and_says_which_setting() -> None:
    with pytest.raises(ConfigError, match=r"CANARYSTREAM_VERIFY_KEYS.*worker.pub"):
        recorder_trust(load_settings(), logging.getLogger("t"))


def test_the_recorder_takes_the_worker_and_actuator_keys_from_settings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(
        verify_keys=[WORKER.public_pem.decode()],
        audit_actuator_keys={"haproxy/edge-1": EDGE.public_pem.decode()},
    )
    with caplog.at_level(logging.WARNING):
        made = recorder_trust(settings, logging.getLogger("t"))
    assert not caplog.records
    verdict, reported = accepted_verdict(), report("haproxy/edge-1")
    assert made.check(AuditKind.VERDICT, verdict, sig(WORKER, verdict)) is None
    assert made.check(AuditKind.ACTUATION, reported, sig(EDGE, reported)) is None
    assert made.check(AuditKind.VERDICT, verdict, sig(MALLORY, verdict)) is not None


def test_without_actuator_keys_the_recorder_warns_that_reports_stay_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(verify_keys=[WORKER.public_pem.decode()])
    with caplog.at_level(logging.WARNING):
        recorder_trust(settings, logging.getLogger("t"))
    assert "CANARYSTREAM_AUDIT_ACTUATOR_KEYS" in caplog.text
    assert "left out of the trail" in caplog.text


def test_a_bad_actuator_key_is_an_error_naming_the_actuator() -> None:
    settings = load_settings(
        verify_keys=[WORKER.public_pem.decode()], audit_actuator_keys={"haproxy/edge-1": "nope"}
    )
    with pytest.raises(ConfigError, match=r"audit_actuator_keys\.haproxy/edge-1"):
        recorder_trust(settings, logging.getLogger("t"))


def test_insecure_mode_records_unverified_and_says_so_at_every_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(insecure=True)
    with caplog.at_level(logging.WARNING):
        made = recorder_trust(settings, logging.getLogger("t"))
    assert made.check(AuditKind.VERDICT, b"anything", None) is None
    assert "INSECURE" in caplog.text
    assert "canary.verdicts.v1" in caplog.text
    # Keys configured are used even then.
    settings = load_settings(insecure=True, verify_keys=[WORKER.public_pem.decode()])
    made = recorder_trust(settings, logging.getLogger("t"))
    assert made.check(AuditKind.VERDICT, b"anything", None).reason == "unsigned"


def test_audit_record_without_the_worker_key_exits_2_naming_the_setting() -> None:
    result = CliRunner().invoke(
        app,
        ["audit", "record"],
        env={"CANARYSTREAM_VERIFY_KEYS": "[]", "CANARYSTREAM_INSECURE": "0"},
    )
    assert result.exit_code == 2
    message = result.output.replace("\n", "")
    assert "CANARYSTREAM_VERIFY_KEYS (verify_keys) is empty" in message
    assert "--insecure" in message

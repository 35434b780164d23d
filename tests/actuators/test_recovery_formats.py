"""The fence rebuild reads every released format of the actuation report.

Reports written before the ``actuator`` field existed name no instance: the rebuild reads them
without failing and ignores them (no instance can tell they are its own), counting them in
``unattributed``. A decision only they record (no later report of the instance on its rollout)
is then held off by the actuator's maximum decision age alone (``actuator_max_decision_age``).
"""

from __future__ import annotations

from canarystream.actuators.fencing import Admission, Fence
from canarystream.actuators.recovery import FenceRecovery
from canarystream.contracts.actuation import ActuationReport
from canarystream.contracts.decision import decision_id_for
from canarystream.kafka.connection import Connection
from canarystream.settings import load_settings
from tests.support.access import principal

# A report as actuators wrote it before reports named their actuator (release format, bytes as
# ``orjson.dumps(report.model_dump(mode="json"))`` produced them).
OLD_REPORT = (
    b'{"type":"actuation","actuation_id":"7c1e0b7e-5b7a-4a55-9d7e-1f0c2b4d9a10",'
    b'"decision_id":"456fb162-a3d9-5ef6-b462-305829066989","deployment":"shop-2024-06","service":"shop",'
    b'"seq":1,"action":"advance","backend":"haproxy","status":"applied","ts":1790000105.25,'
    b'"traffic_percent_requested":25.0,"traffic_percent_observed":25.0,"attempts":1,'
    b'"dry_run":false,"detail":"canary weight set to 25%"}'
)
CURRENT_REPORT = OLD_REPORT[:-1] + b',"actuator":"haproxy/edge"}'


def report_id() -> str:
    return decision_id_for("shop-2024-06", 1, "advance")


def recovery(verifier_of: str | None = None) -> tuple[FenceRecovery, Fence]:
    fence = Fence()

    def remember(report: ActuationReport) -> None:
        fence.record(report.decision_id, report.deployment, report.seq)

    verifier = principal(verifier_of).signer.verifier() if verifier_of else None
    made = FenceRecovery(
        Connection(load_settings()), "canary.actuations.v1", "haproxy/edge", remember, verifier
    )
    return made, fence


def test_the_old_format_still_parses_with_no_actuator() -> None:
    report = ActuationReport.model_validate_json(OLD_REPORT)
    assert report.actuator is None
    assert report.decision_id == report_id()


def test_a_report_of_the_old_format_is_ignored_and_counted_not_attributed() -> None:
    made, fence = recovery()
    made._take(OLD_REPORT, None)
    assert (made.read, made.refused, made.unattributed) == (0, 0, 1)
    assert "shop-2024-06" not in fence
    # The same report naming the instance is taken in.
    made._take(CURRENT_REPORT, None)
    assert (made.read, made.unattributed) == (1, 1)
    assert fence.admit(report_id(), "shop-2024-06", 1) is Admission.DUPLICATE


def test_a_signing_instance_ignores_old_reports_without_counting_them_as_forged() -> None:
    made, fence = recovery(verifier_of="edge")
    made._take(OLD_REPORT, None)
    assert (made.read, made.refused, made.unattributed) == (0, 0, 1)
    assert len(fence) == 0

"""The routing an actuator observed: a ``traffic_shifted`` event after each change it applied.

The engine judges a rollout's sample ratio against the share actually routed, and holds a
rollout whose decision is not observed as applied within its policy's ``actuation_deadline``
(see :mod:`canarystream.engine.routing`). What tells it is this event, published by the
actuator that applied the change, with the share its backend reported when read back (never
the share requested), keyed by the service on the deployments topic and signed with the
actuator principal's key (the worker's access file grants it ``route``).
"""

from __future__ import annotations

import orjson

from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.decision import Decision
from canarystream.contracts.events import MAX_TS, TrafficShifted

__all__ = ["encode_shift", "observed_shift"]


def observed_shift(
    decision: Decision, report: ActuationReport, backend: str
) -> TrafficShifted | None:
    """The shift ``report`` observed while ``backend`` (the actuator instance, ``kind/name``)
    applied ``decision``; None if it observed none.

    Only a change applied for real and read back counts: a hold, a dry run, a refusal, a
    failure or a backend that cannot report its share publish nothing. Its time is the
    report's (the read-back), never before the decision's.
    """
    observed = report.traffic_percent_observed
    if (
        report.status is not ActuationStatus.APPLIED
        or report.dry_run
        or not decision.action.changes_traffic
        or observed is None
    ):
        return None
    return TrafficShifted(
        ts=min(max(report.ts, decision.ts), MAX_TS),
        deployment=decision.deployment,
        service=decision.service,
        traffic_percent=observed,
        backend=backend,
        decision_id=decision.decision_id,
    )


def encode_shift(shift: TrafficShifted) -> bytes:
    """The message value of ``shift``: its JSON, absent fields left out."""
    return orjson.dumps(shift.model_dump(mode="json", exclude_none=True))

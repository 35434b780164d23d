"""A check that never receives any telemetry neither gates nor blocks the rollout."""

from __future__ import annotations

from canarystream.contracts.decision import Action
from tests.support.streams import Stream, fast_policy, run, seconds

BASE = fast_policy()
WITH_PROBES = fast_policy(checks=[*BASE["checks"], {"kind": "probe", "critical": False}])


def _walk(policy: dict) -> list[tuple[Action, float, int]]:
    stream = Stream(3)
    decisions = run([stream.started(policy=policy), *stream.requests(0, 200)])
    return [(d.action, seconds(d), d.stage) for d in decisions]


def test_a_probe_check_without_probes_changes_no_decision() -> None:
    walked = _walk(WITH_PROBES)

    assert walked == _walk(BASE)
    assert walked[-1][0] is Action.PROMOTE

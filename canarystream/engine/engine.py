"""The engine: routes events to rollouts and collects their decisions.

The same engine runs under ``canarystream replay`` and inside the streaming worker. It does
no I/O and reads no clock: every input carries its event time, so one sequence of events
always yields one sequence of decisions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from canarystream.contracts.codec import (
    check_request,
    explain_invalid,
    is_valid_telemetry,
    parse_control,
)
from canarystream.contracts.decision import Decision
from canarystream.contracts.events import (
    DeploymentAborted,
    DeploymentApproved,
    DeploymentPaused,
    DeploymentResumed,
    DeploymentStarted,
)
from canarystream.engine.rollout import Rollout
from canarystream.errors import ContractError, PolicyError
from canarystream.policy.loading import PolicyRegistry

__all__ = ["Engine"]

_METRIC_OR_PROBE = frozenset({"metric", "probe"})
_CONTROL_TYPES = frozenset(
    {
        "deployment_started",
        "deployment_aborted",
        "deployment_paused",
        "deployment_resumed",
        "deployment_approved",
    }
)


def _unknown_version(rollout: Rollout, version: str) -> ContractError:
    return ContractError(
        f"version {version!r} is neither baseline {rollout.baseline_version!r} nor canary "
        f"{rollout.canary_version!r} of service {rollout.service!r}",
        reason="unknown_version",
    )


class Engine:
    """Deterministic canary analysis over a stream of events.

    Parameters
    ----------
    policies
        Named policies a deployment may refer to; the default policy is always known.

    ``process`` raises :class:`~canarystream.errors.ContractError` (with a ``reason``) for an
    event that breaks the contract or names an unknown version of a service under rollout;
    drivers count it, dead-letter it, and go on. Telemetry for services without a rollout is
    counted in :attr:`counters` and otherwise ignored.
    """

    def __init__(self, policies: PolicyRegistry | None = None) -> None:
        self.policies = policies or PolicyRegistry()
        self.rollouts: dict[str, Rollout] = {}
        self.active_by_service: dict[str, Rollout] = {}
        self.deployments_of: dict[str, list[str]] = {}  # service -> deployments, start order
        self.counters: Counter[str] = Counter()

    # Used by drivers that keep each service's state apart (the streaming worker).
    def rollouts_of(self, service: str) -> list[Rollout]:
        """The rollouts of ``service`` this engine knows, oldest first."""
        return [self.rollouts[d] for d in self.deployments_of.get(service, ())]

    def adopt(self, rollouts: Iterable[Rollout]) -> None:
        """Take over rollouts restored from elsewhere (a snapshot), oldest first."""
        for rollout in rollouts:
            self.rollouts[rollout.deployment] = rollout
            known = self.deployments_of.setdefault(rollout.service, [])
            if rollout.deployment not in known:
                known.append(rollout.deployment)
            if rollout.is_active:
                self.active_by_service[rollout.service] = rollout

    def forget(self, service: str, *, keep: int = 0) -> list[Rollout]:
        """Drop all but the newest ``keep`` rollouts of ``service``; return the dropped ones.

        The active rollout is never dropped while ``keep`` ≥ 1 (it is the newest).
        """
        known = self.deployments_of.get(service, [])
        cut = max(len(known) - keep, 0)
        dropped = [self.rollouts.pop(d) for d in known[:cut]]
        del known[:cut]
        if not known:
            self.deployments_of.pop(service, None)
        active = self.active_by_service.get(service)
        if active is not None and active.deployment not in known:
            del self.active_by_service[service]
        return dropped

    # The hot path: requests are checked by hand and routed with plain dict lookups.
    def process(self, event: Any) -> list[Decision]:
        """Apply one decoded event; return the decisions it caused (usually none)."""
        kind = event.get("type") if type(event) is dict else None
        if kind == "request":
            fields = check_request(event)
            if fields is None:
                raise explain_invalid(event)
            ts, service, version, latency, status = fields
            rollout = self.active_by_service.get(service)
            if rollout is None:
                self.counters["telemetry_without_rollout"] += 1
                return []
            cohort = rollout.cohort_of.get(version)
            if cohort is None:
                raise _unknown_version(rollout, version)
            if ts < rollout.next_tick:
                rollout.add_request(cohort, ts, latency, status, event)
                return []
            decisions = rollout.advance_clock(ts)
            rollout.add_request(cohort, ts, latency, status, event)
            if decisions:
                self._retire_finished(rollout)
            return decisions
        if kind in _METRIC_OR_PROBE:
            if not is_valid_telemetry(event):
                raise explain_invalid(event)
            rollout = self.active_by_service.get(event["service"])
            if rollout is None:
                self.counters["telemetry_without_rollout"] += 1
                return []
            cohort = rollout.cohort_of.get(event["version"])
            if cohort is None:
                raise _unknown_version(rollout, event["version"])
            decisions = rollout.advance_clock(event["ts"])
            if kind == "metric":
                rollout.add_metric(cohort, event)
            else:
                rollout.add_probe(cohort, event)
            if decisions:
                self._retire_finished(rollout)
            return decisions
        if kind in _CONTROL_TYPES:
            return self._control(event)
        raise explain_invalid(event)

    def process_batch(
        self, events: list[Any], on_error: Callable[[int, ContractError], None]
    ) -> list[Decision]:
        """Apply a list of events in order; report contract errors by index and go on.

        The same decisions as calling :meth:`process` on each event: requests inside their
        rollout's open tick (nearly all of them) take a short path without the general
        dispatch; every other event goes through :meth:`process`.
        """
        out: list[Decision] = []
        rollout_of = self.active_by_service.get
        for index, event in enumerate(events):
            if type(event) is dict and event.get("type") == "request":
                fields = check_request(event)
                if fields is not None:
                    ts, service, version, latency, status = fields
                    rollout = rollout_of(service)
                    if rollout is not None and ts < rollout.next_tick:
                        cohort = rollout.cohort_of.get(version)
                        if cohort is not None:
                            rollout.add_request(cohort, ts, latency, status, event)
                            continue
            try:
                decided = self.process(event)
            except ContractError as exc:
                on_error(index, exc)
                continue
            if decided:
                out.extend(decided)
        return out

    def process_all(self, events: Iterable[Any]) -> list[Decision]:
        """Apply events in order; contract errors propagate (see :meth:`process`)."""
        out: list[Decision] = []
        for event in events:
            decided = self.process(event)
            if decided:
                out.extend(decided)
        return out

    def advance_to(self, ts: float) -> list[Decision]:
        """Let event time reach ``ts`` for every active rollout (closes pending ticks)."""
        out: list[Decision] = []
        for rollout in sorted(self.active_by_service.values(), key=lambda r: r.deployment):
            out.extend(rollout.advance_clock(ts))
            self._retire_finished(rollout)
        return out

    def _retire_finished(self, rollout: Rollout) -> None:
        if not rollout.is_active and self.active_by_service.get(rollout.service) is rollout:
            del self.active_by_service[rollout.service]

    def _control(self, raw: dict[str, Any]) -> list[Decision]:
        event = parse_control(raw)
        if isinstance(event, DeploymentStarted):
            return self._start(event)
        rollout = self.rollouts.get(event.deployment)
        if rollout is None:
            raise ContractError(
                f"deployment {event.deployment!r} is unknown", reason="unknown_deployment"
            )
        decisions = list(rollout.advance_clock(event.ts)) if rollout.is_active else []
        # A late command takes effect now, not in the past: decisions never go back in time.
        ts = max(event.ts, rollout.clock)
        match event:
            case DeploymentAborted():
                decisions += rollout.abort(ts, event.actor, event.reason)
            case DeploymentPaused():
                decisions += rollout.pause(ts, event.actor)
            case DeploymentResumed():
                decisions += rollout.resume(ts, event.actor)
            case DeploymentApproved():
                decisions += rollout.approve(ts, event.actor)
        self._retire_finished(rollout)
        return decisions

    def _start(self, event: DeploymentStarted) -> list[Decision]:
        if event.deployment in self.rollouts:
            self.counters["duplicate_deployment_started"] += 1
            return []  # announcements are retried by deployment systems: idempotent
        try:
            policy = self.policies.resolve(event.policy)
        except PolicyError as exc:
            raise ContractError(str(exc), reason="invalid_policy") from exc
        decisions: list[Decision] = []
        previous = self.active_by_service.get(event.service)
        if previous is not None:
            decisions += previous.advance_clock(event.ts)
            decisions += previous.supersede(event.ts, event.deployment)
            previous.stop_watching()
            self._retire_finished(previous)
        rollout = Rollout(event, policy)
        self.rollouts[event.deployment] = rollout
        self.deployments_of.setdefault(event.service, []).append(event.deployment)
        self.active_by_service[event.service] = rollout
        decisions += rollout.start()
        return decisions

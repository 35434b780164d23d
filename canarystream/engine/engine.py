"""The engine: routes events to rollouts and collects their decisions.

The same engine runs under ``canarystream replay`` and inside the streaming worker. It does
no I/O and reads no clock: every input carries its event time, so one sequence of events
always yields one sequence of decisions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from canarystream.contracts.codec import (
    check_request,
    explain_invalid,
    is_valid_telemetry,
    parse_control,
)
from canarystream.contracts.decision import Decision
from canarystream.contracts.events import (
    ControlEvent,
    DeploymentAborted,
    DeploymentApproved,
    DeploymentPaused,
    DeploymentResumed,
    DeploymentStarted,
    Heartbeat,
    TrafficShifted,
)
from canarystream.contracts.topics import service_partition
from canarystream.contracts.wire import WireRequest
from canarystream.engine.admission import METRIC, PROBE, REQUEST, out_of_range
from canarystream.engine.rollout import Observer, Rollout
from canarystream.errors import ContractError, PolicyError
from canarystream.governance.access import Access, Action
from canarystream.governance.identity import Origin
from canarystream.governance.rules import Request, authorize
from canarystream.policy.loading import PolicyRegistry
from canarystream.readable import duration, instant

__all__ = ["DEFAULT_TOMBSTONE_TTL", "Engine"]

DEFAULT_TOMBSTONE_TTL = 7 * 86_400.0  # how long a finished deployment id stays known (s)
NEVER = float("-inf")
_IDLE_SWEEP_STEP = 5.0  # input time between two looks for idle rollouts (s)
_DETAIL_MAX = 300
_METRIC_OR_PROBE = frozenset({"metric", "probe"})
_CONTROL_TYPES = frozenset(
    {
        "deployment_started",
        "deployment_aborted",
        "deployment_paused",
        "deployment_resumed",
        "deployment_approved",
        "heartbeat",
        "traffic_shifted",
    }
)
_COMMANDS: dict[type, Action] = {
    DeploymentAborted: Action.ABORT,
    DeploymentPaused: Action.PAUSE,
    DeploymentResumed: Action.RESUME,
    DeploymentApproved: Action.APPROVE,
}


def _internal_error(exc: Exception) -> ContractError:
    detail = f"{type(exc).__name__}: {exc}"
    if len(detail) > _DETAIL_MAX:
        detail = detail[:_DETAIL_MAX] + "..."
    return ContractError(
        f"internal error while applying the event: {detail}", reason="internal_error"
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

    tombstone_ttl
        How long (event time, s) a finished deployment id stays known after it ended, so that
        a re-sent announcement of it is rejected rather than started again.

    access
        Who may steer which rollouts (an access file). With it, every announcement, command,
        heartbeat and traffic shift needs the
        :class:`~canarystream.governance.identity.Origin` its driver authenticated from the
        message's bytes, and is refused (``unauthorized``,
        ``duplicate_control``) unless :func:`~canarystream.governance.rules.authorize` allows
        it; decisions then name the authenticated principal, never the event's ``actor``.
        Without it (None) every input is obeyed and ``actor`` is reported as sent.

    ``process`` raises :class:`~canarystream.errors.ContractError` (with a ``reason``) for an
    event that breaks the contract, names an unknown version of a service under rollout, or
    whose time is not plausible for its rollout (``ts_out_of_range``, see
    :mod:`canarystream.engine.admission`); drivers count it, dead-letter it, and go on. Any
    other failure while applying one event is raised as ``ContractError(internal_error)``, so
    no input can stop a driver. Telemetry for services without a rollout is counted in
    :attr:`counters` and otherwise ignored.

    Event time also passes for rollouts whose telemetry stopped: each rollout's clock is moved
    on to the input's time (the furthest clock that telemetry itself moved, less the policy's
    ``admission.idle_after``) when it received nothing since the previous look, and by
    ``heartbeat`` events; so no-data deadlines are reached, in replay as live. The input's time
    is kept per partition of the service topics (:func:`service_partition`): the live worker
    reads each partition in order but interleaves partitions as the broker delivers them, so
    only a partition's own time decides the same in replay as live.
    """

    def __init__(
        self,
        policies: PolicyRegistry | None = None,
        *,
        tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL,
        access: Access | None = None,
    ) -> None:
        self.policies = policies or PolicyRegistry()
        self.access = access
        self._origin: Origin | None = None  # who sent the message being applied
        self.tombstone_ttl = tombstone_ttl
        self.rollouts: dict[str, Rollout] = {}
        self.active_by_service: dict[str, Rollout] = {}
        self.deployments_of: dict[str, list[str]] = {}  # service -> deployments, start order
        self.tombstones: dict[str, dict[str, float]] = {}  # service -> {deployment: ended at}
        self.counters: Counter[str] = Counter()
        self._message: str | None = None  # the message being applied (see process)
        self._observer: Observer | None = None
        # Per partition of the service topics: the furthest clock telemetry moved, and when
        # to look for idle rollouts next.
        self.input_time: dict[int, float] = {}
        self._next_sweep: dict[int, float] = {}

    @property
    def observer(self) -> Observer | None:
        """Shown every evaluation of every rollout (see :data:`.rollout.Observer`).

        None (the default) costs one attribute test per evaluated tick. Setting it reaches the
        rollouts already known and every rollout started or adopted later.
        """
        return self._observer

    @observer.setter
    def observer(self, observer: Observer | None) -> None:
        self._observer = observer
        for rollout in self.rollouts.values():
            self._watch(rollout)

    def _watch(self, rollout: Rollout) -> None:
        if self._observer is not None:
            rollout.observer = self._observer
        else:
            vars(rollout).pop("observer", None)

    # Used by drivers that keep each service's state apart (the streaming worker).
    def rollouts_of(self, service: str) -> list[Rollout]:
        """The rollouts of ``service`` this engine knows, oldest first."""
        return [self.rollouts[d] for d in self.deployments_of.get(service, ())]

    def adopt(self, rollouts: Iterable[Rollout]) -> None:
        """Take over rollouts restored from elsewhere (a snapshot), oldest first."""
        for rollout in rollouts:
            scope = rollout.partition
            self.input_time[scope] = max(self.input_time.get(scope, NEVER), rollout.corroborated)
            self.rollouts[rollout.deployment] = rollout
            self._watch(rollout)
            known = self.deployments_of.setdefault(rollout.service, [])
            if rollout.deployment not in known:
                known.append(rollout.deployment)
            if rollout.is_active:
                self.active_by_service[rollout.service] = rollout

    def remember(self, service: str, tombstones: dict[str, float]) -> None:
        """Take over finished deployment ids of ``service`` and when they ended (a snapshot)."""
        if tombstones:
            self.tombstones.setdefault(service, {}).update(tombstones)

    def forget(self, service: str, *, keep: int = 0) -> list[Rollout]:
        """Drop all but the newest ``keep`` rollouts of ``service``; return the dropped ones.

        The active rollout is never dropped while ``keep`` ≥ 1 (it is the newest). With
        ``keep`` ≥ 1 the ids of dropped finished rollouts stay known as tombstones (expired
        ones are pruned); with ``keep`` = 0 (the service moved to another worker) everything
        of the service is forgotten, tombstones included.
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
        if keep == 0:
            self.tombstones.pop(service, None)
            return dropped
        ended = self.tombstones.setdefault(service, {})
        for rollout in dropped:
            if rollout.finished_at is not None:
                ended[rollout.deployment] = rollout.finished_at
        now = max(
            (r.clock for r in self.rollouts_of(service)),
            default=self.input_time.get(service_partition(service), NEVER),
        )
        for deployment in [d for d, at in ended.items() if at + self.tombstone_ttl < now]:
            del ended[deployment]
        if not ended:
            del self.tombstones[service]
        return dropped

    def finished_at(self, service: str, deployment: str) -> float | None:
        """When a finished deployment ended, if its id is still known.

        Ids are unique across services: an id that ended under another service this engine
        knows counts too (the worker knows the services of its own partitions only).
        """
        rollout = self.rollouts.get(deployment)
        if rollout is not None:
            return rollout.finished_at
        ended = self.tombstones.get(service, {}).get(deployment)
        if ended is None:  # rare (announcements only): look at the other services too
            ended = next((t[deployment] for t in self.tombstones.values() if deployment in t), None)
        return ended

    # The hot path: requests are checked by hand and routed with plain dict lookups.
    def process(
        self, event: Any, message: str | None = None, origin: Origin | None = None
    ) -> list[Decision]:
        """Apply one decoded event (a JSON value, or a :class:`WireRequest`); return the
        decisions it caused (usually none).

        ``message`` names the message (or line) the event came in, when it held several:
        admission counts one message as one witness of a gap however many events it holds.
        ``origin`` says who sent that message (used with an access file only).
        """
        self._message = message
        self._origin = origin
        try:
            return self._process(event)
        except ContractError:
            raise
        except Exception as exc:  # one event never stops a driver: see the class doc
            self.counters["internal_error"] += 1
            raise _internal_error(exc) from exc
        finally:
            self._message = None
            self._origin = None

    def _in_open_tick(self, event: dict[str, Any]) -> bool:
        """Record a request inside its rollout's open tick; False if it is not one.

        The hot path of :meth:`process` and :meth:`process_batch`, nearly every event: a valid
        request of a known version with ``rollout.admit_from <= ts < rollout.next_tick``.
        Anything else is left to the general path, which says why or moves the clock.
        """
        fields = check_request(event)
        if fields is None:
            return False
        ts, service, version, latency, status = fields
        rollout = self.active_by_service.get(service)
        if rollout is None or not rollout.admit_from <= ts < rollout.next_tick:
            return False
        cohort = rollout.cohort_of.get(version)
        if cohort is None:
            return False
        rollout.add_request(cohort, ts, latency, status, event)
        return True

    def _wire_in_open_tick(self, request: WireRequest) -> bool:
        """:meth:`_in_open_tick` for a request decoded and checked already."""
        rollout = self.active_by_service.get(request.service)
        if rollout is None:
            return False
        ts = request.ts
        if not rollout.admit_from <= ts < rollout.next_tick:
            return False
        cohort = rollout.cohort_of.get(request.version)
        if cohort is None:
            return False
        rollout.add_request(cohort, ts, request.latency_ms, request.status, request)
        return True

    def _process(self, event: Any) -> list[Decision]:
        if type(event) is WireRequest:
            if self._wire_in_open_tick(event):
                return []
            event = event.as_event()
        kind = event.get("type") if type(event) is dict else None
        if kind == "request":
            return self._request(event)
        if type(kind) is not str:
            raise explain_invalid(event)
        if kind in _METRIC_OR_PROBE:
            return self._metric_or_probe(kind, event)
        if kind in _CONTROL_TYPES:
            return self._control(event)
        raise explain_invalid(event)

    def _request(self, event: dict[str, Any]) -> list[Decision]:
        if self._in_open_tick(event):
            return []
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
        if ts < rollout.next_tick:  # not in the open tick: stamped before the admission grace
            rollout.admit(ts)  # raises ts_out_of_range
        return self._moved(
            rollout,
            rollout.offer(REQUEST, cohort, ts, (latency, status, event), self._message),
        )

    def _metric_or_probe(self, kind: str, event: dict[str, Any]) -> list[Decision]:
        if not is_valid_telemetry(event):
            raise explain_invalid(event)
        rollout = self.active_by_service.get(event["service"])
        if rollout is None:
            self.counters["telemetry_without_rollout"] += 1
            return []
        cohort = rollout.cohort_of.get(event["version"])
        if cohort is None:
            raise _unknown_version(rollout, event["version"])
        ts = event["ts"]
        code = METRIC if kind == "metric" else PROBE
        if ts < rollout.next_tick:
            rollout.admit(ts)
            if code == METRIC:
                rollout.add_metric(cohort, event)
            else:
                rollout.add_probe(cohort, event)
            return []
        return self._moved(rollout, rollout.offer(code, cohort, ts, event, self._message))

    def process_batch(
        self,
        events: list[Any],
        on_error: Callable[[int, ContractError], None],
        messages: str | Sequence[str] | None = None,
        origins: Origin | Sequence[Origin | None] | None = None,
    ) -> list[Decision]:
        """Apply a list of events in order; report errors by index and go on.

        The same decisions as calling :meth:`process` on each event: requests inside their
        rollout's open tick (nearly all of them) take a short path without the general
        dispatch; every other event goes through :meth:`process`. ``messages`` names the
        message the events came in: one name for all, one per event, or None (each event
        a message of its own). ``origins``, likewise, says who sent them. An event may be a
        :class:`WireRequest` (decoded and checked already) or the decoded JSON value.
        """
        out: list[Decision] = []
        in_open_tick = self._in_open_tick
        wire_in_open_tick = self._wire_in_open_tick
        for index, event in enumerate(events):
            if type(event) is WireRequest:
                if wire_in_open_tick(event):
                    continue
                event = event.as_event()  # noqa: PLW2901 -- the general path takes objects
            elif type(event) is dict and event.get("type") == "request" and in_open_tick(event):
                continue
            message = messages if messages is None or type(messages) is str else messages[index]
            origin = origins if origins is None or isinstance(origins, Origin) else origins[index]
            try:
                decided = self.process(event, message, origin)
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
        """Let event time reach ``ts`` for every active rollout (closes pending ticks).

        A driver's call (the end of a simulation, a test), trusted: no admission rules.
        """
        out: list[Decision] = []
        for rollout in sorted(self.active_by_service.values(), key=lambda r: r.deployment):
            out.extend(rollout.advance_clock(ts))
            self._retire_finished(rollout)
        return out

    def _moved(self, rollout: Rollout, decisions: list[Decision]) -> list[Decision]:
        """After telemetry moved a rollout's clock: retire it if done, move idle ones on."""
        if decisions:
            self._retire_finished(rollout)
        scope = rollout.partition
        if rollout.corroborated > self.input_time.get(scope, NEVER):
            now = self.input_time[scope] = rollout.corroborated
            if now >= self._next_sweep.get(scope, NEVER):
                self._next_sweep[scope] = now + _IDLE_SWEEP_STEP
                swept = self._sweep_idle(scope, now)
                if swept:
                    return decisions + swept
        return decisions

    def _sweep_idle(self, scope: int, now: float) -> list[Decision]:
        """Move on the clocks of a partition's rollouts that received nothing since the
        previous sweep."""
        out: list[Decision] = []
        active = [r for r in self.active_by_service.values() if r.partition == scope]
        for rollout in sorted(active, key=lambda r: r.deployment):
            arrived = rollout.arrived
            target = now - rollout.policy.admission.idle_after
            if rollout.idle_mark == arrived and rollout.clock < target:
                out.extend(rollout.advance_clock(target))
                self._retire_finished(rollout)
            rollout.idle_mark = arrived
        return out

    def _retire_finished(self, rollout: Rollout) -> None:
        if not rollout.is_active and self.active_by_service.get(rollout.service) is rollout:
            del self.active_by_service[rollout.service]

    def _control(self, raw: dict[str, Any]) -> list[Decision]:
        event = parse_control(raw)
        if isinstance(event, DeploymentStarted):
            return self._start(event)
        if isinstance(event, Heartbeat):
            return self._heartbeat(event)
        if isinstance(event, TrafficShifted):
            return self._traffic_shifted(event)
        rollout, actor, key = self._command(event)
        decisions: list[Decision] = []
        if rollout.is_active:
            decisions += self._move_clock(rollout, event.ts)
        if key is not None:
            rollout.take_control(key)  # obeyed once: a copy published again is refused
        # A late command takes effect now, not in the past: decisions never go back in time.
        ts = max(event.ts, rollout.clock)
        match event:
            case DeploymentAborted():
                decisions += rollout.abort(ts, actor, event.reason)
            case DeploymentPaused():
                decisions += rollout.pause(ts, actor)
            case DeploymentResumed():
                decisions += rollout.resume(ts, actor)
            case DeploymentApproved():
                decisions += rollout.approve(ts, actor)
        self._retire_finished(rollout)
        return decisions

    @staticmethod
    def _move_clock(rollout: Rollout, ts: float) -> list[Decision]:
        """A control input moves its rollout's clock to ``ts``, by at most the admission's
        skew (one further ahead is refused, ``ts_out_of_range``)."""
        if ts > rollout.clock + rollout.policy.admission.max_skew:
            raise out_of_range(
                f"ts {ts:.3f} ({instant(ts)}) is {duration(ts - rollout.clock)} ahead of the "
                f"clock of deployment {rollout.deployment!r}; at most "
                f"{duration(rollout.policy.admission.max_skew)} (admission.max_skew)"
            )
        return rollout.advance_clock(ts)

    def _traffic_shifted(self, event: TrafficShifted) -> list[Decision]:
        """The routing of a rollout observed: it moves the rollout's clock as a command does,
        then the rollout judges by it (see :meth:`Rollout.observe_routing`).

        With an access file it needs ``route`` on the service. A shift for a finished rollout
        (the actuators report every rollback and promotion they apply) and one not newer than
        the rollout's latest are counted and change nothing; one for an unknown deployment, or
        naming another service than its rollout's, is refused (``unknown_deployment``).
        """
        if self.access is not None:
            authorize(self.access, self._origin, Request(Action.ROUTE, event.service))
        rollout = self.rollouts.get(event.deployment)
        if rollout is None:
            if self.finished_at(event.service, event.deployment) is not None:
                self.counters["traffic_shifted_after_finish"] += 1
                return []
            raise ContractError(
                f"deployment {event.deployment!r} is unknown", reason="unknown_deployment"
            )
        if rollout.service != event.service:
            raise ContractError(
                f"deployment {event.deployment!r} is a rollout of service "
                f"{rollout.service!r}, not of {event.service!r}",
                reason="unknown_deployment",
            )
        if not rollout.is_live:
            self.counters["traffic_shifted_after_finish"] += 1
            return []
        if rollout.routing.at is not None and event.ts <= rollout.routing.at:
            self.counters["traffic_shifted_stale"] += 1
            return []
        decisions = self._move_clock(rollout, event.ts)
        if rollout.is_live:
            rollout.observe_routing(event.ts, event.traffic_percent, event.decision_id)
        self._retire_finished(rollout)
        return decisions

    def _command(self, event: ControlEvent) -> tuple[Rollout, str, str | None]:
        """The rollout a command names, its actor, and its key among the commands the rollout
        takes (None without an access file: every command is obeyed, ``actor`` as sent)."""
        access = self.access
        if access is None:
            return self._commanded(event), event.actor, None
        if self._origin is None or self._origin.principal is None:  # refused before anything
            authorize(access, self._origin, Request(_COMMANDS[type(event)], event.service or ""))
        rollout = self._commanded(event)
        actor, key = self._authorize_command(event, rollout, access)
        return rollout, actor, key

    def _authorize_command(
        self, event: ControlEvent, rollout: Rollout, access: Access
    ) -> tuple[str, str]:
        """The principal allowed to give ``event`` to ``rollout`` (the command's actor), and
        the command's key among those the rollout takes (see :func:`authorize`)."""
        origin = self._origin
        assert origin is not None  # an unsigned command was refused before
        key = f"{origin.sha256}:{event.type}:{event.ts!r}"
        request = Request(
            _COMMANDS[type(event)],
            rollout.service,
            started_by=rollout.started_by,
            control=key,
            taken=rollout.controls,
            age=rollout.clock - event.ts,
        )
        return authorize(access, origin, request), key

    def _commanded(self, event: ControlEvent) -> Rollout:
        """The rollout a command names; a finished or unknown deployment is refused."""
        rollout = self.rollouts.get(event.deployment)
        if rollout is not None:
            return rollout
        if self.finished_at(event.service or "", event.deployment) is not None:
            raise ContractError(
                f"deployment {event.deployment!r} has finished", reason="finished_deployment"
            )
        raise ContractError(
            f"deployment {event.deployment!r} is unknown", reason="unknown_deployment"
        )

    def _heartbeat(self, event: Heartbeat) -> list[Decision]:
        if self.access is not None:
            authorize(self.access, self._origin, Request(Action.HEARTBEAT, event.service))
        rollout = self.active_by_service.get(event.service)
        if rollout is None:
            self.counters["heartbeat_without_rollout"] += 1
            return []
        decisions = rollout.heartbeat(event.ts)
        self._retire_finished(rollout)
        return decisions

    def _authorize_start(self, event: DeploymentStarted, access: Access) -> str:
        """The principal allowed to announce ``event`` (see :func:`authorize`)."""
        spec = event.policy
        previous = self.active_by_service.get(event.service)
        live = previous is not None and previous.is_live
        replaced = (
            previous.deployment
            if previous is not None and live and previous.deployment != event.deployment
            else None
        )
        if spec is None:
            named: str | None = self.policies.default.name
        else:
            named = spec if isinstance(spec, str) else None
        request = Request(
            Action.START, event.service, policy=named, inline=named is None, supersedes=replaced
        )
        return authorize(access, self._origin, request)

    def _start(self, event: DeploymentStarted) -> list[Decision]:
        started_by = None if self.access is None else self._authorize_start(event, self.access)
        # Announcements are retried by deployment systems: a known id is never started again,
        # running or finished (its tombstone outlives the rollout's state; tombstone_ttl).
        known = self.rollouts.get(event.deployment)
        ended = self.finished_at(event.service, event.deployment)
        if ended is not None and event.ts >= ended + self.tombstone_ttl:
            self._drop(event.service, event.deployment)  # an id that ended long ago
        elif ended is not None:
            self.counters["finished_deployment_started"] += 1
            raise ContractError(
                f"deployment {event.deployment!r} has finished; a deployment id is never "
                "started again (announce a new id)",
                reason="duplicate_deployment",
            )
        elif known is not None:
            self.counters["duplicate_deployment_started"] += 1
            return []
        try:
            policy = self.policies.resolve(event.policy)
        except PolicyError as exc:
            raise ContractError(str(exc), reason="invalid_policy") from exc
        decisions: list[Decision] = []
        previous = self.active_by_service.get(event.service)
        if previous is not None:
            # The announcement may move the old rollout's clock, by at most its skew bound.
            at = min(event.ts, previous.clock + previous.policy.admission.max_skew)
            decisions += previous.advance_clock(at)
            decisions += previous.supersede(max(at, previous.clock), event.deployment)
            previous.stop_watching()
            self._retire_finished(previous)
        rollout = Rollout(event, policy)
        rollout.started_by = started_by
        self._watch(rollout)
        self.rollouts[event.deployment] = rollout
        self.deployments_of.setdefault(event.service, []).append(event.deployment)
        self.active_by_service[event.service] = rollout
        decisions += rollout.start()
        return decisions

    def _drop(self, service: str, deployment: str) -> None:
        self.rollouts.pop(deployment, None)
        known = self.deployments_of.get(service, [])
        if deployment in known:
            known.remove(deployment)
        self.tombstones.get(service, {}).pop(deployment, None)

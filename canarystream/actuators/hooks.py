"""Compensation hooks: on a rollback, run the rollout's hooks once each, in order, and report.

A rollout may declare :class:`~canarystream.contracts.events.CompensationHook` steps (a
migration's down step, compensating writes); the engine copies them onto its rollback
decision. Two pieces carry them out:

* :class:`HookRunner`, the backend: runs the hooks of one decision and says how each went.
  A ``command`` hook runs without a shell (argv as given), with the decision's exact message
  bytes on stdin and ``CANARYSTREAM_DECISION_ID``, ``_DEPLOYMENT``, ``_SERVICE``,
  ``_BASELINE_VERSION``, ``_CANARY_VERSION`` and ``_HOOK`` in its environment (the runner's
  own ``CANARYSTREAM_*`` settings, keys and tokens among them, are not passed on); exit
  status 0 is success. A ``url`` hook is a POST of the same bytes as ``application/json``
  with the decision's signature header, so the receiver can check it, and an
  ``Idempotency-Key`` of decision id and hook name; any 2xx answer is success. A redirect is
  never followed (a 3xx answer is a failure), and the answer's body is never reported: only
  its status and size (an allowed server could otherwise relay an internal one). Each hook
  has its own ``timeout_seconds``; a command still running then is killed with its whole
  process group.
* :class:`HookActuator`, a :class:`~canarystream.actuators.handler.BaseHandler` like the
  traffic :class:`~canarystream.actuators.executor.Actuator`, so that the shared
  :class:`~canarystream.actuators.service.ActuatorService` loop drives it: the same signature
  check, fence, metrics and reports, around running the hooks. A hook runner is not a
  :class:`~canarystream.actuators.base.TrafficBackend` -- it sets no traffic share -- so it
  does not pretend to be one.

Hooks are not assumed idempotent, so nothing is retried: the first hook that fails (or is
refused, or times out) stops the sequence -- a later step may depend on an earlier one -- and
the report says ``failed`` with what each hook did and which did not run; a person takes over
from there. Hooks run at most once per decision, across restarts and rebalances too: before
they run, the intent is published (a ``started`` report, acknowledged by the broker) and
marked in the fence; after them the outcome is reported, and the decision is fenced whatever
it was. After a restart the fence is rebuilt from these reports: a redelivered decision whose
outcome was reported is a duplicate, and one whose intent alone was is never run again but
reported ``failed``, "unknown outcome, needs a person". Every other decision (advance, hold,
promote, rollback verification, a rollback without hooks) is reported ``applied`` with nothing
run.

Hooks come from ``deployment_started`` events: whoever can write those can have commands run
where this runner runs. ``programs`` (whole argv patterns) and ``url_prefixes`` (URLs compared
parsed) restrict what may run, see :mod:`canarystream.actuators.allow`; a compensation with a
hook outside them is refused as a whole (half a compensation is worse than none).

>>> runner = HookRunner(HookRunnerConfig(programs=["/usr/bin/true", "/usr/bin/env ..."]))
>>> runner.refusal(CompensationHook(name="down", command=["/usr/bin/true", "-x"]))
"command '/usr/bin/true -x' matches no allowed argv pattern"
>>> runner.refusal(CompensationHook(name="down", command=["/usr/bin/env", "-i"])) is None
True
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices, Field, field_validator

from canarystream.actuators.allow import (
    argv_matches,
    parse_allowed_url,
    parse_argv_pattern,
    url_refusal,
)
from canarystream.actuators.base import describe_error
from canarystream.actuators.config import BackendConfig, Scope
from canarystream.actuators.fencing import FenceStore
from canarystream.actuators.handler import BaseHandler
from canarystream.actuators.metrics import ActuationMetrics
from canarystream.contracts.actuation import ActuationReport, ActuationStatus
from canarystream.contracts.decision import Action, Decision
from canarystream.contracts.events import CompensationHook
from canarystream.contracts.signing import SIGNATURE_HEADER, Verifier

__all__ = ["HookActuator", "HookOutcome", "HookRunner", "HookRunnerConfig"]

_ENV_PREFIX = "CANARYSTREAM_"
_KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a command past its timeout


class HookRunnerConfig(BackendConfig):
    """What hooks may run, how long they may take, and how much of their output is reported.

    Hooks come from deployment announcements: nothing runs unless allowed by ``programs``
    (whole argv patterns) or ``url_prefixes`` (URLs compared parsed: scheme, host, port and
    path by whole segments), see :mod:`canarystream.actuators.allow`, or unless every hook is
    allowed explicitly.
    """

    programs: tuple[tuple[str, ...], ...] = Field(
        default=(),
        validation_alias=AliasChoices("programs", "allow_program"),
        description="Commands that may run, each a whole argv pattern: an absolute program, then "
        "each argument exact or a glob for one argument; a final '...' allows any further "
        "arguments (repeatable; a string is split as a shell would).",
    )
    url_prefixes: tuple[str, ...] = Field(
        default=(),
        validation_alias=AliasChoices("url_prefixes", "allow_url_prefix", "allow_url"),
        description="Webhooks under this URL may be called: same scheme, host and port, path "
        "equal or below by whole segments (repeatable).",
    )
    allow_any: bool = Field(
        default=False,
        validation_alias=AliasChoices("allow_any", "allow_any_hook"),
        description="Run every hook, allowed or not (only if announcements are trusted).",
    )
    output_chars: int = Field(
        default=300,
        description="Tail of a command's output reported (a webhook's answer never is: only its "
        "status and size).",
    )
    max_seconds: float = Field(
        default=3600.0,
        description="Longest all hooks of one rollback may take together (each hook's own "
        "timeout bounds it alone).",
    )

    @field_validator("programs", mode="before")
    @classmethod
    def _programs(cls, value: Any) -> Any:
        entries = [value] if isinstance(value, str) else value
        if not isinstance(entries, list | tuple):
            return value
        return tuple(parse_argv_pattern(entry) for entry in entries)

    @field_validator("url_prefixes", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        entries = [value] if isinstance(value, str) else value
        if not isinstance(entries, list | tuple):
            return value
        for entry in entries:
            parse_allowed_url(entry)
        return tuple(entries)

    @field_validator("output_chars")
    @classmethod
    def _output_chars(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"{value} is negative")
        return value

    @field_validator("max_seconds")
    @classmethod
    def _max_seconds(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"{value} is not positive")
        return value


@dataclass(frozen=True, slots=True)
class HookOutcome:
    """How one hook went: ``ok``, what happened, and how long it took (s)."""

    index: int  # position among the decision's hooks, from 0
    name: str
    ok: bool
    detail: str
    seconds: float

    def describe(self) -> str:
        """``name: detail in N s`` for a report."""
        return f"{self.name}: {self.detail} in {self.seconds:.1f} s"


class HookRunner:
    """Runs a rollback decision's compensation hooks, in order, stopping at the first failure.

    Parameters
    ----------
    config:
        Allowed programs and URL prefixes; output kept in reports.
    environ:
        Environment the commands inherit (the process's by default), minus ``CANARYSTREAM_*``.
    """

    kind = "hooks"

    def __init__(
        self, config: HookRunnerConfig | None = None, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self.config = HookRunnerConfig() if config is None else config
        self._urls = [parse_allowed_url(url) for url in self.config.url_prefixes]
        base = os.environ if environ is None else environ
        self._environ = {k: v for k, v in base.items() if not k.startswith(_ENV_PREFIX)}

    def refusal(self, hook: CompensationHook) -> str | None:
        """Why ``hook`` may not run here, or None if it may."""
        config = self.config
        if config.allow_any:
            return None
        if hook.command is not None:
            if any(argv_matches(hook.command, pattern) for pattern in config.programs):
                return None
            return f"command {shlex.join(hook.command)!r} matches no allowed argv pattern"
        if hook.url is not None:
            return url_refusal(hook.url, self._urls)
        return None

    async def run(
        self, decision: Decision, payload: bytes, signature: str | bytes | None
    ) -> list[HookOutcome]:
        """Run ``decision.compensation`` in order; the outcomes of the hooks that were tried.

        Refuses all of them (one outcome per refused hook, none run) when any is not allowed,
        and stops after the first that fails.
        """
        hooks = decision.compensation
        refused = [(i, why) for i, hook in enumerate(hooks) if (why := self.refusal(hook))]
        if refused:
            return [
                HookOutcome(i, hooks[i].name, False, f"refused: {why}", 0.0) for i, why in refused
            ]
        outcomes: list[HookOutcome] = []
        for index, hook in enumerate(hooks):
            started = time.monotonic()
            try:
                if hook.command is not None:
                    ok, detail = await self._command(hook, decision, payload)
                else:
                    ok, detail = await self._webhook(hook, decision, payload, signature)
            except Exception as exc:  # a hook's failure is reported, never raised
                ok, detail = False, describe_error(exc)
            outcomes.append(HookOutcome(index, hook.name, ok, detail, time.monotonic() - started))
            if not ok:
                break
        return outcomes

    def describe(self) -> str:
        """What may run: the allowed programs and URL prefixes."""
        config = self.config
        if config.allow_any:
            return "compensation hooks: any program or webhook"
        programs = ", ".join(shlex.join(p) for p in config.programs) or "none"
        prefixes = ", ".join(config.url_prefixes) or "none"
        return f"compensation hooks: commands {programs}; webhooks under {prefixes}"

    async def close(self) -> None:
        """Nothing to release: each hook runs in a process or request of its own."""

    # -- commands ----------------------------------------------------------------------------

    async def _command(
        self, hook: CompensationHook, decision: Decision, payload: bytes
    ) -> tuple[bool, str]:
        assert hook.command is not None
        env = {
            **self._environ,
            "CANARYSTREAM_DECISION_ID": decision.decision_id,
            "CANARYSTREAM_DEPLOYMENT": decision.deployment,
            "CANARYSTREAM_SERVICE": decision.service,
            "CANARYSTREAM_BASELINE_VERSION": decision.baseline_version,
            "CANARYSTREAM_CANARY_VERSION": decision.canary_version,
            "CANARYSTREAM_HOOK": hook.name,
        }
        try:
            process = await asyncio.create_subprocess_exec(
                *hook.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
        except OSError as exc:
            return False, f"cannot run {hook.command[0]!r}: {exc.strerror or exc}"
        try:
            output, _ = await asyncio.wait_for(
                process.communicate(payload), timeout=hook.timeout_seconds
            )
        except TimeoutError:
            await _kill_group(process)
            return False, f"timed out after {hook.timeout_seconds:g} s (killed)"
        except BaseException:
            await _kill_group(process)  # cancelled (shutdown): leave no orphan behind
            raise
        tail = self._tail(output)
        said = f": {tail}" if tail else ""
        if process.returncode == 0:
            return True, f"exit 0{said}"
        if process.returncode is not None and process.returncode < 0:
            return False, f"killed by signal {-process.returncode}{said}"
        return False, f"exit {process.returncode}{said}"

    # -- webhooks ----------------------------------------------------------------------------

    async def _webhook(
        self,
        hook: CompensationHook,
        decision: Decision,
        payload: bytes,
        signature: str | bytes | None,
    ) -> tuple[bool, str]:
        assert hook.url is not None
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{decision.decision_id}:{hook.name}",
            "User-Agent": "canarystream-hooks",
        }
        if signature is not None:
            sig = (
                signature.decode("ascii", "replace") if isinstance(signature, bytes) else signature
            )
            headers[SIGNATURE_HEADER] = sig
        request = urllib.request.Request(hook.url, data=payload, headers=headers, method="POST")
        timeout = hook.timeout_seconds

        def post() -> tuple[int, int]:
            try:
                with _OPENER.open(request, timeout=timeout) as response:
                    return response.status, len(response.read(_MAX_READ))
            except urllib.error.HTTPError as exc:
                with contextlib.closing(exc):
                    return exc.code, len(exc.read(_MAX_READ))

        try:
            # The socket timeout bounds each read; this bounds the whole exchange. A thread
            # still blocked after it is abandoned (it ends at its own socket timeout).
            status, size = await asyncio.wait_for(asyncio.to_thread(post), timeout + 1.0)
        except TimeoutError:
            return False, f"no answer in {timeout:g} s"
        except urllib.error.URLError as exc:
            return False, f"cannot reach {hook.url}: {exc.reason}"
        except OSError as exc:
            return False, f"cannot reach {hook.url}: {exc}"
        # The answer's body is never reported: an allowed server could relay anything.
        answered = f"HTTP {status}, {size}{'+' if size >= _MAX_READ else ''} bytes"
        if 300 <= status < 400:
            return False, f"{answered} (a redirect: not followed)"
        return 200 <= status < 300, answered

    def _tail(self, raw: bytes | None) -> str:
        text = " ".join((raw or b"").decode("utf-8", "replace").split())
        limit = self.config.output_chars
        if limit == 0:
            return ""
        return text if len(text) <= limit else "..." + text[-limit:]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Never follows a redirect: the 3xx answer is the webhook's answer (a failure)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())
_MAX_READ = 65536  # bytes of an answer read (to count them; never reported)


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group, SIGKILL it if it lingers, and reap the command."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), _KILL_GRACE)
            return


class HookActuator(BaseHandler):
    """Carries out rollback decisions' compensation hooks and reports on every decision.

    The signature check (over the exact message bytes), the fence, the reports and the metrics
    are :class:`~canarystream.actuators.handler.BaseHandler`'s, as for the traffic
    :class:`~canarystream.actuators.executor.Actuator`. Unlike it, nothing is retried (hooks
    need not be idempotent), and a decision is fenced once its hooks were attempted, whatever
    their outcome.

    Parameters
    ----------
    runner:
        Runs the hooks; its ``max_seconds`` bounds one decision's hooks together, for the
        consumer's poll interval.
    verifier, scope, fence, dry_run, metrics, clock, monotonic:
        As for :class:`~canarystream.actuators.handler.BaseHandler`; a dry run reports which
        hooks would run and runs none.
    """

    fenced_as = "handled"

    def __init__(  # noqa: PLR0913 -- the handler's keyword-only collaborators
        self,
        runner: HookRunner,
        *,
        verifier: Verifier | None,
        scope: Scope,
        fence: FenceStore | None = None,
        dry_run: bool = False,
        metrics: ActuationMetrics | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            verifier=verifier,
            scope=scope,
            fence=fence,
            dry_run=dry_run,
            metrics=metrics,
            clock=clock,
            monotonic=monotonic,
        )
        self.runner = runner

    @property
    def kind(self) -> str:
        """The runner's kind (``hooks``), as reported and used as a metric label."""
        return self.runner.kind

    @property
    def longest_seconds(self) -> float:
        """An upper bound on the time one decision can take."""
        return self.runner.config.max_seconds

    def describe(self) -> str:
        """What the runner may run."""
        return self.runner.describe()

    def hurry(self) -> None:
        """Nothing to hurry: hooks in progress finish, since a compensating step stopped
        halfway could leave data worse than either end (each is bounded by its timeout)."""

    async def close(self) -> None:
        """Close the runner."""
        await self.runner.close()

    async def _carry_out(
        self, decision: Decision, signature: str | bytes | None, signed: bytes
    ) -> ActuationReport:
        hooks = decision.compensation if decision.action is Action.ROLLBACK else []
        if not hooks:
            what = "a rollback without" if decision.action is Action.ROLLBACK else "no"
            return self._report(
                decision, ActuationStatus.APPLIED, f"{decision.action.value}: {what} hooks to run"
            )
        if self.dry_run:
            listed = ", ".join(_describe_hook(hook) for hook in hooks)
            refused = [why for hook in hooks if (why := self.runner.refusal(hook))]
            note = f" (would refuse all: {'; '.join(refused)})" if refused else ""
            return self._report(
                decision, ActuationStatus.APPLIED, f"dry run: would run {listed}{note}"
            )
        if not any(self.runner.refusal(hook) for hook in hooks):
            names = ", ".join(hook.name for hook in hooks)
            await self._intend(decision, f"compensation: running {len(hooks)} hook(s): {names}")
        outcomes = await self.runner.run(decision, signed, signature)
        return self._report(decision, *_summarise(hooks, outcomes))

    def _settles(self, report: ActuationReport) -> bool:
        """Always: attempted hooks are never run again for this decision, whatever their
        outcome."""
        return True


def _summarise(
    hooks: list[CompensationHook], outcomes: list[HookOutcome]
) -> tuple[ActuationStatus, str]:
    if all(outcome.ok for outcome in outcomes) and len(outcomes) == len(hooks):
        parts = "; ".join(outcome.describe() for outcome in outcomes)
        return ActuationStatus.APPLIED, f"compensation: {len(hooks)} hook(s) ran: {parts}"
    by_index = {outcome.index: outcome for outcome in outcomes}
    parts = "; ".join(
        by_index[i].describe() if i in by_index else f"{hook.name}: not run"
        for i, hook in enumerate(hooks)
    )
    failed = next(outcome.name for outcome in outcomes if not outcome.ok)
    return ActuationStatus.FAILED, f"compensation failed at {failed!r}: {parts}"


def _describe_hook(hook: CompensationHook) -> str:
    if hook.command is not None:
        return f"{hook.name} (command {' '.join(hook.command)!r})"
    return f"{hook.name} (webhook {hook.url})"

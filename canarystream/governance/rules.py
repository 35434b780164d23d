"""Authorization: may this authenticated input act on this rollout?

One pure function, :func:`authorize`, decides for the live worker and for replay alike: the
engine calls it with the input's :class:`~canarystream.governance.identity.Origin` (from the
bytes, established by the driver) and what it knows of the rollout (from its state). The
split keeps the engine free of I/O and bytes (authentication needs the exact bytes and
headers, which only the drivers have) while authorization, which needs rollout state (who
started the rollout, which signed commands it has already taken, whether a live rollout would
be superseded), is decided in one place from the same inputs in replay as live.

Refusals raise :class:`~canarystream.errors.ContractError` with reason ``unauthorized``,
``duplicate_control`` for a signed command the rollout has already taken (the same bytes
published again cannot approve or abort a second time), or ``ts_out_of_range`` for a signed
command older than the access file's ``command_max_age_seconds`` by its rollout's clock (so a
command the rollout no longer remembers cannot be taken again either).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from canarystream.errors import ContractError
from canarystream.governance.access import Access, Action
from canarystream.governance.identity import Origin

__all__ = ["MAX_CONTROLS", "Request", "authorize"]

MAX_CONTROLS = 256
"""Signed commands remembered per rollout to refuse their replay (oldest forgotten first)."""


@dataclass(frozen=True, slots=True)
class Request:
    """What an input asks for, with the rollout state authorization depends on."""

    action: Action
    service: str
    policy: str | None = None  # start: the named policy (None with inline=True)
    inline: bool = False  # start: the announcement carries an inline policy
    supersedes: str | None = None  # start: the live rollout it would replace
    started_by: str | None = None  # approve: who started the rollout (None: unknown)
    control: str | None = None  # command: its key among the rollout's taken commands
    taken: Collection[str] = ()  # the keys of the commands the rollout already took
    age: float = 0.0  # command: seconds its time is behind the rollout's event-time clock


def _refuse(detail: str) -> ContractError:
    return ContractError(detail, reason="unauthorized")


def authorize(access: Access, origin: Origin | None, request: Request) -> str:
    """The principal allowed to do ``request``; raises ContractError when none is."""
    if origin is None or origin.principal is None:
        why = origin.problem if origin is not None else "unsigned"
        raise _refuse(f"{request.action.value} refused: {why}")
    who = origin.principal
    action, service = request.action, request.service
    if action is Action.START:
        if not access.allows(who, Action.START, service):
            raise _refuse(f"principal {who!r} may not start service {service!r}")
        named = None if request.inline else request.policy
        if not access.allows_start(who, service, named):
            what = "an inline policy" if named is None else f"policy {named!r}"
            raise _refuse(f"principal {who!r} may not start service {service!r} with {what}")
        if request.supersedes is not None and not access.allows(who, Action.SUPERSEDE, service):
            raise _refuse(
                f"principal {who!r} may not supersede live deployment "
                f"{request.supersedes!r} of service {service!r} (supersede needed)"
            )
        return who
    if not access.allows(who, action, service):
        raise _refuse(f"principal {who!r} may not {action.value} service {service!r}")
    if action is Action.APPROVE and request.started_by == who:
        raise _refuse(
            f"principal {who!r} started this rollout and may not approve it "
            "(approval must come from another principal)"
        )
    limit = access.document.command_max_age_seconds
    if request.age > limit:
        raise ContractError(
            f"this signed {action.value} is {request.age:.0f} s older than its rollout's clock; "
            f"commands older than command_max_age_seconds ({limit:g} s) are refused "
            "(sign a new one)",
            reason="ts_out_of_range",
        )
    if request.control is not None and request.control in request.taken:
        raise ContractError(
            f"this signed {action.value} was already taken by the rollout; a command is "
            "obeyed once (sign a new one)",
            reason="duplicate_control",
        )
    return who

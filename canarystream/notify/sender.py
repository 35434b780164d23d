"""POSTing a webhook body: tries with backoff, never a redirect, never the answer's body.

A 2xx answer is delivery. A 5xx or 429 answer, a timeout or a connection failure is tried
again after the :class:`~canarystream.actuators.executor.RetryPolicy` pause (a 429's
``Retry-After`` is honoured up to the policy's longest pause), until the tries or the
deadline run out. Any other answer -- a 3xx (a redirect is never followed: the URL allow-list
would mean nothing if the server could send us elsewhere), a 4xx -- is final. The answer's
body is read (at most 64 KiB) and dropped, never logged: only status and size are reported.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from canarystream.actuators.executor import RetryPolicy

__all__ = ["Outcome", "WebhookSender"]

_MAX_READ = 65536


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one notification went: delivered or not, after how many tries, and why."""

    ok: bool
    tries: int
    detail: str


class WebhookSender:
    """POSTs JSON bodies to webhooks with retries; use as an async context manager."""

    def __init__(
        self,
        retry: RetryPolicy,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retry = retry
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._clock = clock
        self._session: Any = None

    async def __aenter__(self) -> WebhookSender:
        import aiohttp  # noqa: PLC0415  (slow to import; only the notifier needs it)

        self._session = aiohttp.ClientSession(
            headers={"User-Agent": "canarystream-notify"}, trust_env=False
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, url: str, body: bytes, *, headers: Mapping[str, str], timeout: float
    ) -> Outcome:
        """POST ``body`` to ``url`` until delivered, refused, or out of tries."""
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            retry, detail, wait = await self._try(url, body, headers, timeout)
            if retry is None:
                return Outcome(True, attempt, detail)
            if not retry or attempt >= self.retry.max_attempts:
                return Outcome(False, attempt, detail)
            pause = self.retry.delay(attempt, self._rng)
            if wait is not None:
                pause = max(pause, min(wait, self.retry.max_delay))
            if self._clock() - started + pause > self.retry.deadline:
                return Outcome(False, attempt, f"{detail}; retry deadline passed")
            await self._sleep(pause)

    async def _try(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[bool | None, str, float | None]:
        """One POST: (None: delivered | True: try again | False: final, detail, Retry-After)."""
        import aiohttp  # noqa: PLC0415

        assert self._session is not None, "use the sender as an async context manager"
        try:
            async with self._session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                size = len(await response.content.read(_MAX_READ))
                status = response.status
                after = _retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            return True, f"no answer in {timeout:g} s", None
        except aiohttp.ClientError as exc:
            return True, f"cannot reach the webhook: {type(exc).__name__}: {exc}", None
        answered = f"HTTP {status}, {size} bytes"
        if 200 <= status < 300:
            return None, answered, None
        if 300 <= status < 400:
            return False, f"{answered} (a redirect: not followed)", None
        return status >= 500 or status == 429, answered, after


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header given in seconds; None otherwise.

    >>> _retry_after("3"), _retry_after("soon"), _retry_after(None)
    (3.0, None, None)
    """
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None

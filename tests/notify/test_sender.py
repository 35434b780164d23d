"""Webhook calls against a local server: retries with backoff, redirects never followed."""

from __future__ import annotations

import asyncio
import random

from canarystream.actuators.executor import RetryPolicy
from canarystream.demo.stack import free_port
from canarystream.notify.sender import Outcome, WebhookSender
from tests.notify.conftest import Receiver

FAST = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.05, jitter=0, deadline=10)


def _post(url: str, retry: RetryPolicy = FAST, timeout: float = 5.0) -> Outcome:
    async def run() -> Outcome:
        async with WebhookSender(retry, rng=random.Random(1)) as sender:
            return await sender.post(url, b'{"a": 1}', headers={"X-T": "1"}, timeout=timeout)

    return asyncio.run(run())


def test_a_server_error_is_retried_until_delivered(receiver: Receiver) -> None:
    receiver.answers["/hook"] = [500, 503, 204]
    outcome = _post(receiver.url("/hook"))
    assert (outcome.ok, outcome.tries) == (True, 3)
    assert outcome.detail == "HTTP 204, 0 bytes"
    assert [c["body"] for c in receiver.calls] == [b'{"a": 1}'] * 3
    call = receiver.calls[0]["headers"]
    assert call["content-type"] == "application/json" and call["x-t"] == "1"
    assert call["user-agent"] == "canarystream-notify"


def test_a_redirect_is_never_followed(receiver: Receiver) -> None:
    receiver.answers["/hook"] = [302]
    receiver.headers[302] = {"Location": receiver.url("/elsewhere")}
    outcome = _post(receiver.url("/hook"))
    assert (outcome.ok, outcome.tries) == (False, 1)
    assert "redirect: not followed" in outcome.detail
    assert [c["path"] for c in receiver.calls] == ["/hook"]


def test_a_client_error_is_final_and_429_is_retried(receiver: Receiver) -> None:
    receiver.answers["/gone"] = [404]
    assert _post(receiver.url("/gone")) == Outcome(False, 1, "HTTP 404, 2 bytes")
    receiver.answers["/busy"] = [429, 200]
    receiver.headers[429] = {"Retry-After": "0"}
    assert _post(receiver.url("/busy")).tries == 2


def test_an_unreachable_webhook_is_given_up_after_its_tries() -> None:
    outcome = _post(f"http://127.0.0.1:{free_port()}/hook")
    assert (outcome.ok, outcome.tries) == (False, 4)
    assert "cannot reach" in outcome.detail


def test_no_try_starts_after_the_deadline(receiver: Receiver) -> None:
    receiver.answers["/hook"] = [500]
    slow = RetryPolicy(max_attempts=50, initial_delay=0.2, max_delay=0.2, jitter=0, deadline=0.5)
    outcome = _post(receiver.url("/hook"), slow)
    assert not outcome.ok and outcome.tries == 3
    assert outcome.detail.endswith("retry deadline passed")

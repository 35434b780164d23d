"""The bridge's Kafka-free half: which messages give events, which are dead-lettered and why,
and what its metrics count."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from aiokafka.errors import KafkaTimeoutError
from google.protobuf import json_format
from prometheus_client import CollectorRegistry

from canarystream.contracts.actuation import DeadLetter
from canarystream.ingest import bridge as bridge_module
from canarystream.ingest.bridge import BridgeConfig, Converted, OtlpBridge, bridge_group_id
from canarystream.ingest.metrics import BridgeMetrics
from canarystream.kafka.connection import Connection
from canarystream.kafka.publisher import EventPublisher
from canarystream.settings import load_settings
from tests.ingest.otlp_build import (
    CLIENT,
    SERVER,
    gauge,
    histogram,
    metrics,
    point,
    resource,
    span,
    traces,
)

SHOP = resource(service="shop", version="1")


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes | None


def _bridge(**config: object) -> tuple[OtlpBridge, CollectorRegistry]:
    registry = CollectorRegistry()
    connection = Connection(load_settings(topic_prefix="t."))
    bridge = OtlpBridge(connection, BridgeConfig(**config), metrics=BridgeMetrics(registry))  # type: ignore[arg-type]
    return bridge, registry


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_batch_converts_good_messages_and_dead_letters_the_rest() -> None:
    bridge, registry = _bridge()
    spans = traces((SHOP, [span(1, SERVER), span(2, CLIENT, parent=1, **{"db.system": "pg"}),
                           span(3, SERVER, ms=-1)]))  # fmt: skip
    points = metrics((SHOP, [gauge("cpu", point(0.5)), histogram("latency", 2)]))
    converted = bridge.convert_batch(
        [
            Message("otlp_spans", 0, 7, spans.SerializeToString()),
            Message("otlp_spans", 0, 8, b"\xff\xfe not protobuf"),
            Message("otlp_metrics", 1, 3, points.SerializeToString()),
            Message("otlp_metrics", 1, 4, None),
        ]
    )
    assert [(e["type"], e.get("dependency")) for e in converted.events] == [
        ("request", "pg"),
        ("metric", None),
    ]
    letters = converted.dead_letters
    assert [(d.reason, d.source) for d in letters] == [
        ("malformed_protobuf", "otlp_spans/0@8"),
        ("no_value", "otlp_metrics/1@4"),
    ]
    assert (
        letters[0].original_bytes() == b"\xff\xfe not protobuf" and letters[0].encoding == "base64"
    )
    DeadLetter.model_validate_json(letters[0].model_dump_json())
    counted = {
        ("canarystream_otlp_messages_total", "traces", "converted"): 1,
        ("canarystream_otlp_messages_total", "traces", "dead_lettered"): 1,
        ("canarystream_otlp_messages_total", "metrics", "converted"): 1,
        ("canarystream_otlp_messages_total", "metrics", "dead_lettered"): 1,
    }
    for (name, signal, outcome), count in counted.items():
        assert _value(registry, name, signal=signal, outcome=outcome) == count
    assert _value(registry, "canarystream_otlp_spans_total", outcome="request") == 1
    assert _value(registry, "canarystream_otlp_spans_total", outcome="dependency") == 1
    assert _value(registry, "canarystream_otlp_spans_total", outcome="invalid_latency_ms") == 1
    assert _value(registry, "canarystream_otlp_points_total", outcome="unsupported") == 2
    assert _value(registry, "canarystream_otlp_dead_letters_total", reason="no_value") == 1


def test_topics_and_encoding_are_the_configured_ones() -> None:
    bridge, _ = _bridge(traces_topic="tr", metrics_topic="me", encoding="otlp_json")
    body = json_format.MessageToJson(traces((SHOP, [span(1, SERVER)]))).encode()
    converted = bridge.convert_batch([Message("tr", 0, 0, body), Message("me", 0, 0, body)])
    assert [e["type"] for e in converted.events] == ["request"]  # read as metrics: nothing
    assert converted.dead_letters == []


def test_the_config_refuses_one_topic_for_both_signals() -> None:
    with pytest.raises(ValueError, match="differ"):
        BridgeConfig(traces_topic="x", metrics_topic="x")


def test_the_group_is_behind_the_prefix() -> None:
    assert bridge_group_id(Connection(load_settings(topic_prefix="t."))) == (
        "t.canarystream-otlp-bridge"
    )


def test_the_command_is_registered_with_its_options() -> None:
    from typer.testing import CliRunner  # noqa: PLC0415

    from canarystream.cli import app  # noqa: PLC0415

    result = CliRunner().invoke(app, ["bridge", "otlp", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--traces-topic", "--metrics-topic", "--encoding", "--version-attribute"):
        assert option in result.output
    bad = CliRunner().invoke(app, ["bridge", "otlp", "--encoding", "otlp_xml"])
    assert bad.exit_code == 2


def test_an_unexpected_error_on_one_message_dead_letters_it_and_the_rest_flows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bridge, registry = _bridge()
    good = traces((SHOP, [span(1, SERVER)])).SerializeToString()
    real = bridge_module.convert

    def convert(raw: bytes, *args: object) -> object:
        if raw == b"boom":
            raise KeyError("a bug")
        return real(raw, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(bridge_module, "convert", convert)
    converted = bridge.convert_batch(
        [Message("otlp_spans", 0, 0, b"boom"), Message("otlp_spans", 0, 1, good)]
    )
    assert [letter.reason for letter in converted.dead_letters] == ["internal_error"]
    assert len(converted.events) == 1
    assert _value(registry, "canarystream_otlp_dead_letters_total", reason="internal_error") == 1


class _FailingProducer:
    """Accepts messages and fails the delivery of the second one, as a lost broker would."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, topic: str, value: bytes, **kwargs: object) -> asyncio.Future[None]:
        self.sent += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.sent == 2:
            future.set_exception(KafkaTimeoutError("not acknowledged"))
        else:
            future.set_result(None)
        return future

    async def flush(self) -> None:
        return None


def test_a_failed_delivery_raises_so_the_bridge_never_commits_it() -> None:
    bridge, _ = _bridge()
    events = [
        {"type": "metric", "ts": 1.79e9, "service": s, "version": "1", "name": "n", "value": 1.0}
        for s in ("a", "b", "c")
    ]

    async def run() -> None:
        publisher = EventPublisher(bridge.connection)
        publisher.producer = _FailingProducer()  # type: ignore[assignment]
        await bridge.publish(publisher, Converted(events=events))

    with pytest.raises(KafkaTimeoutError):
        asyncio.run(run())

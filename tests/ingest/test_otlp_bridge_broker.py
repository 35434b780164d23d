"""The bridge on the real broker: OTLP in, keyed telemetry and dead letters out, offsets
committed once the output is acknowledged."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from canarystream.contracts.codec import decode_events
from canarystream.contracts.topics import TELEMETRY_TOPIC, service_partition
from canarystream.ingest.bridge import BridgeConfig, OtlpBridge, bridge_group_id
from tests.ingest.otlp_build import CLIENT, SERVER, T0_NS, gauge, metrics, point, resource, span
from tests.ingest.otlp_build import traces as trace_request
from tests.support.broker import Stack, kafka_bootstrap, stack  # noqa: F401  (broker fixtures)


async def _run_until(bridge: OtlpBridge, done: object, timeout: float = 60.0) -> None:
    task = asyncio.create_task(bridge.run())
    deadline = asyncio.get_running_loop().time() + timeout
    while not done() and asyncio.get_running_loop().time() < deadline:  # type: ignore[operator]
        if task.done():
            task.result()
        await asyncio.sleep(0.2)
    bridge.stop()
    await asyncio.wait_for(task, 30)


@pytest.mark.kafka
def test_the_bridge_republishes_otlp_as_keyed_telemetry(stack: Stack) -> None:  # noqa: F811
    spans = trace_request(
        (resource(service="checkout", version="2"),
         [span(1, SERVER, **{"http.route": "/pay"}),
          span(2, CLIENT, parent=1, **{"db.system": "postgresql"})]),
        (resource(service="search", version="5"), [span(3, SERVER, start=T0_NS + 10**9)]),
    )  # fmt: skip
    points = metrics((resource(service="checkout", version="2"), [gauge("cpu", point(0.5))]))
    stack.produce_raw("otlp_spans", [spans.SerializeToString(), b"\x00garbage\xff"], key=None)
    stack.produce_raw("otlp_metrics", [points.SerializeToString()], key=None)
    config = BridgeConfig(
        traces_topic=stack.topic("otlp_spans"), metrics_topic=stack.topic("otlp_metrics")
    )
    bridge = OtlpBridge(stack.connection, config, start_from="earliest", poll_seconds=0.2)

    def published() -> bool:
        telemetry = bridge.metrics.published
        letters = bridge.metrics.dead_letters
        return (
            telemetry.labels("request")._value.get() == 2
            and telemetry.labels("metric")._value.get() == 1
            and letters.labels("malformed_protobuf")._value.get() == 1
        )

    asyncio.run(_run_until(bridge, published))
    assert published()

    messages = stack.read_messages(TELEMETRY_TOPIC)
    by_service: dict[str, list[dict[str, object]]] = {}
    for message in messages:
        events, _ = decode_events(message.value)
        service = {event["service"] for event in events}
        assert service == {message.key.decode()}  # keyed by its one service
        assert message.partition == service_partition(message.key.decode())
        by_service.setdefault(message.key.decode(), []).extend(events)
    assert sorted((e["type"], e.get("dependency")) for e in by_service["checkout"]) == [
        ("metric", None),
        ("request", "postgresql"),
    ]
    assert [e["type"] for e in by_service["search"]] == ["request"]

    (letter,) = stack.dead_letters()
    assert letter["reason"] == "malformed_protobuf"
    assert letter["source"] == f"{stack.topic('otlp_spans')}/0@1"

    async def committed() -> dict[str, int]:
        consumer = AIOKafkaConsumer(
            **stack.connection.client_kwargs(), group_id=bridge_group_id(stack.connection)
        )
        await consumer.start()
        try:
            return {
                topic: await consumer.committed(TopicPartition(topic, 0)) or 0
                for topic in (config.traces_topic, config.metrics_topic)
            }
        finally:
            await consumer.stop()

    assert asyncio.run(committed()) == {config.traces_topic: 2, config.metrics_topic: 1}

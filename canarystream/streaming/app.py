"""Builds the worker's :class:`faust.App` from settings (and nothing else)."""

from __future__ import annotations

import faust

from canarystream.contracts.topics import TELEMETRY_TOPIC, topic_spec
from canarystream.kafka.connection import Connection
from canarystream.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings, *, replication_factor: int) -> faust.App:
    """The Faust app of the worker.

    At-least-once processing: Faust's exactly-once mode is not used (see
    :mod:`canarystream.streaming.worker` for how duplicates are prevented instead).
    """
    connection = Connection(settings)
    partitions = topic_spec(TELEMETRY_TOPIC).partitions
    datadir = settings.data_dir / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        **connection.faust_kwargs(),
        autodiscover=False,
        store="memory://",
        datadir=str(datadir),
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        topic_replication_factor=replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=1,
        # A dead worker's partitions move after 10 s without heartbeats, not Faust's 60 s.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=16_384,
        # Larger fetches: telemetry arrives in batched messages of several kB each.
        consumer_max_fetch_size=8 * 1024**2,
        broker_max_poll_records=5000,
        table_standby_replicas=0,
        stream_wait_empty=False,  # unacknowledged messages wait for the next checkpoint
        web_enabled=True,
        web_bind="127.0.0.1",
        web_port=settings.web_port,
        web_in_thread=False,
        logging_config=None,
    )

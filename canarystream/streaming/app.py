"""Builds the worker's :class:`faust.App` from settings (and nothing else)."""

from __future__ import annotations

import faust

from canarystream.contracts.topics import TELEMETRY_TOPIC, topic_spec
from canarystream.kafka.connection import Connection
from canarystream.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings, *, replication_factor: int) -> faust.App:
    """The Faust app of the worker.

    What may be tuned comes from the ``faust_*`` settings; what the worker's guarantees rest
    on (acks from every replica, at least once, offsets acknowledged by the checkpoint) is
    fixed here.
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
        producer_acks=-1,  # decisions count as published once every replica has them
        table_standby_replicas=0,
        stream_wait_empty=False,  # unacknowledged messages wait for the next checkpoint
        # Tuning (session timeout, commits, fetch and poll sizes...): the faust_* settings.
        **settings.faust_options(),
        web_enabled=True,
        web_bind=settings.web_bind,
        web_port=settings.web_port,
        web_in_thread=False,
        logging_config=None,
    )

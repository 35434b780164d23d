"""Kafka plumbing: the local broker, connections, and topic administration."""

from canarystream.kafka.connection import LOCAL_BOOTSTRAP, Connection
from canarystream.kafka.local import KAFKA_VERSION, LocalKafka, default_home

__all__ = ["KAFKA_VERSION", "LOCAL_BOOTSTRAP", "Connection", "LocalKafka", "default_home"]

"""The Kafka topics of the public contract: one spec each, the source of ``topics/*.yaml``.

The YAML files are written from :data:`TOPICS` by ``python -m canarystream.contracts.schemas
topics``; edit the specs here, never the files.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ACTUATIONS_TOPIC",
    "AUDIT_TOPIC",
    "DEADLETTER_TOPIC",
    "DECISIONS_TOPIC",
    "DEPLOYMENTS_TOPIC",
    "TELEMETRY_TOPIC",
    "TOPICS",
    "VERDICTS_TOPIC",
    "TopicSpec",
    "service_partition",
    "topic_spec",
]

TELEMETRY_TOPIC = "canary.telemetry.v1"
DEPLOYMENTS_TOPIC = "canary.deployments.v1"
DECISIONS_TOPIC = "canary.decisions.v1"
ACTUATIONS_TOPIC = "canary.actuations.v1"
DEADLETTER_TOPIC = "canary.deadletter.v1"
VERDICTS_TOPIC = "canary.verdicts.v1"
AUDIT_TOPIC = "canary.audit.v1"

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS

# Telemetry and deployments must keep the same partition count and key: a service's rollouts
# and its telemetry then land on partitions of the same number, which one worker owns.
_SERVICE_PARTITIONS = 12
_REPLICATION = 3
_M32 = 0xFFFFFFFF


def _murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash of the Java Kafka client (``Utils.murmur2``)."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & _M32
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & _M32
        k ^= k >> 24
        k = (k * m) & _M32
        h = ((h * m) & _M32) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & _M32
    h ^= h >> 13
    h = (h * m) & _M32
    h ^= h >> 15
    return h


def service_partition(service: str, partitions: int = _SERVICE_PARTITIONS) -> int:
    """The partition of the telemetry and deployments topics that holds ``service``.

    Producers key both topics by service with the Java client's murmur2 partitioner, so a
    service's messages land on this partition (``toPositive(murmur2(key)) % partitions``).

    >>> service_partition("checkout")
    10
    """
    return (_murmur2(service.encode("utf-8")) & 0x7FFFFFFF) % partitions


class TopicSpec(BaseModel):
    """One topic: its layout in the cluster and the JSON Schema of its messages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9._-]*$", description="Topic name.")
    partitions: int = Field(ge=1, description="Partition count; fixed once the topic exists.")
    replication_factor: int = Field(
        ge=1, description="Replicas in production; a single-broker dev cluster caps it at 1."
    )
    key: str | None = Field(
        description="Field of the message the Kafka key is taken from; null: unkeyed."
    )
    cleanup_policy: Literal["delete", "compact"] = Field(description="Kafka cleanup.policy.")
    retention_ms: int = Field(ge=-1, description="Kafka retention.ms; -1 keeps forever.")
    description: str = Field(description="What the topic carries and who writes and reads it.")
    schema_name: str = Field(
        pattern=r"^[a-z][a-z0-9-]*$", description="Name of the JSON Schema of one message."
    )

    @property
    def schema_file(self) -> str:
        """Path of the message schema, relative to the directory of the topic file."""
        return f"schemas/{self.schema_name}.schema.json"

    def document(self) -> dict[str, Any]:
        """The content of ``topics/<name>.yaml``."""
        return {
            "name": self.name,
            "partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "key": self.key,
            "cleanup_policy": self.cleanup_policy,
            "retention_ms": self.retention_ms,
            "description": self.description,
            "schema": self.schema_file,
        }


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        name=TELEMETRY_TOPIC,
        partitions=_SERVICE_PARTITIONS,
        replication_factor=_REPLICATION,
        key="service",
        cleanup_policy="delete",
        retention_ms=_DAY_MS,
        description=(
            "Telemetry from services under rollout (request, metric and probe events). A message "
            "is one event or a JSON array of events of one service. Keyed by service and "
            "co-partitioned with the deployments topic; producers must use the murmur2 "
            "partitioner of the Java client (librdkafka clients: partitioner=murmur2_random). "
            "Kept 24 hours: telemetry matters only while its rollout runs."
        ),
        schema_name="telemetry",
    ),
    TopicSpec(
        name=DEPLOYMENTS_TOPIC,
        partitions=_SERVICE_PARTITIONS,
        replication_factor=_REPLICATION,
        key="service",
        cleanup_policy="delete",
        retention_ms=30 * _DAY_MS,
        description=(
            "Rollout announcements (deployment_started) and control commands (aborted, paused, "
            "resumed, approved) from deployment systems and people, and the routed canary "
            "share actuators read back after each change (traffic_shifted). Keyed by service "
            "with the same partition count as telemetry, so the worker that owns a service's "
            "telemetry also owns its rollouts. Control events carry no service field: their "
            "producer keys them with the service of the rollout. Not compacted: every event of "
            "a key matters, not only the last. Kept 30 days for audit and to rebuild rollout "
            "state."
        ),
        schema_name="deployment",
    ),
    TopicSpec(
        name=DECISIONS_TOPIC,
        partitions=12,
        replication_factor=_REPLICATION,
        key="deployment",
        cleanup_policy="delete",
        retention_ms=30 * _DAY_MS,
        description=(
            "Decisions of the engine (advance, hold, rollback, promote) with their reasons. "
            "Keyed by deployment so a rollout's decisions stay in order for the actuators. "
            "Kept 30 days as the audit trail."
        ),
        schema_name="decision",
    ),
    TopicSpec(
        name=ACTUATIONS_TOPIC,
        partitions=12,
        replication_factor=_REPLICATION,
        key="deployment",
        cleanup_policy="delete",
        retention_ms=30 * _DAY_MS,
        description=(
            "Reports of the actuators: what each backend did with each decision and the traffic "
            "share read back. Keyed by deployment, like decisions. Kept 30 days as the audit "
            "trail."
        ),
        schema_name="actuation",
    ),
    TopicSpec(
        name=DEADLETTER_TOPIC,
        partitions=3,
        replication_factor=_REPLICATION,
        key=None,
        cleanup_policy="delete",
        retention_ms=7 * _DAY_MS,
        description=(
            "Messages that could not be used (malformed JSON, contract violations), each with "
            "the reason, its source and the original bytes. Unkeyed: their order carries no "
            "meaning, and a flood from one bad producer spreads over all partitions. Kept 7 "
            "days for inspection."
        ),
        schema_name="dead-letter",
    ),
    TopicSpec(
        name=VERDICTS_TOPIC,
        partitions=12,
        replication_factor=_REPLICATION,
        key="deployment",
        cleanup_policy="delete",
        retention_ms=30 * _DAY_MS,
        description=(
            "The worker's verdict on every announcement, control event and traffic shift: "
            "accepted or refused (with the reason), and the principal its signature "
            "authenticated; signed by the worker as decisions are (header "
            "canarystream-signature). Keyed by "
            "deployment, like decisions and actuations, so the audit recorder reads all three "
            "co-partitioned. Kept 30 days."
        ),
        schema_name="input-verdict",
    ),
    TopicSpec(
        name=AUDIT_TOPIC,
        partitions=12,
        replication_factor=_REPLICATION,
        key="deployment",
        cleanup_policy="delete",
        retention_ms=-1,
        description=(
            "The audit trail: one record per message of the verdicts, decisions and "
            "actuations topics that its writer signed (others are dead-lettered), "
            "hash-chained per deployment (seq, prev, hash), written by "
            "`canarystream audit record` alone and checked by `canarystream audit verify`. "
            "Partition p holds the records of partition p of those three topics (same key, "
            "same count), so one recorder owns a deployment's whole chain. Kept forever."
        ),
        schema_name="audit-record",
    ),
)


def topic_spec(name: str) -> TopicSpec:
    """The spec of a topic by name; KeyError if the contract has no such topic."""
    for spec in TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(name)

"""What a recorder must know of one audit partition to go on writing it: its chains' heads
and, per input partition, the next message not yet recorded.

Pure: :meth:`PartitionHeads.learn` is fed the partition's records in offset order (the
recorder reads them at start and whenever it is given the partition). Memory is one
:class:`~canarystream.audit.chain.Head` per deployment the partition has seen (about 150
bytes each) and one offset per input partition, whatever the trail's length.

The records trusted are the ones a recorder could have written: an audit record whose hash is
the hash of its content, whose source is a message of this partition's inputs below the end
offset the input had when the rebuild began. A record of a hostile writer that fails these
is left out and counted (its chain goes on from the last record that passes); one that passes
them is indistinguishable from the recorder's own, and ``audit verify`` is what reveals it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from canarystream.audit.chain import Head, parse_source, record_hash
from canarystream.contracts.audit import AUDIT_FORMAT, AUDIT_VERSION

__all__ = ["PartitionHeads"]


@dataclass
class PartitionHeads:
    """Chain heads and next input offsets of one audit partition.

    ``ends``: the end offset of each input topic's partition (its name in the cluster) when
    the rebuild began; a record citing an offset at or past it cannot be genuine.
    """

    partition: int
    ends: Mapping[str, int]
    heads: dict[str, Head] = field(default_factory=dict)
    next_offsets: dict[str, int] = field(default_factory=dict)

    def learn(self, raw: bytes | None) -> str | None:
        """Take in the next record of the partition; the reason it was left out, if it was."""
        try:
            record = orjson.loads(raw or b"")
            trusted = (
                type(record) is dict
                and record.get("format") == AUDIT_FORMAT
                and record.get("version") == AUDIT_VERSION
                and type(record.get("deployment")) is str
                and type(record.get("seq")) is int
                and type(record.get("source")) is str
                and record.get("hash") == record_hash(record)
            )
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            return "unreadable"
        if not trusted:
            return "unreadable" if record.get("format") != AUDIT_FORMAT else "bad_hash"
        source = parse_source(record["source"])
        if source is None:
            return "unreadable"
        topic, partition, offset = source
        if topic not in self.ends or partition != self.partition:
            return "foreign_source"
        if offset >= self.ends[topic]:
            return "future_source"
        self.heads[record["deployment"]] = Head(record["seq"], record["hash"])
        self.next_offsets[topic] = max(self.next_offsets.get(topic, 0), offset + 1)
        return None

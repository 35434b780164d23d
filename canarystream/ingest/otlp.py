"""OTLP message bytes to canarystream events: decoding, then mapping (no I/O).

The mapping follows OpenTelemetry's semantic conventions (README, "OpenTelemetry ingest"):
SERVER spans are requests (:mod:`canarystream.ingest.spans`), CLIENT spans name their
request's dependency, Gauge and Sum points are metric samples
(:mod:`canarystream.ingest.points`). Every event produced satisfies the contract; what cannot
be turned into one is counted with its reason, never raised.
"""

from __future__ import annotations

from canarystream.ingest.conversion import Conversion, IngestOptions
from canarystream.ingest.decode import Encoding, Signal, decode_metrics, decode_traces
from canarystream.ingest.points import convert_metrics
from canarystream.ingest.spans import convert_traces

__all__ = ["convert"]


def convert(
    raw: bytes, signal: Signal, encoding: Encoding, options: IngestOptions | None = None
) -> Conversion:
    """The events of one OTLP message of ``signal`` (traces or metrics).

    Raises :class:`~canarystream.errors.ContractError` (reason ``malformed_protobuf``,
    ``malformed_json`` or ``invalid_otlp``) when the bytes are no OTLP export request; a
    decoded request never raises.
    """
    options = options or IngestOptions()
    if signal == "traces":
        return convert_traces(decode_traces(raw, encoding), options)
    return convert_metrics(decode_metrics(raw, encoding), options)

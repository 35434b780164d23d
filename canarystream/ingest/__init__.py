"""Ingest of telemetry other systems already produce, converted to canarystream's events.

:mod:`canarystream.ingest.otlp` turns OpenTelemetry (OTLP) batches, as the OpenTelemetry
Collector's Kafka exporter writes them, into ``request`` and ``metric`` events; it does no
I/O. :mod:`canarystream.ingest.bridge` is the thin Kafka loop around it (``canarystream bridge
otlp``).
"""

from canarystream.ingest.conversion import Conversion, IngestOptions
from canarystream.ingest.decode import Encoding, Signal
from canarystream.ingest.otlp import convert

__all__ = ["Conversion", "Encoding", "IngestOptions", "Signal", "convert"]

"""The telemetry contract of ARCHITECTURE.md: event fields, sensor columns, lake schemas.

Everything that parses, generates, stores or featurizes events takes its field names from here.
"""

from __future__ import annotations

import pyarrow as pa

SENSOR_COLUMNS: tuple[str, ...] = ("temperature", "humidity", "pressure", "vibration", "voltage")
EVENT_FIELDS: tuple[str, ...] = ("event_id", "device_id", "ts", *SENSOR_COLUMNS)

ANOMALY_KINDS: tuple[str, ...] = ("spike", "stuck", "drift", "dropout", "correlated")

TELEMETRY_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        *(pa.field(name, pa.float64(), nullable=False) for name in SENSOR_COLUMNS),
    ]
)

# The lake's telemetry table, which holds history written by a backfill or an import (the stream's
# events are in its scored table). Nullable columns: an import may carry holes, and validation,
# not the write, is what reports them.
TELEMETRY_TABLE_SCHEMA = pa.schema([field.with_nullable(True) for field in TELEMETRY_SCHEMA])

# Ground truth, as a maintenance log would keep it; it never travels in the event.
LABEL_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("is_anomaly", pa.bool_(), nullable=False),
        pa.field("anomaly_type", pa.string(), nullable=True),
    ]
)

# Readings outside these bounds cannot come from a working sensor: they are rejected, not scored.
SENSOR_BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (-273.15, 2000.0),  # °C
    "humidity": (0.0, 100.0),  # %RH
    "pressure": (0.0, 100_000.0),  # kPa
    "vibration": (0.0, 1000.0),  # mm/s RMS
    "voltage": (0.0, 100_000.0),  # V
}

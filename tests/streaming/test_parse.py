"""Parsing and validation in Spark SQL: every record is either a typed event or a reason."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from pyspark.sql import SparkSession

from streaming import parse

GOOD = {
    "event_id": "e-1",
    "device_id": "dev-00001",
    "ts": "2026-11-25T10:00:00.123Z",
    "temperature": 55.5,
    "humidity": 40.0,
    "pressure": 300.0,
    "vibration": 2.0,
    "voltage": 230.0,
}


def _event(**changes: object) -> bytes:
    event = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in event.items() if v is not _DROP})


_DROP = object()

CASES: list[tuple[str, bytes, bytes | None, str | None, str]] = [
    ("valid", _event(), b"dev-00001", None, ""),
    ("integers are numbers", _event(temperature=55, voltage=230), b"k", None, ""),
    ("extra fields ignored", _event(firmware="1.2", extra={"a": [1]}), b"k", None, ""),
    ("no kafka key", _event(), None, None, ""),
    ("non-ascii device id", _event(device_id="capteur-été-東京"), b"k", None, ""),
    ("offset timestamp", _event(ts="2026-11-25T11:00:00+01:00"), b"k", None, ""),
    ("not json", b"temperature=55", b"k", parse.INVALID_JSON, "not a JSON object"),
    ("json array", b"[1, 2, 3]", b"k", parse.INVALID_JSON, "not a JSON object"),
    ("truncated json", _event()[:-5], b"k", parse.INVALID_JSON, "not a JSON object"),
    ("missing field", _event(humidity=_DROP), b"k", parse.MISSING_FIELD, "humidity"),
    ("null field", _event(pressure=None), b"k", parse.MISSING_FIELD, "pressure"),
    ("empty device id", _event(device_id=""), b"k", parse.MISSING_FIELD, "device_id"),
    ("quoted number", _event(temperature="55.5"), b"k", parse.WRONG_TYPE, "temperature"),
    ("text for a number", _event(voltage="high"), b"k", parse.WRONG_TYPE, "voltage"),
    ("bad timestamp", _event(ts="yesterday"), b"k", parse.BAD_TIMESTAMP, "yesterday"),
    ("NaN", _event()[:-1] + b',"vibration":NaN}', b"k", parse.NON_FINITE, "vibration"),
    ("infinite", _event().replace(b'"pressure":300.0', b'"pressure":1e400'), b"k", parse.NON_FINITE, "pressure"),
    ("impossible humidity", _event(humidity=130.0), b"k", parse.OUT_OF_RANGE, "humidity"),
    ("negative vibration", _event(vibration=-1.0), b"k", parse.OUT_OF_RANGE, "vibration"),
    ("too large", _event(padding="x" * 5000), b"k", parse.TOO_LARGE, "exceeds"),
    ("binary", b"\xff\xfe\x00\x81\xc3\x28", b"\xff", parse.INVALID_JSON, "not a JSON"),
    ("not utf-8 inside json", b'{"event_id":"\xff\xfe","device_id":"\xc3\x28"}', b"k", parse.MISSING_FIELD, "ts"),
    ("empty value", b"", None, parse.INVALID_JSON, "not a JSON"),
]


@pytest.fixture(scope="module")
def parsed(spark: SparkSession) -> dict[str, dict[str, object]]:
    rows = [
        (key, value, "iot_stream", 3, offset, datetime(2026, 11, 25, 10, 0, 1, tzinfo=UTC))
        for offset, (_, value, key, _, _) in enumerate(CASES)
    ]
    frame = spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
    )
    result = parse.parse_events(frame, max_event_bytes=4096).collect()
    return {CASES[row["offset"]][0]: row.asDict() for row in result}


@pytest.mark.parametrize(("name", "value", "key", "reason", "detail"), CASES, ids=[c[0] for c in CASES])
def test_reason(
    parsed: dict[str, dict[str, object]], name: str, value: bytes, key: bytes | None, reason: str | None, detail: str
) -> None:
    row = parsed[name]
    assert row["reason"] == reason
    if reason is not None:
        assert bytes(row["value"]) == value  # the original bytes go to the dead-letter topic unchanged
    assert detail in (row["reason_detail"] or "")
    if reason is None:
        assert row["value"] is None  # a valid event lives on as typed columns only
        assert row["reason_detail"] is None
        assert row["ts"] is not None and row["temperature"] is not None


def test_valid_values_are_typed(parsed: dict[str, dict[str, object]]) -> None:
    row = parsed["valid"]
    assert row["ts"] == datetime(2026, 11, 25, 10, 0, 0, 123000)
    assert row["temperature"] == 55.5
    assert parsed["offset timestamp"]["ts"] == datetime(2026, 11, 25, 10, 0, 0)
    assert parsed["non-ascii device id"]["device_id"] == "capteur-été-東京"
    assert parsed["integers are numbers"]["voltage"] == 230.0

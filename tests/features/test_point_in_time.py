"""Feast's point-in-time join as Spark executes it, against answers worked out by hand."""

from __future__ import annotations

from datetime import datetime

from features.point_in_time import as_of


def _at(minute: int) -> datetime:
    return datetime(2026, 12, 1, 10, minute)


def test_each_row_gets_the_newest_feature_row_at_or_before_it_within_the_ttl(spark) -> None:  # noqa: ANN001
    rows = spark.createDataFrame(
        [
            ("a", _at(0), 1.0),
            ("a", _at(15), 2.0),
            ("a", _at(30), 3.0),  # at the very instant of an entity row: it counts
            ("b", _at(5), 10.0),
            ("c", _at(50), 99.0),  # only after c's entity row: from its future
        ],
        "device_id string, _pit_time timestamp, value double",
    )
    entities = spark.createDataFrame(
        [
            ("a", _at(14)),
            ("a", _at(30)),
            ("a", _at(59)),  # its newest row is 29 minutes old: past a 20-minute TTL
            ("b", _at(20)),
            ("c", _at(40)),
            ("d", _at(40)),  # no feature row at all
        ],
        "device_id string, ts timestamp",
    )

    def joined(ttl_seconds: int) -> dict[tuple[str, datetime], float | None]:
        found = as_of(entities, rows, "device_id", "ts", ["value"], ttl_seconds).collect()
        assert len(found) == entities.count(), "one answer per entity row, none lost or repeated"
        return {(row["device_id"], row["ts"]): row["value"] for row in found}

    assert joined(20 * 60) == {
        ("a", _at(14)): 1.0,
        ("a", _at(30)): 3.0,
        ("a", _at(59)): None,
        ("b", _at(20)): 10.0,
        ("c", _at(40)): None,
        ("d", _at(40)): None,
    }
    # Without a TTL (a device's baseline, its registry row) however old the newest row is.
    assert joined(0)[("a", _at(59))] == 3.0

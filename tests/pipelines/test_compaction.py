"""Compaction of the lake's Delta tables: small files become few, and no row moves in or out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from features.schema import SENSOR_COLUMNS, TELEMETRY_TABLE_SCHEMA
from infra.lake import Lake
from infra.settings import load_settings
from pipelines.compaction import compact_tables

START = datetime(2026, 11, 20, tzinfo=UTC)


def _batch(batch_id: int, rows: int) -> pa.Table:
    times = [START + timedelta(hours=12 * batch_id, seconds=i) for i in range(rows)]
    return pa.table(
        {
            "event_id": [f"{batch_id}-{i}" for i in range(rows)],
            "device_id": [f"dev-{i % 3}" for i in range(rows)],
            "ts": pa.array(times, pa.timestamp("us", tz="UTC")),
            **{name: [float(i)] * rows for i, name in enumerate(SENSOR_COLUMNS)},
        },
        schema=TELEMETRY_TABLE_SCHEMA,
    )


def test_small_files_become_few_and_every_row_stays(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, lake_root=str(tmp_path / "lake"))
    lake = Lake(settings)
    for batch_id in range(8):  # a commit per batch, as the stream makes; two batches a date
        lake.append_table("telemetry", _batch(batch_id, 50))
    before = lake.read_table("telemetry").sort_by("event_id")
    files_before = len(lake.delta_table("telemetry").file_uris())

    (compaction,) = compact_tables(lake)

    table = lake.delta_table("telemetry")
    assert compaction.table == "telemetry"
    assert compaction.files_removed == files_before == 8
    assert len(table.file_uris()) == compaction.files_added == 4  # one file a date
    assert table.history(1)[0]["operation"] == "OPTIMIZE"
    assert lake.read_table("telemetry").sort_by("event_id").equals(before)


def test_a_lake_without_tables_is_left_alone(tmp_path: Path) -> None:
    assert compact_tables(Lake(load_settings(home=tmp_path, lake_root=str(tmp_path / "lake")))) == []

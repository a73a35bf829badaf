"""`infra.lake.Lake`: Delta tables through deltalake, Parquet datasets through Arrow, and one-line
errors for what is missing or broken."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from infra.exceptions import LakeError
from infra.lake import Lake
from infra.settings import load_settings


def _rows(*event_ids: str, day: int = 1) -> pa.Table:
    ts = [datetime(2026, 12, day, 12, tzinfo=UTC)] * len(event_ids)
    return pa.table({"event_id": list(event_ids), "ts": pa.array(ts, pa.timestamp("us", tz="UTC"))})


def _lake(tmp_path: Path) -> Lake:
    return Lake(load_settings(home=tmp_path, lake_root=str(tmp_path / "lake")))


def test_a_delta_table_is_appended_by_date_and_read_as_of_its_last_commit(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    lake.append_table("telemetry", _rows("a", "b", day=1))
    lake.append_table("telemetry", _rows("c", day=2))

    table = lake.read_table("telemetry").sort_by("event_id")
    assert table.column("event_id").to_pylist() == ["a", "b", "c"]
    assert table.column("date").to_pylist() == ["2026-12-01", "2026-12-01", "2026-12-02"]
    assert sorted(lake.delta_table("telemetry").metadata().partition_columns) == ["date"]
    properties = lake.delta_table("telemetry").metadata().configuration
    assert properties["delta.dataSkippingStatsColumns"] == "ts"
    assert properties["delta.logRetentionDuration"] == "interval 2 days"

    assert lake.delete_rows("telemetry", "date = '2026-12-01'") == 2
    assert lake.read_table("telemetry", ["event_id"]).column("event_id").to_pylist() == ["c"]


def test_a_table_not_written_yet_is_one_line(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    with pytest.raises(LakeError, match=r"^scored/ is not a Delta table under .* yet; `warden backfill` or") as info:
        lake.read_table("scored")
    assert "\n" not in str(info.value)
    assert lake.delete_rows("scored", "batch_id = 1") == 0


def test_a_broken_parquet_file_is_one_line_that_names_it(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    lake.write(_rows("a"), "labels", "part-{i}.parquet")
    (tmp_path / "lake" / "labels" / "date=2026-12-01" / "broken.parquet").write_bytes(b"not parquet at all")

    with pytest.raises(LakeError, match=r"^cannot read labels/ under .*broken\.parquet") as info:
        lake.read("labels")
    assert "\n" not in str(info.value)

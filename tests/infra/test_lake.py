"""`infra.lake.Lake.read` while a stream replays a batch: the files it listed change under it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from infra import lake as lake_module
from infra.lake import Lake
from infra.settings import load_settings

BATCH = "stream-000000000000-{i}.parquet"


def _batch(*event_ids: str) -> pa.Table:
    ts = [datetime(2026, 12, 1, 12, tzinfo=UTC)] * len(event_ids)
    return pa.table({"event_id": list(event_ids), "ts": pa.array(ts, pa.timestamp("us", tz="UTC"))})


def _replay_between_listing_and_reading(monkeypatch: pytest.MonkeyPatch, lake: Lake, times: int) -> list[int]:
    """The first `times` listings each see the batch's file just before a replay deletes it; the
    replay moves its own file in before the next listing (streaming.sinks: delete, then move)."""
    listed = ds.dataset
    replays: list[int] = []

    def listing_during_a_replay(*args: object, **kwargs: object) -> ds.Dataset:
        if replays:
            lake.write(_batch("a", "b"), "scored", BATCH)
        dataset = listed(*args, **kwargs)
        if len(replays) < times:
            lake.remove("scored", "stream-000000000000-", ["2026-12-01"])
            replays.append(len(replays))
        return dataset

    monkeypatch.setattr(lake_module.ds, "dataset", listing_during_a_replay)
    return replays


def test_a_read_lists_again_when_a_replay_replaced_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lake = Lake(load_settings(home=tmp_path, lake_root=str(tmp_path / "lake")))
    lake.write(_batch("a", "b"), "scored", BATCH)
    replays = _replay_between_listing_and_reading(monkeypatch, lake, times=2)

    table = lake.read("scored")

    assert len(replays) == 2
    assert sorted(table.column("event_id").to_pylist()) == ["a", "b"]


def test_a_file_that_keeps_failing_still_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lake = Lake(load_settings(home=tmp_path, lake_root=str(tmp_path / "lake")))
    lake.write(_batch("a"), "scored", BATCH)
    folder = tmp_path / "lake" / "scored" / "date=2026-12-01"
    (folder / "broken.parquet").write_bytes(b"not parquet at all")
    monkeypatch.setattr(lake_module.time, "sleep", lambda _seconds: None)

    with pytest.raises(pa.ArrowInvalid, match="broken.parquet"):
        lake.read("scored")

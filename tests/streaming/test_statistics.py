"""The stream's in-memory online statistics, against a real Feast store (SQLite online store)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from feast import FeatureStore

from features.formulas import STATS_COLUMNS, STATS_TIME
from features.store import apply_definitions, feature_store
from infra.context import Context
from infra.settings import Settings, load_settings
from streaming.statistics import OnlineStatistics


@pytest.fixture
def store_settings(tmp_path: Path) -> Settings:
    """A Feast store of its own, with the repository's definitions applied."""
    ctx = Context.build("warden-tests", load_settings(home=tmp_path))
    apply_definitions(ctx.feature_store, ctx.settings, ctx.lake)
    return ctx.settings


def _write(store: FeatureStore, device: str, value: float) -> None:
    now = pd.Timestamp(datetime.now(UTC)).floor("s")
    stats = {
        "device_id": [device],
        "event_timestamp": [now],
        "window_end": [now],
        "count": [12],
        STATS_TIME: [now],
        **{name: [value] for name in STATS_COLUMNS},
    }
    store.write_to_online_store("device_stats", pd.DataFrame(stats))
    store.write_to_online_store(
        "device_metadata", pd.DataFrame({"device_id": [device], "registered_at": [now], "device_type": ["pump"]})
    )


def test_devices_are_read_once_then_refreshed(store_settings: Settings) -> None:
    settings = store_settings
    writer = feature_store(settings)
    _write(writer, "dev-1", 1.5)
    statistics = OnlineStatistics(feature_store(settings), refresh_seconds=3600)
    first = statistics.of(["dev-2", "dev-1"])
    assert list(first["device_id"]) == ["dev-2", "dev-1"]
    assert first.loc[0, "device_type"] is None and first.loc[1, STATS_COLUMNS[0]] == 1.5

    _write(writer, "dev-1", 2.5)
    _write(writer, "dev-2", 3.5)
    _write(writer, "dev-3", 4.5)
    # Devices met before keep their values until a refresh; a new one is read at once.
    held = statistics.of(["dev-1", "dev-2", "dev-3"]).set_index("device_id")[STATS_COLUMNS[0]]
    assert held.to_dict() == {"dev-1": 1.5, "dev-2": None, "dev-3": 4.5}

    statistics.refresh()
    fresh = statistics.of(["dev-1", "dev-2", "dev-3"]).set_index("device_id")
    assert fresh[STATS_COLUMNS[0]].to_dict() == {"dev-1": 2.5, "dev-2": 3.5, "dev-3": 4.5}
    assert fresh.loc["dev-2", "device_type"] == "pump"


def test_the_background_refresh_follows_the_store(store_settings: Settings) -> None:
    settings = store_settings
    writer = feature_store(settings)
    _write(writer, "dev-1", 1.0)
    statistics = OnlineStatistics(feature_store(settings), refresh_seconds=0.2)
    assert statistics.of(["dev-1"]).loc[0, STATS_COLUMNS[0]] == 1.0
    statistics.start()
    try:
        _write(writer, "dev-1", 7.0)
        deadline = time.monotonic() + 30
        while statistics.of(["dev-1"]).loc[0, STATS_COLUMNS[0]] != 7.0:
            assert time.monotonic() < deadline, "the refresh never read the new value"
            time.sleep(0.1)
    finally:
        statistics.stop()

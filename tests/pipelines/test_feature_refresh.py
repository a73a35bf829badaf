"""Feature refresh: a fleet's history, however old, puts every device's statistics and baseline
online, and a stream started long after it compares readings with them, not with nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
from pyspark.sql import SparkSession

from features import frames
from features.formulas import (
    BASELINE,
    BASELINE_COLUMNS,
    BASELINE_OF,
    BASELINE_TIME,
    MISSING,
    OF_TYPE,
    OWN,
    STATS_COLUMNS,
    STATS_TIME,
    TYPE_BASELINE,
)
from features.schema import SENSOR_COLUMNS
from features.store import online_features
from infra.context import Context
from infra.settings import load_settings
from pipelines.backfill import BackfillParams, backfill
from pipelines.feature_refresh import refresh_features

DEVICES = [f"dev-{index:05d}" for index in range(4)]


def test_history_days_old_is_online_for_every_device_after_the_first_refresh(
    spark: SparkSession, tmp_path: Path
) -> None:
    ctx = Context.build("warden-tests", load_settings(home=tmp_path, lake_root=str(tmp_path / "lake")))
    settings, lake = ctx.settings, ctx.lake
    # History replayed days after it happened: its newest reading is three days old, far beyond
    # the statistics' TTL, from which Feast's own first incremental load would start.
    history_end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
    backfill(lake, BackfillParams(days=1, devices=len(DEVICES), interval_s=600, end=history_end, seed=5))
    # A device of the registry that has not sent a reading yet, of the first device's type: its
    # type's baseline stands in.
    fleet = lake.read("devices").to_pandas().set_index("device_id")
    newcomer_type = fleet.loc[DEVICES[0], "device_type"]
    newcomer = pa.table(
        {
            "device_id": ["dev-newcomer"],
            "device_type": [newcomer_type],
            "registered_at": pa.array([history_end - timedelta(days=2)], pa.timestamp("us", tz="UTC")),
        }
    )
    lake.write_file(newcomer, "devices", "newcomer.parquet")
    refresh_features(ctx, datetime.now(UTC))

    known = [*DEVICES, "dev-newcomer"]
    online = online_features(ctx.feature_store, [*known, "dev-never-seen"]).set_index("device_id")
    newest = pd.Timestamp(history_end)
    step, window = (timedelta(minutes=m) for m in (settings.feature.step_minutes, settings.feature.window_minutes))
    for device in DEVICES:
        assert online.loc[device, STATS_COLUMNS[0]] is not None, device
        # Each device's newest window: the last grid point whose window still holds its last reading.
        assert newest - step < online.loc[device, STATS_TIME] <= newest + window, online.loc[device, STATS_TIME]
        assert online.loc[device, "device_type"] is not None
        # The daily baseline: the newest midnight whose days hold the history.
        assert online.loc[device, BASELINE_COLUMNS[0]] is not None, device
        assert newest <= online.loc[device, BASELINE_TIME] <= pd.Timestamp(datetime.now(UTC)), device
        assert online.loc[device, BASELINE_OF] == OWN
    assert online.loc["dev-newcomer", STATS_COLUMNS[0]] is None
    assert online.loc["dev-newcomer", BASELINE_OF] == OF_TYPE
    assert online.loc["dev-newcomer", "device_type"] == newcomer_type
    # The type's baseline pools its devices' readings: its median lies among theirs.
    of_type = [online.loc[d, BASELINE_COLUMNS[0]] for d in DEVICES if fleet.loc[d, "device_type"] == newcomer_type]
    assert min(of_type) * 0.99 <= online.loc["dev-newcomer", BASELINE_COLUMNS[0]] <= max(of_type) * 1.01
    assert online.loc["dev-never-seen", STATS_COLUMNS[0]] is None

    # An event now: its device's recent window is days old, its baseline stands in, and its
    # type's for the device without history.
    now = pd.Timestamp(datetime.now(UTC))
    events = online.reset_index().assign(ts=now, event_id="e", **{sensor: 10.0 for sensor in SENSOR_COLUMNS})
    used = frames.usable_stats(events, settings.feature.max_age_minutes).set_index("device_id")
    assert list(used.loc[DEVICES, "feature_status"]) == [BASELINE] * len(DEVICES)
    assert used.loc["dev-newcomer", "feature_status"] == TYPE_BASELINE
    for column in STATS_COLUMNS:
        assert list(used.loc[known, column]) == list(online.loc[known, f"baseline_{column}"]), column
    assert used.loc["dev-never-seen", "feature_status"] == MISSING

    # A refresh of an interval older than what is online (a retraining of a past window) leaves
    # the newer statistics online: the online store keeps what is written last.
    refresh_features(ctx, history_end - timedelta(hours=12), history_end - timedelta(hours=13))
    again = online_features(ctx.feature_store, DEVICES).set_index("device_id")
    for column in (STATS_TIME, BASELINE_TIME):
        pd.testing.assert_series_equal(again[column], online.loc[DEVICES, column])

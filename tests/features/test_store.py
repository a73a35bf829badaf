"""The Feast store as the stream reads it, while feature_refresh materializes into it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from feast.feature_view import FeatureViewState

from features.formulas import STATS_COLUMNS, STATS_TIME
from features.store import apply_definitions, feature_store, online_features
from infra.context import Context
from infra.settings import load_settings


def test_online_reads_go_on_while_a_view_is_materializing(tmp_path: Path) -> None:
    ctx = Context.build("warden-tests", load_settings(home=tmp_path))
    store = ctx.feature_store
    apply_definitions(store, ctx.settings, ctx.lake)
    now = pd.Timestamp(datetime.now(UTC)).floor("s")
    stats = pd.DataFrame(
        {
            "device_id": ["dev-1"],
            "event_timestamp": [now],
            "window_end": [now],
            "count": [12],
            STATS_TIME: [now],
            **{name: [1.5] for name in STATS_COLUMNS},
        }
    )
    store.write_to_online_store("device_stats", stats)
    store.write_to_online_store(
        "device_metadata", pd.DataFrame({"device_id": ["dev-1"], "registered_at": [now], "device_type": ["pump"]})
    )
    # What `materialize` does for as long as it runs (feature_refresh, every 15 minutes).
    for name in ("device_stats", "device_metadata"):
        view = store.get_feature_view(name)
        view.state = FeatureViewState.MATERIALIZING
        store.registry.apply_feature_view(view, store.project, commit=True)

    reader = feature_store(ctx.settings)  # the stream's own store, in another process
    assert reader.get_feature_view("device_metadata").state == FeatureViewState.MATERIALIZING
    frame = online_features(reader, ["dev-1", "dev-unknown"])
    assert frame.loc[0, "device_type"] == "pump"
    assert frame.loc[0, STATS_COLUMNS[0]] == 1.5
    assert frame.loc[1, "device_type"] is None

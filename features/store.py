"""The Feast store: open it, apply the repository's definitions, read online statistics."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import yaml

from features.formulas import BASELINE_COLUMNS, BASELINE_OF, BASELINE_TIME, STATS_COLUMNS, STATS_TIME
from infra.lake import Lake
from infra.logs import library_output
from infra.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

REPO_DIR = Path(__file__).parent / "repo"
FEATURE_SERVICE = "anomaly_v1"
_REGISTRY_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# What `online_features` gives per device, in this order.
ONLINE_COLUMNS = ["device_id", STATS_TIME, *STATS_COLUMNS, BASELINE_TIME, *BASELINE_COLUMNS, BASELINE_OF, "device_type"]
# The views whose rows are dated windows: each load takes those of the refreshed interval.
_WINDOWED_VIEWS = ("device_stats", "device_baseline")


def feature_store(settings: Settings) -> FeatureStore:
    """The store of `features/repo`: its registry and online store under WARDEN_HOME/feast, or
    wherever WARDEN_FEAST_CONFIG's feature_store.yaml puts them (Redis, a SQL registry)."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    # What Feast's own loader does (it expands ${VARS} from the environment), with WARDEN_FEAST_DIR
    # from these settings: each store a process opens is the one of its own settings.
    text = (settings.feast_config or REPO_DIR / "feature_store.yaml").read_text()
    text = os.path.expandvars(text.replace("${WARDEN_FEAST_DIR}", str(settings.feast_dir)))
    config = RepoConfig(**yaml.safe_load(text))
    config.repo_path = REPO_DIR
    return FeatureStore(repo_path=str(REPO_DIR), config=config)


def apply_definitions(store: FeatureStore, settings: Settings, lake: Lake) -> None:
    """What `feast apply` does, from the repository's modules.

    The definitions are built from `settings` (the window lengths) and the lake they read, not at
    import, so one process can serve any lake.
    """
    from features.repo import entities, feature_services, feature_views

    device_stats = feature_views.device_stats(settings, lake)
    device_baseline = feature_views.device_baseline(settings, lake)
    device_metadata = feature_views.device_metadata(lake)
    store.apply(
        [
            entities.device,
            device_stats,
            device_baseline,
            device_metadata,
            feature_services.anomaly_v1(device_stats, device_baseline, device_metadata),
        ]
    )


def online_features(store: FeatureStore, device_ids: list[str]) -> pd.DataFrame:
    """One batched online read for these devices: statistics and baseline, the ends of their
    windows, device type.

    Devices the store has never seen come back with nulls; no TTL is applied here
    (`usable_stats` of `features.logic` or `features.frames` decides what is fresh).
    """
    service = store.get_feature_service(FEATURE_SERVICE)
    response = store.get_online_features(features=service, entity_rows={"device_id": device_ids})
    frame = response.to_df()[ONLINE_COLUMNS]
    for column in (STATS_TIME, BASELINE_TIME):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame.astype(object).where(frame.notna(), None)


def materialize(store: FeatureStore, settings: Settings, start: datetime, end: datetime) -> None:
    """Load the statistics and baselines of (start, end] into the online store, and on the first
    load every device's newest ones however old (Feast's own first incremental load reaches back
    only one TTL from now: a device quiet for longer, or history replayed days later, would have
    nothing online at all). Feast's own lines and progress bars go to the libraries' log.

    The online store keeps whatever was written last, so an interval that ends before what is
    already online is not loaded: its devices' newer rows are there.
    """
    with library_output(settings):
        for name in _WINDOWED_VIEWS:
            loaded_up_to = store.get_feature_view(name).most_recent_end_time
            if loaded_up_to is not None and loaded_up_to.tzinfo is None:
                loaded_up_to = loaded_up_to.replace(tzinfo=UTC)
            if loaded_up_to is None or end >= loaded_up_to:
                # From where the last load ended at the latest, so that no interval is skipped.
                since = _REGISTRY_EPOCH if loaded_up_to is None else min(start, loaded_up_to)
                store.materialize(start_date=since, end_date=end, feature_views=[name])
        # The registry never expires (ttl 0): load all of it, it is one row per device.
        store.materialize(start_date=_REGISTRY_EPOCH, end_date=end, feature_views=["device_metadata"])

"""Feature views: what the stream reads online and training reads point-in-time."""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64, String, UnixTimestamp

from features.formulas import BASELINE_COLUMNS, BASELINE_OF, BASELINE_TIME, OF_TYPE, OWN, STATS_COLUMNS, STATS_TIME
from features.repo.data_sources import device_baseline_source, device_metadata_source, device_stats_source
from features.repo.entities import device
from infra.lake import Lake
from infra.settings import Settings


def device_stats(settings: Settings, lake: Lake) -> FeatureView:
    return FeatureView(
        name="device_stats",
        entities=[device],
        # Offline joins ignore older rows; online reads do not enforce it (features.logic.usable_stats does).
        ttl=timedelta(minutes=settings.feature.max_age_minutes),
        schema=[
            Field(name="count", dtype=Int64, description="Readings in the window."),
            Field(name=STATS_TIME, dtype=UnixTimestamp, description="End of the window these statistics cover."),
            *(Field(name=name, dtype=Float64) for name in STATS_COLUMNS),
        ],
        source=device_stats_source(lake),
        online=True,
        description=f"Mean and standard deviation of each sensor over the last {settings.feature.window_minutes} minutes.",
        owner="streamwarden",
        tags={
            "window_minutes": str(settings.feature.window_minutes),
            "step_minutes": str(settings.feature.step_minutes),
        },
    )


def device_baseline(settings: Settings, lake: Lake) -> FeatureView:
    return FeatureView(
        name="device_baseline",
        entities=[device],
        # A device's normal does not expire: it is what its features fall back on when its recent
        # window is stale or missing, however long it was quiet.
        ttl=timedelta(0),
        schema=[
            Field(name=BASELINE_TIME, dtype=UnixTimestamp, description="End of the days this baseline covers."),
            *(Field(name=name, dtype=Float64) for name in BASELINE_COLUMNS),
            Field(
                name=BASELINE_OF,
                dtype=String,
                description=f"'{OWN}': the device's own history; '{OF_TYPE}': its type's, for a device without history.",
            ),
        ],
        source=device_baseline_source(lake),
        online=True,
        description=f"Robust mean and standard deviation of each sensor over the last {settings.feature.baseline_days} days, "
        "the device's own or, before it has history, its type's.",
        owner="streamwarden",
        tags={"days": str(settings.feature.baseline_days)},
    )


def device_metadata(lake: Lake) -> FeatureView:
    return FeatureView(
        name="device_metadata",
        entities=[device],
        ttl=timedelta(0),  # a device's type does not expire
        schema=[Field(name="device_type", dtype=String, description="Kind of machine the device monitors.")],
        source=device_metadata_source(lake),
        online=True,
        description="Device registry attributes.",
        owner="streamwarden",
        tags={},
    )

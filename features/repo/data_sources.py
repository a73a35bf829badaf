"""Data sources: Parquet datasets in the lake, written by `pipelines.feature_refresh` and the backfill."""

from feast import FileSource

from infra.lake import Lake


def device_stats_source(lake: Lake) -> FileSource:
    return FileSource(
        name="device_stats_source",
        path=lake.offline_url("feast/device_stats"),
        timestamp_field="window_end",
        description="Per-device rolling sensor statistics on a fixed time grid.",
        owner="streamwarden",
        tags={"written_by": "pipelines.feature_refresh"},
    )


def device_baseline_source(lake: Lake) -> FileSource:
    return FileSource(
        name="device_baseline_source",
        path=lake.offline_url("feast/device_baseline"),
        timestamp_field="window_end",
        description="Per-device long-term sensor baselines, one row per device and day.",
        owner="streamwarden",
        tags={"written_by": "pipelines.feature_refresh"},
    )


def device_metadata_source(lake: Lake) -> FileSource:
    return FileSource(
        name="device_metadata_source",
        path=lake.offline_url("devices"),
        timestamp_field="registered_at",
        description="The device registry: one row per device and registration.",
        owner="streamwarden",
        tags={"written_by": "pipelines.backfill, streaming.simulation"},
    )

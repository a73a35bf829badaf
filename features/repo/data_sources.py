"""Data sources: Parquet datasets in the lake, written by `pipelines.feature_refresh`."""

from feast import FileSource

from infra.settings import get_settings

_lake = get_settings().lake_url

device_stats_source = FileSource(
    name="device_stats_source",
    path=f"{_lake}/feast/device_stats",
    timestamp_field="window_end",
    description="Per-device rolling sensor statistics on a fixed time grid.",
    owner="streamwarden",
    tags={"written_by": "pipelines.feature_refresh"},
)

device_metadata_source = FileSource(
    name="device_metadata_source",
    path=f"{_lake}/devices",
    timestamp_field="registered_at",
    description="The device registry: one row per device and registration.",
    owner="streamwarden",
    tags={"written_by": "pipelines.backfill, streaming.simulation"},
)

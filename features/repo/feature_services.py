"""Feature services: the feature set a model version is trained and scored with."""

from feast import FeatureService, FeatureView


def anomaly_v1(device_stats: FeatureView, device_baseline: FeatureView, device_metadata: FeatureView) -> FeatureService:
    return FeatureService(
        name="anomaly_v1",
        features=[device_stats, device_baseline, device_metadata],
        description="Inputs of the anomaly models: rolling device statistics, the device's baseline, its type.",
        owner="streamwarden",
        tags={"consumers": "streaming.job,pipelines.training"},
    )

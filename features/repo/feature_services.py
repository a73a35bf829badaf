"""Feature services: the feature set a model version is trained and scored with."""

from feast import FeatureService

from features.repo.feature_views import device_metadata, device_stats

anomaly_v1 = FeatureService(
    name="anomaly_v1",
    features=[device_stats, device_metadata],
    description="Inputs of the anomaly models: rolling device statistics and the device type.",
    owner="streamwarden",
    tags={"consumers": "streaming.job,pipelines.training"},
)

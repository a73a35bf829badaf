"""Features: the telemetry contract and the feature logic shared by batch and stream (Feast repo in `repo/`)."""

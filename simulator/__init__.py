"""The telemetry simulator: a synthetic fleet that both the backfill (batch) and `warden simulate` (stream) use."""

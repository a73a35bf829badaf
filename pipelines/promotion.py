"""Promotion: a person's decision on a registered version, recorded on the version itself."""

from __future__ import annotations

from infra.settings import Settings
from models import registry


def decide(settings: Settings, version: str, approve: bool, decided_by: str, reason: str) -> registry.VersionInfo:
    """Approve (champion moves to `version`, the old champion becomes previous) or reject it."""
    client = registry.configure_mlflow(settings)
    if approve:
        return registry.promote(client, settings.model_name, version, decided_by, reason)
    return registry.reject(client, settings.model_name, version, decided_by, reason)

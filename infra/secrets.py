"""Passwords: generated once and kept under $WARDEN_HOME/secrets (0600), unless the environment gives them."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from infra.settings import Settings


def stored_secret(home: Path, name: str) -> str:
    """The secret called `name`, created on first use."""
    path = home / "secrets" / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    value = secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value)
    return value


def mlflow_password(settings: Settings) -> str:
    """The MLflow admin password: MLFLOW_TRACKING_PASSWORD if set, else the one `warden up` generated."""
    if settings.mlflow_password is not None:
        return settings.mlflow_password.get_secret_value()
    return stored_secret(settings.home, "mlflow-admin")

"""Passwords: generated once and kept under $WARDEN_HOME/secrets (0600), unless the environment gives them."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from infra.settings import Settings

_MLFLOW_ADMIN = "mlflow-admin"


def read_secret(home: Path, name: str) -> str | None:
    """The secret called `name`, or None when none was created yet."""
    path = home / "secrets" / name
    return path.read_text().strip() if path.exists() else None


def stored_secret(home: Path, name: str) -> str:
    """The secret called `name`, created on first use."""
    if (existing := read_secret(home, name)) is not None:
        return existing
    path = home / "secrets" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    value = secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value)
    return value


def mlflow_password(settings: Settings) -> str:
    """The MLflow admin password: MLFLOW_TRACKING_PASSWORD if set, else the one `warden up`
    generated (generated now if it has not run yet)."""
    return known_mlflow_password(settings) or stored_secret(settings.home, _MLFLOW_ADMIN)


def known_mlflow_password(settings: Settings) -> str | None:
    """The MLflow admin password if there is one yet; a client never generates it."""
    if settings.mlflow_password is not None:
        return settings.mlflow_password.get_secret_value()
    return read_secret(settings.home, _MLFLOW_ADMIN)

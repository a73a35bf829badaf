"""The embedded MLflow tracking server: SQLite backend, local artifacts, basic-auth login for writes."""

from __future__ import annotations

import sys
from pathlib import Path

from infra.endpoints import mlflow_health
from infra.probes import Health
from infra.secrets import mlflow_password, stored_secret
from infra.settings import Settings
from infra.stack.process import ManagedProcess, require_free_port

_AUTH_CONFIG = """\
[mlflow]
# Anyone may read (the UI, the stream's loader); writes need a user with EDIT or MANAGE.
default_permission = READ
database_uri = sqlite:///{auth_db}
admin_username = {username}
admin_password = {password}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
# A login once checked is trusted for a minute: each check is a scrypt hash (~160 ms of CPU here)
# and every request of a logged-in client carries the login (the stream and the dashboard poll).
auth_cache_ttl_seconds = 60
"""


class MlflowServer:
    name = "mlflow"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "mlflow"
        self.process = ManagedProcess(self.name, settings.home)

    @property
    def url(self) -> str:
        return self.settings.mlflow_tracking_uri

    def _auth_config(self) -> Path:
        path = self.dir / "basic_auth.ini"
        path.write_text(
            _AUTH_CONFIG.format(
                auth_db=self.dir / "auth.db",
                username=self.settings.mlflow_username,
                password=mlflow_password(self.settings),
            )
        )
        path.chmod(0o600)
        return path

    def start(self) -> None:
        if self.process.pid() is not None:
            return
        host, port = self.settings.mlflow_listen
        require_free_port(host, port, "mlflow")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process.start(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--app-name",
                "basic-auth",
                "--backend-store-uri",
                f"sqlite:///{self.dir / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.dir / "artifacts"),
                "--host",
                host,
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env={
                "MLFLOW_AUTH_CONFIG_PATH": str(self._auth_config()),
                # Signs the UI's CSRF tokens; stable across restarts so open sessions stay valid.
                "MLFLOW_FLASK_SERVER_SECRET_KEY": stored_secret(self.settings.home, "mlflow-flask-key"),
                # The job runner starts 7 consumer processes that nothing here uses.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "MLFLOW_DISABLE_TELEMETRY": "true",
            },
            cwd=self.dir,
        )

    def health(self) -> Health:
        return mlflow_health(self.settings)

    def exited_early(self) -> str | None:
        return self.process.exited_early()

    def stop(self) -> bool:
        return self.process.stop()

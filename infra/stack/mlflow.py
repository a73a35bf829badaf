"""The embedded MLflow tracking server: SQLite backend, local artifacts, basic-auth login for writes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from infra.settings import Settings
from infra.stack.process import ManagedProcess, require_free_port
from infra.stack.secrets import stored_secret
from infra.stack.service import Health, http_health, require

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


def mlflow_password(settings: Settings) -> str:
    """The admin password: MLFLOW_TRACKING_PASSWORD if set, else the one `warden up` generated."""
    if settings.mlflow_password is not None:
        return settings.mlflow_password.get_secret_value()
    return stored_secret(settings.home, "mlflow-admin")


# MLflow's client retries a failed request 7 times with backoff, for about 4 minutes, and waits 120 s
# for each answer: a server that stops during a command would hold it that long. Two retries (about
# 3 s of backoff) and 30 s per answer (a busy server on this machine answers in less) fail in
# seconds. A value set in the environment wins.
_CLIENT_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def mlflow_client_env(settings: Settings) -> dict[str, str]:
    """Environment for any MLflow client process (our CLI, Airflow tasks, the stream)."""
    return {
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_TRACKING_USERNAME": settings.mlflow_username,
        "MLFLOW_TRACKING_PASSWORD": mlflow_password(settings),
        # MLflow 3 reports usage to its vendor by default; nothing leaves this machine.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # Progress bars of artifact downloads would interleave with the stream's own output.
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # The client prints "View run … at …" after every run; our progress lines name each run once.
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        **{name: os.environ.get(name, value) for name, value in _CLIENT_RETRIES.items()},
    }


def require_mlflow(settings: Settings) -> None:
    """Fail in one line when the tracking server does not answer, before the client's first call."""
    require(MlflowServer(settings), "start it with `warden up`, or fix MLFLOW_TRACKING_URI")


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
        return http_health(f"{self.url}/health")

    def exited_early(self) -> str | None:
        return self.process.exited_early()

    def stop(self) -> bool:
        return self.process.stop()

"""The embedded Airflow: what `airflow standalone` runs, one process per component, loopback only.

`airflow standalone` starts the scheduler and triggerer with their log servers, which bind every
interface with no setting to change it. With the LocalExecutor the API server reads task logs
from disk, so we start the same four components ourselves with `--skip-serve-logs`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from infra.environment import mlflow_client_env
from infra.exceptions import ServiceError
from infra.probes import Health, State, http_get
from infra.settings import PROJECT_ROOT, Settings
from infra.stack.process import ManagedProcess, require_free_port

ADMIN_USER = "admin"
_COMPONENTS = {
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


class AirflowStack:
    name = "airflow"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home / "airflow"
        self.processes = {
            component: ManagedProcess(f"airflow-{component}", settings.home)
            for component in ("api-server", *_COMPONENTS)
        }

    @property
    def url(self) -> str:
        return self.settings.airflow.url

    def env(self) -> dict[str, str]:
        port = self.settings.airflow.port
        return {
            **self.settings.to_env(),
            **mlflow_client_env(self.settings),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.settings.airflow.parallelism),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # The platform's DAGs are meant to run: unpaused, new or changed files seen in 30 s, and
            # on their schedules unless WARDEN_AIRFLOW_SCHEDULES turns them off.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(self.settings.airflow.schedules),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "SPARK_LOCAL_IP": "127.0.0.1",
        }

    def _airflow(self, *args: str) -> list[str]:
        return [str(Path(sys.executable).with_name("airflow")), *args]

    def start(self) -> None:
        if all(process.pid() is not None for process in self.processes.values()):
            return
        if self.processes["api-server"].pid() is None:
            require_free_port("127.0.0.1", self.settings.airflow.port, "airflow")
        self.home.mkdir(parents=True, exist_ok=True)
        env = self.env()
        # Creates airflow.cfg (with the JWT secret every component must share) and the schema.
        migrate = subprocess.run(  # noqa: S603
            self._airflow("db", "migrate"),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        if migrate.returncode != 0:
            tail = (migrate.stderr or migrate.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ServiceError(f"airflow: `airflow db migrate` failed: {tail[0]}")
        api_args = ["api-server", "--host", "127.0.0.1", "--port", str(self.settings.airflow.port)]
        self.processes["api-server"].start(self._airflow(*api_args), env=env, cwd=self.home)
        for component, args in _COMPONENTS.items():
            self.processes[component].start(self._airflow(*args), env=env, cwd=self.home)

    def health(self) -> Health:
        url = f"{self.url}/api/v2/monitor/health"
        response = http_get(url)
        if isinstance(response, Health):
            return response
        try:
            body = response.json()
        except ValueError:
            return Health(State.DOWN, f"{url} answered HTTP {response.status_code} without JSON")
        unhealthy = [
            component
            for component in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            if (body.get(component) or {}).get("status") != "healthy"
        ]
        if unhealthy:
            return Health(State.DOWN, "not healthy yet: " + ", ".join(unhealthy))
        return Health(State.UP, "scheduler, dag-processor, triggerer and API server healthy")

    def admin_password(self) -> str | None:
        """The admin password Airflow's simple auth manager generated on first start."""
        generated = self.home / "simple_auth_manager_passwords.json.generated"
        try:
            return str(json.loads(generated.read_text())[ADMIN_USER])
        except (FileNotFoundError, KeyError, ValueError):
            return None

    def stop(self) -> bool:
        stopped = [process.stop() for process in self.processes.values()]
        return any(stopped)

    def exited_early(self) -> str | None:
        for process in self.processes.values():
            if (why := process.exited_early()) is not None:
                return f"{process.name}: {why}"
        return None

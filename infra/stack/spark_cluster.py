"""The embedded Spark standalone cluster: one master and one worker, pyspark's own classes started
with pyspark's own `spark-class`, as `start-master.sh` and `start-worker.sh` do, on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from infra.exceptions import ServiceError
from infra.probes import Health, State, http_get
from infra.settings import Settings
from infra.stack.process import ManagedProcess, require_free_port

_MASTER = "org.apache.spark.deploy.master.Master"
_WORKER = "org.apache.spark.deploy.worker.Worker"


def spark_home() -> Path:
    """pyspark's package folder: it holds bin/spark-class and the jars a worker gives executors."""
    import pyspark

    return Path(pyspark.__file__).parent


class SparkCluster:
    """Master + worker as one service of the stack (`spark` in `warden up --service`)."""

    name = "spark"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "spark"
        self.master = ManagedProcess("spark-master", settings.home)
        self.worker = ManagedProcess("spark-worker", settings.home)

    @property
    def master_url(self) -> str:
        host, port = self.settings.spark.master_listen
        return f"spark://{host}:{port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.settings.spark.master_listen[0]}:{self.settings.spark.master_ui_port}"

    @property
    def url(self) -> str:
        return f"{self.master_url} (UI {self.ui_url})"

    def _env(self) -> dict[str, str]:
        env = {
            "SPARK_HOME": str(spark_home()),
            # Every daemon and executor binds to loopback only, like the rest of the embedded stack.
            "SPARK_LOCAL_IP": self.settings.spark.master_listen[0],
            "SPARK_LOG_DIR": str(self.settings.home / "logs"),
            "SPARK_WORKER_DIR": str(self.dir / "work"),
            "SPARK_LOCAL_DIRS": str(self.dir / "tmp"),
        }
        if self.settings.java_home is not None:
            env["JAVA_HOME"] = str(self.settings.java_home)
        return env

    def _spark_class(self, main: str, *args: str) -> list[str]:
        script = spark_home() / "bin" / "spark-class"
        if not script.exists():
            raise ServiceError(f"{script} not found; reinstall pyspark (`make install`)")
        return ["bash", str(script), main, *args]

    def start(self) -> None:
        if self.master.pid() is not None and self.worker.pid() is not None:
            return
        s = self.settings
        host, port = s.spark.master_listen
        if self.master.pid() is None:
            for needed in (port, s.spark.master_ui_port):
                require_free_port(host, needed, "the Spark master")
        if self.worker.pid() is None:
            require_free_port(host, s.spark.worker_ui_port, "the Spark worker")
        (self.dir / "work").mkdir(parents=True, exist_ok=True)
        env = self._env()
        self.master.start(
            self._spark_class(
                _MASTER,
                "--host",
                host,
                "--port",
                str(port),
                "--webui-port",
                str(s.spark.master_ui_port),
            ),
            env=env,
            cwd=self.dir,
        )
        self.worker.start(
            self._spark_class(
                _WORKER,
                "--host",
                host,
                "--webui-port",
                str(s.spark.worker_ui_port),
                "--cores",
                str(s.spark.worker_cores),
                "--memory",
                s.spark.worker_memory,
                "--work-dir",
                str(self.dir / "work"),
                self.master_url,
            ),
            env=env,
            cwd=self.dir,
        )

    def health(self) -> Health:
        """Healthy when the master is ALIVE with a live worker (its UI's JSON says so)."""
        response = http_get(f"{self.ui_url}/json/")
        if isinstance(response, Health):
            return response
        try:
            state = response.json()
        except ValueError:
            return Health(State.DOWN, f"the Spark master answered HTTP {response.status_code} without its state")
        if state.get("status") != "ALIVE":
            return Health(State.DOWN, f"the Spark master is {state.get('status')}")
        workers = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
        if not workers:
            return Health(State.DOWN, "the Spark master has no live worker")
        cores = sum(int(w.get("cores", 0)) for w in workers)
        return Health(
            State.UP,
            f"{len(workers)} worker, {cores} cores, {len(state.get('activeapps', []))} running app(s)",
        )

    def exited_early(self) -> str | None:
        for process in (self.master, self.worker):
            if (why := process.exited_early()) is not None:
                return f"{process.name}: {why}"
        return None

    def is_running(self) -> bool:
        return self.master.pid() is not None or self.worker.pid() is not None

    def stop(self) -> bool:
        # Executors are the worker's children, in its process group: they stop with it.
        stopped_worker = self.worker.stop()
        stopped_master = self.master.stop()
        return stopped_worker or stopped_master

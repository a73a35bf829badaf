"""Shared fixtures. Services start once per session, on free ports, under a temporary WARDEN_HOME,
so the suite never touches a developer's own stack."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from infra.settings import Settings, load_settings
from infra.stack import manager

# Airflow in this process (DagBag, dag.test) reads its home once, at import: a private one,
# never ~/airflow. The stacks the tests start set their own.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="warden-tests-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(Path(__file__).resolve().parents[1] / "dags"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# /proc/net/tcp{,6} spellings of 127.0.0.1 (IPv4, and IPv4-mapped IPv6).
LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F"}


def listening_addresses(port: int) -> set[str]:
    """The local addresses something listens on at `port`, as /proc/net/tcp{,6} spell them."""
    with open("/proc/net/tcp") as v4, open("/proc/net/tcp6") as v6:  # noqa: PTH123
        rows = v4.read().splitlines()[1:] + v6.read().splitlines()[1:]
    found = set()
    for row in rows:
        local, state = row.split()[1], row.split()[3]
        address, hex_port = local.rsplit(":", 1)
        if state == "0A" and int(hex_port, 16) == port:
            found.add(address)
    return found


def stack_env(home: Path) -> dict[str, str]:
    """Environment for a private stack: its own home and free ports."""
    return {
        "WARDEN_HOME": str(home),
        "WARDEN_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "WARDEN_KAFKA_CONTROLLER_PORT": str(free_port()),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "WARDEN_AIRFLOW_PORT": str(free_port()),
        "WARDEN_DASHBOARD_PORT": str(free_port()),
    }


def hdfs_env() -> dict[str, str]:
    """Settings for a private HDFS lake on free ports (add to a `stack_env`)."""
    return {
        "WARDEN_LAKE_ROOT": f"hdfs://127.0.0.1:{free_port()}/warden",
        "WARDEN_HDFS_HTTP_PORT": str(free_port()),
        "WARDEN_HDFS_DATANODE_PORT": str(free_port()),
        "WARDEN_HDFS_DATANODE_HTTP_PORT": str(free_port()),
        "WARDEN_HDFS_DATANODE_IPC_PORT": str(free_port()),
    }


def spark_cluster_env() -> dict[str, str]:
    """Settings for a private Spark standalone cluster on free ports."""
    return {
        "WARDEN_SPARK_MASTER": f"spark://127.0.0.1:{free_port()}",
        "WARDEN_SPARK_MASTER_UI_PORT": str(free_port()),
        "WARDEN_SPARK_WORKER_UI_PORT": str(free_port()),
    }


def settings_for(env: dict[str, str]) -> Settings:
    """The settings a `warden` process started with `env` on top of this one's would load."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_warden(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the real `warden` command line as a user would."""
    warden = Path(sys.executable).with_name("warden")
    return subprocess.run(  # noqa: S603
        [str(warden), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def airflow_get(
    url: str,
    headers: dict[str, str],
    timeout: float,
    what: str,
    done: Callable[[dict], object] = lambda body: True,
    **kwargs: object,
) -> dict:
    """GET until the answer is 200 and `done`; with Spark, a task and the browser on two cores the
    API server can take seconds to answer, so a slow or refused request is tried again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = requests.get(url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]
            if response.status_code == 200 and done(body := response.json()):
                return body
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(2)


class WardenProcess:
    """A long-running `warden` command (`stream`, `dashboard`) as a child process in a session of
    its own, its output kept in a file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        warden = Path(sys.executable).with_name("warden")
        self.proc = subprocess.Popen(  # noqa: S603
            [str(warden), *args],
            env={**os.environ, **env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL to its whole process group (the driver's JVM too), as a crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


@pytest.fixture(scope="session")
def session_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = stack_env(tmp_path_factory.mktemp("warden-home"))
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def settings(session_env: dict[str, str]) -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def kafka(settings: Settings) -> Iterator[Settings]:
    """The embedded Kafka broker, with the contract's topics, for the whole session."""
    manager.up(settings, ["kafka"])
    yield settings
    manager.down(settings)


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (pandas UDFs) must run this interpreter, with the venv's packages.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[1]")
        .appName("warden-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    session.stop()

"""`warden up | down | status`: start, stop and probe the embedded stack as one unit."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from infra.exceptions import ConfigError, ServiceError
from infra.probes import Health
from infra.progress import ProgressLine
from infra.settings import Settings
from infra.stack.airflow import AirflowStack
from infra.stack.dashboard import DashboardServer
from infra.stack.hdfs import HdfsCluster
from infra.stack.kafka import KafkaBroker
from infra.stack.mlflow import MlflowServer
from infra.stack.service import Service
from infra.stack.spark_cluster import SparkCluster
from infra.stack.stream import StreamDrivers

# In start order; `stream` (the streaming job's drivers) only when asked, once the others answer.
SERVICE_NAMES = ("hdfs", "kafka", "mlflow", "spark", "airflow", "dashboard", "stream")
# What the embedded stack runs by default; the HDFS and the Spark cluster when the settings point at them.
CORE_SERVICES = ("kafka", "mlflow", "airflow", "dashboard")
# Seconds to become healthy on a busy 2-core machine (Airflow migrates its DB on first start).
_START_TIMEOUT = {
    "hdfs": 120.0,
    "kafka": 90.0,
    "mlflow": 120.0,
    "spark": 90.0,
    "airflow": 240.0,
    "dashboard": 60.0,
    "stream": 120.0,
}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def default_services(settings: Settings) -> tuple[str, ...]:
    """What `warden up` starts by default: Airflow and the dashboard, and each of Kafka, MLflow,
    HDFS (an hdfs:// lake root) and a Spark standalone cluster (a spark:// master) whose address
    in the settings is on this machine. A broker, server, NameNode or master elsewhere is someone
    else's to run."""
    names = {"airflow", "dashboard"}
    if settings.kafka.listen[0] in _LOOPBACK:
        names.add("kafka")
    if settings.mlflow_listen[0] in _LOOPBACK:
        names.add("mlflow")
    if settings.lake_on_hdfs and settings.hdfs_namenode[0] in _LOOPBACK:
        names.add("hdfs")
    if settings.spark.master.startswith("spark://") and settings.spark.master_listen[0] in _LOOPBACK:
        names.add("spark")
    return tuple(name for name in SERVICE_NAMES if name in names)


def build_services(settings: Settings, names: Sequence[str] = SERVICE_NAMES) -> list[Service]:
    factories: dict[str, Callable[[Settings], Service]] = {
        "hdfs": HdfsCluster,
        "kafka": KafkaBroker,
        "mlflow": MlflowServer,
        "spark": SparkCluster,
        "airflow": AirflowStack,
        "dashboard": DashboardServer,
        "stream": StreamDrivers,
    }
    unknown = sorted(set(names) - set(factories))
    if unknown:
        raise ConfigError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICE_NAMES)}")
    return [factories[name](settings) for name in SERVICE_NAMES if name in names]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    url: str
    health: Health


def up(settings: Settings, names: Sequence[str], progress: ProgressLine | None = None) -> list[ServiceStatus]:
    """Start the services that are not running, wait until each is healthy, create the topics;
    then the stream's drivers, if asked, which need the broker and the registry answering.

    A service that is slow to answer is waited for, like one still starting. Idempotent: running
    services are left alone.
    """
    progress = progress or ProgressLine("up")
    settings.home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    services = build_services(settings, [name for name in names if name != "stream"])
    healthy = _start_healthy(settings, services, progress)
    if "kafka" in names:
        broker = next(s for s in services if isinstance(s, KafkaBroker))
        created = broker.ensure_topics()
        if created:
            progress.update(f"created topics {', '.join(created)}", force=True)
    if "stream" in names:
        stream = build_services(settings, ["stream"])
        healthy.update(_start_healthy(settings, stream, progress))
        services += stream
    progress.done(f"{', '.join(s.name for s in services)} healthy in {time.monotonic() - started:.1f} s")
    return [ServiceStatus(s.name, s.url, healthy[s.name]) for s in services]


def _start_healthy(settings: Settings, services: list[Service], progress: ProgressLine) -> dict[str, Health]:
    for service in services:
        progress.update(f"starting {service.name}", force=True)
        service.start()
    started = time.monotonic()
    pending = {service.name: service for service in services}
    healthy: dict[str, Health] = {}
    while pending:
        for name, service in list(pending.items()):
            health = service.health()
            if health.ok:
                healthy[name] = health
                del pending[name]
                continue
            if (why := service.exited_early()) is not None:
                raise ServiceError(f"{name} exited while starting: {why}")
            if time.monotonic() - started > _START_TIMEOUT[name]:
                raise ServiceError(
                    f"{name} not healthy after {_START_TIMEOUT[name]:.0f} s ({health.detail}); "
                    f"see {settings.home / 'logs'}"
                )
        waited = time.monotonic() - started
        progress.update(f"waiting for {', '.join(pending) or 'nothing'} ({waited:.0f} s)")
        if pending:
            time.sleep(0.5)
    return healthy


def down(settings: Settings, names: Sequence[str] = SERVICE_NAMES, *, purge: bool = False) -> list[str]:
    """Stop these services if this stack started them (in reverse order); `purge` also deletes
    their data."""
    stopped = [service.name for service in reversed(build_services(settings, names)) if service.stop()]
    if purge:
        for folder in names:
            shutil.rmtree(settings.home / folder, ignore_errors=True)
        if "kafka" in names:
            # The stream's checkpoint holds offsets into the topics just deleted: kept, the next
            # `warden stream` would stop on "data may have been lost".
            shutil.rmtree(settings.checkpoint_dir, ignore_errors=True)
        if set(names) == set(SERVICE_NAMES):
            shutil.rmtree(settings.home / "run", ignore_errors=True)
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    """Probe every service the settings point at, here or elsewhere, with a real request (metadata
    request, HTTP health endpoint, NameNode JMX, the master's JSON), and an embedded HDFS or Spark
    cluster that runs although the settings do not use it."""
    used = set(CORE_SERVICES)
    if settings.lake_on_hdfs:
        used.add("hdfs")
    if settings.spark.master.startswith("spark://"):
        used.add("spark")
    probed = [
        s
        for s in build_services(settings)
        if s.name in used or (isinstance(s, HdfsCluster | SparkCluster | StreamDrivers) and s.is_running())
    ]
    # All at once: a slow service takes its probe's whole patience, and must not add it to the others'.
    with ThreadPoolExecutor(len(probed)) as pool:
        healths = list(pool.map(lambda service: service.health(), probed))
    return [ServiceStatus(s.name, s.url, health) for s, health in zip(probed, healths, strict=True)]

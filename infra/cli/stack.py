"""`warden up | down | status`."""

from __future__ import annotations

import time

import click

from infra.cli.common import pass_settings
from infra.exceptions import ConfigError
from infra.probes import State
from infra.secrets import mlflow_password
from infra.settings import Settings
from infra.stack import manager
from infra.stack.airflow import ADMIN_USER, AirflowStack

_SERVICES = click.Choice(manager.SERVICE_NAMES)


@click.command()
@click.option(
    "--service",
    "services",
    type=_SERVICES,
    multiple=True,
    help="Start only this service (repeatable). Default: airflow and the dashboard, plus kafka, mlflow, "
    "hdfs and spark where the settings put them on 127.0.0.1 (kafka and mlflow do by default).",
)
@click.option(
    "--lake",
    type=click.Choice(["local", "hdfs"]),
    default=None,
    help="Where the lake lives: a local folder (WARDEN_LAKE_ROOT, default under WARDEN_HOME), or a "
    "single-node HDFS started here (NameNode + DataNode, data under WARDEN_HOME/hdfs). "
    "Default: hdfs when WARDEN_LAKE_ROOT is hdfs://127.0.0.1:…, else local.",
)
@click.option(
    "--spark-cluster",
    is_flag=True,
    help="Also start a Spark standalone master and worker on 127.0.0.1 (the master at "
    "WARDEN_SPARK_MASTER, default spark://127.0.0.1:7077). Implied when WARDEN_SPARK_MASTER is spark://127.0.0.1:….",
)
@pass_settings
def up(settings: Settings, services: tuple[str, ...], lake: str | None, spark_cluster: bool) -> None:
    """Start the embedded stack on 127.0.0.1 and create the contract's topics.

    Idempotent: services already running are left alone. Data lives under WARDEN_HOME and
    survives `warden down`.
    """
    if lake == "local" and settings.lake_on_hdfs:
        raise ConfigError(f"--lake local, but WARDEN_LAKE_ROOT is {settings.lake_url}; unset it or use --lake hdfs")
    names = list(services or manager.default_services(settings))
    if lake == "hdfs" and "hdfs" not in names:
        names.append("hdfs")
    if spark_cluster and "spark" not in names:
        names.append("spark")
    statuses = manager.up(settings, names)
    for status in statuses:
        click.echo(f"  {status.name:<9} {status.url}")
    click.echo(f"  lake      {settings.lake_url} ({'hdfs' if settings.lake_on_hdfs else 'local'})")
    if "hdfs" in names and not settings.lake_on_hdfs:
        host, port = settings.hdfs_namenode
        click.echo(f"  The lake is still local: export WARDEN_LAKE_ROOT=hdfs://{host}:{port}/warden to use HDFS.")
    if "spark" in names and not settings.spark.master.startswith("spark://"):
        host, port = settings.spark.master_listen
        click.echo(f"  Jobs still run in-process: export WARDEN_SPARK_MASTER=spark://{host}:{port} to use the cluster.")
    click.echo("Logins and settings: `warden status`.")


@click.command()
@click.option(
    "--service",
    "services",
    type=_SERVICES,
    multiple=True,
    help="Stop only this service (repeatable). Default: all of them.",
)
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete the services' data (topics, registry, Airflow DB); purging Kafka also resets the stream's checkpoint.",
)
@pass_settings
def down(settings: Settings, services: tuple[str, ...], purge: bool) -> None:
    """Stop every service that `warden up` started; no process is left behind."""
    stopped = manager.down(settings, services or manager.SERVICE_NAMES, purge=purge)
    click.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    if purge:
        click.echo("purged service data")


@click.command()
@click.option("--settings/--no-settings", "show_settings", default=True, help="Also print the effective settings.")
@pass_settings
def status(settings: Settings, show_settings: bool) -> None:
    """Probe each service with a real request and show URLs, logins and settings.

    A service that answers late, twice, is `slow`; exits 1 only when a service is down.
    """
    statuses = manager.status(settings)
    for entry in statuses:
        # DOWN in capitals: the one state that needs someone to act.
        mark = "DOWN" if entry.health.state is State.DOWN else entry.health.state.value
        click.echo(f"{mark:<4} {entry.name:<9} {entry.url:<28} {entry.health.detail}")
    _show_stream(settings)
    _show_drivers(settings)
    airflow_password = AirflowStack(settings).admin_password()
    click.echo(f"Airflow UI login: {ADMIN_USER} / {airflow_password or '(created on first start)'}")
    click.echo(f"MLflow login:     {settings.mlflow_username} / {mlflow_password(settings)}")
    click.echo(f"Logs: {settings.home / 'logs'}")
    _show_schedules(settings)
    if show_settings:
        click.echo("Settings:")
        for name, value in settings.as_dict().items():
            click.echo(f"  {name} = {value}")
    if any(entry.health.state is State.DOWN for entry in statuses):
        raise click.exceptions.Exit(1)


def _show_schedules(settings: Settings) -> None:
    """What Airflow runs by itself, and whether a training or refresh holds the lock right now."""
    from infra.locks import current_holder

    holder = current_holder(settings)
    schedules = "as dags/ declares them" if settings.airflow.schedules else "off, manual triggers only"
    click.echo(
        f"Airflow's schedules: {schedules} (WARDEN_AIRFLOW_SCHEDULES); the DAGs and `warden train` take turns "
        f"on the training lock, now {'held by ' + holder if holder else 'free'}"
    )


def _show_stream(settings: Settings) -> None:
    """The streaming job's newest batch record: rate, lag, latency, model."""
    from streaming.drivers import active_driver
    from streaming.metrics import last_batch

    record = last_batch(settings)
    if record is None:
        click.echo("     stream   no batch recorded yet (start it with `warden stream`)")
        return
    age = time.time() - (record.finished_at or 0)
    # A running job renews its driver's record every second: that is what tells it is up.
    state = "running" if active_driver(settings) else f"not running (last batch {age / 60:.0f} min ago)"
    click.echo(
        f"     stream   {state}: batch {record.batch_id}, {record.processed_rows_per_second:,.0f} events/s, "
        f"lag {record.consumer_lag_records:,.0f} records, latency p50 {record.latency_ms.get('p50', 0) / 1000:.1f} s, "
        f"model {record.model_name or '?'} v{record.model_version or '?'}; "
        f"metrics http://127.0.0.1:{settings.metrics_port}/metrics"
    )


def _show_drivers(settings: Settings) -> None:
    """The stream's drivers (which one holds the checkpoint's lock) and its takeovers."""
    from streaming.drivers import read_drivers
    from streaming.metrics import read_takeovers

    drivers = read_drivers(settings)
    if drivers:
        shown = [
            driver.describe() + (f", silent {driver.silent_for():.0f} s" if driver.silent_for() > 3 else "")
            for driver in drivers
        ]
        click.echo(f"              drivers: {'; '.join(shown)}")
    takeovers = read_takeovers(settings)
    if takeovers:
        last = takeovers[-1]
        click.echo(
            f"              takeovers: {len(takeovers)}, the last at {time.strftime('%H:%M:%S', time.gmtime(last['at']))} "
            f"UTC from pid {last['previous']} ({last['cause']}): first batch {last['seconds']:.1f} s after its last "
            "heartbeat"
        )


@click.command()
@pass_settings
def dashboard(settings: Settings) -> None:
    """Serve the live operations dashboard on 127.0.0.1 (port WARDEN_DASHBOARD_PORT, 8050).

    Throughput, consumer lag, latency, alerts, dead letters, the champion and the challenger,
    and every model swap, updated every 2 s. `warden up` runs it in the background; this runs it
    in the foreground until Ctrl-C.
    """
    from infra.dashboard.app import serve
    from infra.stack.process import require_free_port

    require_free_port("127.0.0.1", settings.dashboard_port, "the dashboard")
    click.echo(f"dashboard: {settings.dashboard_url}")
    serve(settings)


COMMANDS = [up, down, status, dashboard]

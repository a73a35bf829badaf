"""`warden up | down | status`."""

from __future__ import annotations

import time

import click

from infra.settings import Settings, get_settings
from infra.stack import manager
from infra.stack.airflow import ADMIN_USER, AirflowStack
from infra.stack.mlflow import mlflow_password
from infra.stack.process import port_is_open

_SERVICES = click.Choice(manager.SERVICE_NAMES)


@click.command()
@click.option(
    "--service",
    "services",
    type=_SERVICES,
    multiple=True,
    help="Start only this service (repeatable). Default: kafka, mlflow, airflow and the dashboard.",
)
@click.option(
    "--lake",
    type=click.Choice(["local"]),
    default="local",
    help="Where the lake lives: a local folder under WARDEN_HOME (or WARDEN_LAKE_ROOT).",
)
def up(services: tuple[str, ...], lake: str) -> None:
    """Start the embedded stack on 127.0.0.1 and create the contract's topics.

    Idempotent: services already running are left alone. Data lives under WARDEN_HOME and
    survives `warden down`.
    """
    settings = get_settings()
    statuses = manager.up(settings, services or manager.SERVICE_NAMES)
    for status in statuses:
        click.echo(f"  {status.name:<8} {status.url}")
    click.echo(f"  lake     {settings.lake_url} ({lake})")
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
def down(services: tuple[str, ...], purge: bool) -> None:
    """Stop every service that `warden up` started; no process is left behind."""
    stopped = manager.down(get_settings(), services or manager.SERVICE_NAMES, purge=purge)
    click.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    if purge:
        click.echo("purged service data")


@click.command()
@click.option("--settings/--no-settings", "show_settings", default=True, help="Also print the effective settings.")
def status(show_settings: bool) -> None:
    """Probe each service with a real request and show URLs, logins and settings.

    Exits 1 when a service is not healthy.
    """
    settings = get_settings()
    statuses = manager.status(settings)
    for entry in statuses:
        mark = "up  " if entry.health.ok else "DOWN"
        click.echo(f"{mark} {entry.name:<8} {entry.url:<28} {entry.health.detail}")
    _show_stream(settings)
    airflow_password = AirflowStack(settings).admin_password()
    click.echo(f"Airflow UI login: {ADMIN_USER} / {airflow_password or '(created on first start)'}")
    click.echo(f"MLflow login:     {settings.mlflow_username} / {mlflow_password(settings)}")
    click.echo(f"Logs: {settings.home / 'logs'}")
    if show_settings:
        click.echo("Settings:")
        for name, value in settings.as_dict().items():
            click.echo(f"  {name} = {value}")
    if not all(entry.health.ok for entry in statuses):
        raise click.exceptions.Exit(1)


def _show_stream(settings: Settings) -> None:
    """The streaming job's newest batch record: rate, lag, latency, model."""
    from streaming.metrics import last_batch

    record = last_batch(settings)
    if record is None:
        click.echo("     stream   no batch recorded yet (start it with `warden stream`)")
        return
    age = time.time() - float(record.get("finished_at") or 0)
    # The running job serves its Prometheus endpoint: that is what tells it is up.
    running = port_is_open("127.0.0.1", settings.metrics_port)
    state = "running" if running else f"not running (last batch {age / 60:.0f} min ago)"
    latency = record.get("latency_ms") or {}
    click.echo(
        f"     stream   {state}: batch {record['batch_id']}, {record.get('processed_rows_per_second', 0):,.0f} events/s, "
        f"lag {record.get('consumer_lag_records', 0):,.0f} records, latency p50 {latency.get('p50', 0) / 1000:.1f} s, "
        f"model {record.get('model_name', '?')} v{record.get('model_version', '?')}; "
        f"metrics http://127.0.0.1:{settings.metrics_port}/metrics"
    )


@click.command()
def dashboard() -> None:
    """Serve the live operations dashboard on 127.0.0.1 (port WARDEN_DASHBOARD_PORT, 8050).

    Throughput, consumer lag, latency, alerts, dead letters, the champion and the challenger,
    and every model swap, updated every 2 s. `warden up` runs it in the background; this runs it
    in the foreground until Ctrl-C.
    """
    from infra.dashboard.app import serve
    from infra.stack.process import require_free_port

    settings = get_settings()
    require_free_port("127.0.0.1", settings.dashboard_port, "the dashboard")
    click.echo(f"dashboard: {settings.dashboard_url}")
    serve(settings)


COMMANDS = [up, down, status, dashboard]

"""`warden demo`: the platform's main job end to end, for a newcomer, in a few minutes."""

from __future__ import annotations

import time

import click

from infra.progress import ProgressLine
from infra.settings import Settings, get_settings
from infra.stack import manager
from pipelines.backfill import BackfillParams, backfill
from streaming.kafka_io import count_records, end_offsets
from streaming.simulation import SimulationParams, simulate


def run_demo(settings: Settings, devices: int, events: int, rate: float) -> None:
    started = time.monotonic()
    click.echo("1/4 start the embedded stack")
    manager.up(settings, progress=ProgressLine("  up"))
    click.echo("2/4 backfill two days of history into the lake")
    history = backfill(settings, BackfillParams(days=2, devices=devices), ProgressLine("  backfill"))
    click.echo(f"3/4 produce a burst of {events:,} events to {settings.topic_telemetry}")
    before = end_offsets(settings, settings.topic_telemetry)
    burst = simulate(settings, SimulationParams(devices=devices, rate=rate, events=events), ProgressLine("  simulate"))
    click.echo("4/4 read the burst back from Kafka")
    after = end_offsets(settings, settings.topic_telemetry)
    counts = count_records(settings, before, after)
    width = max(len(f"{c:,}") for c in counts.values())
    for partition, count in sorted(counts.items()):
        click.echo(f"  partition {partition:>2}: {count:>{width},}")
    read_back = sum(counts.values())
    verdict = "all read back" if read_back == burst.events else f"MISMATCH: {burst.events - read_back} missing"
    click.echo(
        "\nSummary\n"
        f"  history   {history.events:,} events in {settings.lake_url}/telemetry (+ labels/)\n"
        f"  burst     {burst.events:,} events at {burst.rate:,.0f}/s, "
        f"{sum(burst.anomalies.values()):,} anomalous\n"
        f"  read back {read_back:,} across {len(counts)} partitions: {verdict}\n"
        f"  UIs       MLflow {settings.mlflow_tracking_uri}, Airflow {settings.airflow_url} (logins: warden status)\n"
        f"  took      {time.monotonic() - started:.0f} s; stop with `warden down`"
    )
    if read_back != burst.events:
        raise click.exceptions.Exit(1)


@click.command()
@click.option("--devices", type=click.IntRange(min=1), default=50, help="Devices in the simulated fleet.")
@click.option("--events", type=click.IntRange(min=1), default=200_000, help="Events in the live burst.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=100_000.0, help="Offered rate of the burst, events/s.")
def demo(devices: int, events: int, rate: float) -> None:
    """Run the platform end to end: up, backfill history, produce a burst, read it back."""
    run_demo(get_settings(), devices, events, rate)


COMMANDS = [demo]

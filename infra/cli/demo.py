"""`warden demo`: the platform's main job end to end, for a newcomer, in a few minutes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import click

from infra.progress import ProgressLine
from infra.settings import Settings, get_settings
from infra.stack import manager
from models import registry
from pipelines.backfill import BackfillParams, backfill
from streaming.kafka_io import count_records, end_offsets
from streaming.metrics import metrics_file
from streaming.simulation import SimulationParams, simulate


def _first_champion(settings: Settings, devices: int) -> str:
    """The champion's version; trains and approves a first model when there is none."""
    client = registry.configure_mlflow(settings)
    champion = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
    if champion is not None:
        click.echo(f"  champion: version {champion.version} ({champion.kind})")
        return champion.version
    from infra.spark import spark_session
    from pipelines.feature_refresh import refresh_features
    from pipelines.promotion import decide
    from pipelines.training import default_window, train

    spark = spark_session(settings, "warden-demo-train", with_kafka=False)
    window = default_window(days=2)
    refresh_features(
        settings, spark, window.end, window.start - timedelta(minutes=settings.feature_window_minutes),
        ProgressLine("  features"),
    )
    report = train(settings, spark, window, progress=ProgressLine("  train"))
    assert report.registered is not None
    version = report.registered.version
    decide(settings, version, True, "warden-demo", "first model, approved by the demo")
    click.echo(f"  approved version {version} ({report.best.kind}) as champion (decided by warden-demo)")
    return version


def run_demo(settings: Settings, devices: int, events: int, rate: float) -> None:
    started = time.monotonic()
    click.echo("1/6 start the embedded stack")
    manager.up(settings, progress=ProgressLine("  up"))
    click.echo("2/6 backfill two days of history into the lake")
    history = backfill(settings, BackfillParams(days=2, devices=devices), ProgressLine("  backfill"))
    click.echo("3/6 make sure a champion model exists (train and approve one if not)")
    champion = _first_champion(settings, devices)
    click.echo("4/6 start the streaming job (`warden stream`)")
    log = settings.home / "logs" / "demo-stream.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    first_batch = _last_batch_id(settings)
    stream = subprocess.Popen(  # noqa: S603
        [str(Path(sys.executable).with_name("warden")), "stream"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    try:
        click.echo(f"5/6 produce {events:,} live events at {rate:,.0f}/s and watch the stream")
        before = end_offsets(settings, settings.topic_telemetry)
        burst = simulate(settings, SimulationParams(devices=devices, rate=rate, events=events), ProgressLine("  simulate"))
        after = end_offsets(settings, settings.topic_telemetry)
        produced = sum(after.by_partition.values()) - sum(before.by_partition.values())
        totals = _watch(settings, stream, first_batch, produced, log)
    finally:
        stream.send_signal(signal.SIGTERM)
        code = stream.wait(180)
    click.echo("6/6 read the burst back from Kafka")
    counts = count_records(settings, before, after)
    read_back = sum(counts.values())
    click.echo("  per partition: " + ", ".join(f"{p}:{c:,}" for p, c in sorted(counts.items())))
    verdict = "all read back" if read_back == burst.events else f"MISMATCH: {burst.events - read_back} missing"
    latency = totals.get("latency", {})
    click.echo(
        "\nSummary\n"
        f"  history   {history.events:,} events in {settings.lake_url}/telemetry (+ labels/, devices/)\n"
        f"  model     {settings.model_name} version {champion} under alias champion\n"
        f"  burst     {burst.events:,} events at {burst.rate:,.0f}/s, {sum(burst.anomalies.values()):,} anomalous; {verdict}\n"
        f"  stream    {totals.get('rows', 0):,} events scored in {totals.get('batches', 0)} batches, "
        f"{totals.get('alerts', 0):,} alerts to {settings.topic_alerts}, {totals.get('dead', 0)} dead letters; "
        f"exit code {code}\n"
        f"  speed     {totals.get('rate', 0.0):,.0f} events/s in the last batch; latency p50 "
        f"{latency.get('p50', 0) / 1000:.1f} s, p95 {latency.get('p95', 0) / 1000:.1f} s (event time to sink)\n"
        f"  UIs       MLflow {settings.mlflow_tracking_uri}, Airflow {settings.airflow_url} (logins: warden status)\n"
        f"  took      {time.monotonic() - started:.0f} s; stream log {log}; stop the stack with `warden down`"
    )
    if read_back != burst.events or totals.get("rows", 0) < burst.events or code != 0:
        raise click.exceptions.Exit(1)


def _last_batch_id(settings: Settings) -> int:
    from streaming.metrics import last_batch

    record = last_batch(settings)
    return int(record["batch_id"]) if record else -1


def _watch(settings: Settings, stream: subprocess.Popen[bytes], first_batch: int, expected: int, log: Path) -> dict:  # type: ignore[type-arg]
    """Follow the stream's batch records until it has scored what was produced."""
    import json

    progress = ProgressLine("  stream")
    totals: dict = {"rows": 0, "alerts": 0, "dead": 0, "batches": 0}  # type: ignore[type-arg]
    seen: set[int] = set()
    deadline = time.monotonic() + 600
    while totals["rows"] < expected and time.monotonic() < deadline:
        if stream.poll() is not None:
            raise click.ClickException(f"the stream exited with code {stream.returncode}; see {log}")
        path = metrics_file(settings)
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines:
            record = json.loads(line)
            batch = int(record["batch_id"])
            if batch <= first_batch or batch in seen or "scored_rows" not in record:
                continue
            seen.add(batch)
            totals["batches"] += 1
            totals["rows"] += record["input_rows"]
            totals["alerts"] += record["alerts"]
            totals["dead"] += sum(record["dead_letters"].values())
            totals["rate"] = record["processed_rows_per_second"]
            totals["latency"] = record["latency_ms"]
            progress.update(
                f"{totals['rows']:,} scored (burst {expected:,}, plus any backlog), {totals['alerts']:,} alerts, "
                f"{record['processed_rows_per_second']:,.0f} events/s, "
                f"latency p50 {record['latency_ms'].get('p50', 0) / 1000:.1f} s, model v{record['model_version']}",
                force=True,
            )
        time.sleep(1.0)
    progress.done(f"{totals['rows']:,} events scored, {totals['alerts']:,} alerts")
    return totals


@click.command()
@click.option("--devices", type=click.IntRange(min=1), default=50, help="Devices in the simulated fleet.")
@click.option("--events", type=click.IntRange(min=1), default=200_000, help="Events in the live burst.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=20_000.0, help="Offered rate of the burst, events/s.")
def demo(devices: int, events: int, rate: float) -> None:
    """Run the platform end to end: up, backfill, train and approve a first champion if none,
    stream, produce a live burst, watch it scored, stop cleanly."""
    run_demo(get_settings(), devices, events, rate)


COMMANDS = [demo]

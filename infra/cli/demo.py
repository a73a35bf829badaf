"""`warden demo`: the platform's main job end to end, for a newcomer, in a few minutes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from infra.progress import ProgressLine
from infra.settings import Settings, get_settings
from infra.stack import manager
from models import registry
from streaming.kafka_io import count_records, end_offsets
from streaming.metrics import metrics_file

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEMO_USER = "warden-demo"


def _first_champion(settings: Settings, spark: SparkSession) -> str:
    """The champion's version; trains and approves a first model when there is none."""
    from models.estimators import RANDOM_FOREST
    from pipelines.promotion import decide
    from pipelines.retrain import retrain, window_ending

    client = registry.configure_mlflow(settings)
    champion = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
    if champion is not None:
        click.echo(f"  champion: version {champion.version} ({champion.kind})")
        return champion.version
    # A quick first model (the paper's Random Forest alone); the retrain below fits both kinds.
    report = retrain(
        settings, spark, window_ending(settings, datetime.now(UTC)), (RANDOM_FOREST,), progress=ProgressLine("  train")
    )
    assert report.version is not None  # noqa: S101 - retrain() always fills the report; this narrows its type
    decide(settings, report.version.version, True, DEMO_USER, "first model, approved by the demo")
    click.echo(
        f"  approved version {report.version.version} ({report.version.kind}) as champion (decided by {DEMO_USER})"
    )
    return report.version.version


def _retrain_and_approve(settings: Settings, spark: SparkSession) -> tuple[str | None, str]:
    """Retrain on the history including what the stream just scored; approve if the gate passed."""
    from pipelines.promotion import decide
    from pipelines.retrain import retrain
    from pipelines.training_set import Window

    now = datetime.now(UTC)
    # Up to the next minute, not the hour: the window must hold the burst the stream just scored.
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    window = Window(end - timedelta(days=settings.training_window_days), end)
    report = retrain(settings, spark, window, progress=ProgressLine("  retrain"))
    assert report.version is not None and report.verdict is not None  # noqa: S101 - retrain() always fills the report; this narrows its type
    if not report.verdict.promotable:
        return None, report.verdict.summary()
    decide(settings, report.version.version, True, DEMO_USER, "retrained on the stream's history, approved by the demo")
    return report.version.version, report.verdict.summary()


def run_demo(settings: Settings, devices: int, events: int, rate: float) -> None:
    # Imported here, not at the top: every `warden` command loads this module, and these pull in
    # Great Expectations, scikit-learn and Spark (seconds of start-up for `warden status`).
    from infra.spark import spark_session
    from pipelines.backfill import BackfillParams, backfill
    from streaming.simulation import SimulationParams, simulate

    started = time.monotonic()
    click.echo("1/8 start the embedded stack")
    manager.up(settings, manager.default_services(settings), progress=ProgressLine("  up"))
    click.echo("2/8 backfill two days of history into the lake")
    settings = settings.model_copy(update={"training_window_days": 2})
    history = backfill(settings, BackfillParams(days=2, devices=devices), ProgressLine("  backfill"))
    click.echo("3/8 make sure a champion model exists (train and approve one if not)")
    spark = spark_session(settings, "warden-demo-train", with_kafka=False)
    champion = _first_champion(settings, spark)
    click.echo("4/8 start the streaming job (`warden stream`)")
    log = settings.home / "logs" / "demo-stream.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    first_batch = _last_batch_id(settings)
    stream = subprocess.Popen(  # noqa: S603
        [str(Path(sys.executable).with_name("warden")), "stream"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **settings.to_env()},
    )
    swapped_to: str | None = None
    try:
        click.echo(f"5/8 produce {events:,} live events at {rate:,.0f}/s and watch the stream")
        before = end_offsets(settings, settings.topic_telemetry)
        burst = simulate(
            settings, SimulationParams(devices=devices, rate=rate, events=events), ProgressLine("  simulate")
        )
        after = end_offsets(settings, settings.topic_telemetry)
        produced = sum(after.by_partition.values()) - sum(before.by_partition.values())
        totals = _watch(settings, stream, first_batch, produced, log)
        click.echo("6/8 retrain on the history the stream just wrote, and approve the candidate if it passed the gate")
        swapped_to, verdict = _retrain_and_approve(settings, spark)
        click.echo(f"  gate: {verdict}")
        click.echo("7/8 the running stream follows the champion alias: a second burst, scored by the new version")
        second, swap_batch = _second_burst(settings, stream, devices, rate, swapped_to or champion, log)
    finally:
        stream.send_signal(signal.SIGTERM)
        code = stream.wait(180)
    click.echo("8/8 read the first burst back from Kafka")
    counts = count_records(settings, before, after)
    read_back = sum(counts.values())
    click.echo("  per partition: " + ", ".join(f"{p}:{c:,}" for p, c in sorted(counts.items())))
    verdict_line = "all read back" if read_back == burst.events else f"MISMATCH: {burst.events - read_back} missing"
    latency = totals.get("latency", {})
    swap = (
        f"version {champion} → {swapped_to} from batch {swap_batch}, same query, no restart"
        if swapped_to
        else f"none: the retrained candidate did not pass the gate, version {champion} kept scoring"
    )
    click.echo(
        "\nSummary\n"
        f"  history   {history.events:,} events in {settings.lake_url}/telemetry (+ labels/, devices/)\n"
        f"  model     {settings.model_name} version {champion} under alias champion at the start\n"
        f"  burst     {burst.events:,} events at {burst.rate:,.0f}/s, {sum(burst.anomalies.values()):,} anomalous; {verdict_line}\n"
        f"  stream    {totals.get('rows', 0):,} events scored in {totals.get('batches', 0)} batches, "
        f"{totals.get('alerts', 0):,} alerts to {settings.topic_alerts}, {totals.get('dead', 0)} dead letters; "
        f"exit code {code}\n"
        f"  speed     {totals.get('rate', 0.0):,.0f} events/s in the last batch; latency p50 "
        f"{latency.get('p50', 0) / 1000:.1f} s, p95 {latency.get('p95', 0) / 1000:.1f} s (event time to sink)\n"
        f"  retrain   {verdict}\n"
        f"  swap      {swap}; second burst {second:,} events\n"
        f"  UIs       dashboard {settings.dashboard_url}, MLflow {settings.mlflow_tracking_uri}, "
        f"Airflow {settings.airflow_url} (logins: warden status)\n"
        f"  took      {time.monotonic() - started:.0f} s; stream log {log}; stop the stack with `warden down`"
    )
    if read_back != burst.events or totals.get("rows", 0) < burst.events or code != 0 or swap_batch is None:
        raise click.exceptions.Exit(1)


def _scored_by(settings: Settings, after_batch: int, version: str) -> dict | None:  # type: ignore[type-arg]
    """The first batch record after `after_batch` with rows scored by `version`, if any yet."""
    import json

    path = metrics_file(settings)
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        if (
            int(record["batch_id"]) > after_batch
            and record.get("scored_rows")
            and str(record["model_version"]) == version
        ):
            return dict(record)
    return None


def _second_burst(
    settings: Settings,
    stream: subprocess.Popen[bytes],
    devices: int,
    rate: float,
    version: str,
    log: Path,
) -> tuple[int, int | None]:
    """Produce small bursts until a batch is scored by `version`: the stream swaps models at a
    batch boundary a few seconds after the alias moved, so the first burst may still meet the old
    one. Returns (events produced, the first batch scored by `version` or None)."""
    from streaming.simulation import SimulationParams, simulate

    after = _last_batch_id(settings)
    progress = ProgressLine("  stream")
    produced = 0
    for seed in range(1, 13):
        if stream.poll() is not None:
            raise click.ClickException(f"the stream exited with code {stream.returncode}; see {log}")
        burst = simulate(
            settings, SimulationParams(devices=devices, rate=rate, events=10_000, seed=seed), ProgressLine("  simulate")
        )
        produced += burst.events
        deadline = time.monotonic() + 3 * settings.champion_poll_seconds + 10
        while time.monotonic() < deadline:
            record = _scored_by(settings, after, version)
            if record is not None:
                progress.done(
                    f"batch {record['batch_id']}: {record['scored_rows']:,} events scored by version {version}"
                )
                return produced, int(record["batch_id"])
            time.sleep(1.0)
        progress.update(f"{produced:,} events produced, no batch scored by version {version} yet", force=True)
    return produced, None


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
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), default=20_000.0, help="Offered rate of the burst, events/s."
)
def demo(devices: int, events: int, rate: float) -> None:
    """Run the platform end to end: up, backfill, train and approve a first champion if none,
    stream a live burst, retrain on what the stream wrote, approve, and watch the running
    stream switch models; stop cleanly."""
    run_demo(get_settings(), devices, events, rate)


COMMANDS = [demo]

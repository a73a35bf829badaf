"""`warden simulate` and `warden backfill`: telemetry into Kafka, history into the lake."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime

import click

from infra.cli.common import pass_settings
from infra.settings import Settings
from simulator.scenarios import SCENARIOS

_POSITIVE = click.FloatRange(min=0, min_open=True)
_RATE = click.FloatRange(min=0.0, max=0.5, max_open=True)


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@click.command("simulate")
@click.option("--devices", type=click.IntRange(min=1), default=100, help="Number of devices.")
@click.option("--rate", type=_POSITIVE, default=1000.0, help="Events per second, across all devices.")
@click.option("--duration", type=_POSITIVE, default=10.0, help="Seconds to run.")
@click.option(
    "--events", type=click.IntRange(min=1), default=None, help="Stop after this many events (overrides --duration)."
)
@click.option("--anomaly-rate", type=_RATE, default=0.02, help="Share of anomalous readings, in [0, 0.5).")
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    help="Seed for noise and anomalies; same seed and --start, same events.",
)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    default=None,
    help="Event time of the first reading, UTC (YYYY-MM-DDTHH:MM:SS). Default: now.",
)
@pass_settings
def simulate_command(
    settings: Settings,
    devices: int,
    rate: float,
    duration: float,
    events: int | None,
    anomaly_rate: float,
    seed: int,
    start: datetime | None,
) -> None:
    """Produce live telemetry to the telemetry topic (key = device_id, acks=all, idempotent).

    Ground truth (is_anomaly, anomaly_type) goes to the lake's labels/, never into the event.
    """
    # Imported here: every `warden` command loads this module, and the simulator pulls in pyarrow.
    from infra.context import Context
    from streaming.simulation import SimulationParams, simulate

    report = simulate(
        Context.build("warden-simulate", settings),
        SimulationParams(devices, rate, duration, events, anomaly_rate, seed, _utc(start)),
    )
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(report.anomalies.items())) or "none"
    click.echo(
        f"produced {report.events:,} events to {report.topic} in {report.seconds:.1f} s "
        f"({report.rate:,.0f} events/s, offered {rate:,.0f}/s), 0 lost\n"
        f"anomalous: {sum(report.anomalies.values()):,} ({kinds}); labels: {report.labels_written:,} rows; seed {seed}"
    )


@click.command("backfill")
@click.option(
    "--days",
    type=click.IntRange(min=1, max=3650),
    default=7,
    help="Days of history, ending at the start of the current hour (UTC).",
)
@click.option("--devices", type=click.IntRange(min=1), default=100, help="Number of devices.")
@click.option(
    "--interval", type=click.FloatRange(min=1.0), default=60.0, help="Seconds between two readings of a device."
)
@click.option("--anomaly-rate", type=_RATE, default=0.02, help="Share of anomalous readings, in [0, 0.5).")
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Seed for noise and anomalies.")
@click.option(
    "--scenario",
    type=click.Choice(SCENARIOS),
    default=SCENARIOS[0],
    help="steady: every device sends every round, short faults; realistic: devices start one after another, "
    "go silent and come back cold, run in regimes of their own that shift, and faults last minutes to an hour.",
)
@pass_settings
def backfill_command(
    settings: Settings, days: int, devices: int, interval: float, anomaly_rate: float, seed: int, scenario: str
) -> None:
    """Write simulated history to the lake (the telemetry Delta table, labels/ Parquet, by date).

    Also writes the fleet's device registry (devices/). Re-running replaces earlier backfill
    output on the dates it covers; the stream's tables are left alone.
    """
    from infra.context import Context
    from pipelines.backfill import BackfillParams, backfill

    lake = Context.build("warden-backfill", settings).lake
    report = backfill(lake, BackfillParams(days, devices, interval, anomaly_rate, seed, scenario=scenario))
    click.echo(
        f"wrote {report.events:,} events ({sum(report.anomalies.values()):,} anomalous) for "
        f"{report.start:%Y-%m-%d}..{report.end:%Y-%m-%d} (end exclusive) to {report.lake}"
    )
    # The work is done and committed. delta-rs and Arrow can still be tearing down threads when
    # the interpreter finalizes, and on Linux that sometimes aborts the process ("terminate called
    # without an active exception", delta-io/delta-rs#2184; seen once in CI here): leave without
    # finalizing, after flushing what this process wrote.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


COMMANDS = [simulate_command, backfill_command]

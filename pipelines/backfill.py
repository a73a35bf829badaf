"""`warden backfill`: history written straight to the lake, so models can train before any stream ran."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from features.schema import ANOMALY_KINDS, TELEMETRY_TABLE_SCHEMA
from infra.lake import Lake
from infra.progress import ProgressLine
from simulator.generator import TelemetryGenerator, fleet_registry

_PREFIX = "backfill-"


@dataclass(frozen=True)
class BackfillParams:
    days: int = 7
    devices: int = 100
    interval_s: float = 60.0
    anomaly_rate: float = 0.02
    seed: int = 0
    end: datetime | None = None  # exclusive; default: the start of the current hour, UTC
    scenario: str = "steady"  # simulator.scenarios.SCENARIOS


@dataclass
class BackfillReport:
    start: datetime
    end: datetime
    events: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)
    lake: str = ""


def backfill(lake: Lake, params: BackfillParams, progress: ProgressLine | None = None) -> BackfillReport:
    """Write `days` days of telemetry and labels ending at `end`, partitioned by date, and the
    fleet's registry (devices/).

    Re-running replaces earlier backfill output on the dates it covers (the stream's events are
    in `scored`, which it does not touch), so a backfill can be repeated safely.
    """
    progress = progress or ProgressLine("backfill")
    lake.check_writable()
    end = params.end or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=params.days)
    dates = [f"{start + timedelta(days=d):%Y-%m-%d}" for d in range((end - start).days + 1)]
    lake.delete_rows("telemetry", f"date IN ({', '.join(repr(d) for d in dates)})")
    lake.remove("labels", _PREFIX, dates)
    generator = TelemetryGenerator(
        params.devices,
        seed=params.seed,
        start=start,
        interval_s=params.interval_s,
        anomaly_rate=params.anomaly_rate,
        id_prefix="b",
        scenario=params.scenario,
    )
    lake.write_file(fleet_registry(generator.fleet), "devices", f"fleet-{params.devices}.parquet")
    rounds_per_day = round(86_400 / params.interval_s)
    report = BackfillReport(start, end, lake=lake.root)
    for day in range(params.days):
        chunk = generator.next_chunk(rounds_per_day)
        basename = f"{_PREFIX}{day:04d}-{{i}}.parquet"
        lake.append_table("telemetry", chunk.telemetry_table(generator.fleet).cast(TELEMETRY_TABLE_SCHEMA))
        lake.write(chunk.label_table(generator.fleet), "labels", basename)
        report.events += len(chunk)
        report.anomalies.update(ANOMALY_KINDS[k] for k in chunk.kind[chunk.kind >= 0])
        progress.update(f"day {day + 1}/{params.days}, {report.events:,} events", force=True)
    progress.done(
        f"{report.events:,} events, {sum(report.anomalies.values()):,} anomalous, "
        f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, in {lake.root}"
    )
    return report

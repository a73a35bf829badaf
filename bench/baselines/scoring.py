"""What both baselines share: the champion, the validation of a raw record, the scoring of events
with the Spark job's own feature definitions, and the plumbing of a run (options, metrics file,
totals).

The hand-written consumer scores a poll's batch at once through `features.frames` (pandas,
`Scorer.score`); the Quix Streams app scores one message at a time with the same
`features.formulas` on Python floats (`Scorer.score_one`), since a one-row pandas frame would cost
tens of milliseconds per message. Both give the same features and scores, bit for bit.
"""

from __future__ import annotations

import argparse
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from features import formulas, frames
from features.formulas import (
    BASELINE_COLUMNS,
    BASELINE_TIME,
    FEATURE_COLUMNS,
    REPORTED_COLUMNS,
    STATS_COLUMNS,
    STATS_TIME,
)
from features.schema import EVENT_FIELDS, SENSOR_BOUNDS, SENSOR_COLUMNS
from infra.progress import ProgressLine
from infra.settings import Settings
from models.estimators import XGBOOST
from models.registry import CHAMPION, ModelRegistry, VersionInfo
from models.scoring import SCORE
from streaming.parse import BAD_TIMESTAMP, INVALID_JSON, MISSING_FIELD, OUT_OF_RANGE, TOO_LARGE, WRONG_TYPE

if TYPE_CHECKING:
    import xgboost as xgb

Event = dict[str, Any]
Alert = dict[str, Any]
_READING = ["device_id", "ts", "event_id", *SENSOR_COLUMNS]


class BaselineError(Exception):
    """A condition that stops a baseline, told in one line."""


@dataclass(frozen=True)
class Champion:
    info: VersionInfo
    booster: xgb.Booster


def load_champion(models: ModelRegistry) -> Champion:
    """The `champion` version of the model, which must be an XGBoost booster on our features."""
    import mlflow.xgboost

    info = models.by_alias(CHAMPION)
    if info is None:
        raise BaselineError(f"model {models.name} has no {CHAMPION}")
    if info.kind != XGBOOST:
        raise BaselineError(
            f"{models.name} version {info.version} is a {info.kind!r} model; the baselines score "
            f"{XGBOOST!r} only (a Spark MLlib model needs Spark)"
        )
    if list(info.features) != list(FEATURE_COLUMNS):
        raise BaselineError(f"{models.name} version {info.version} was trained on other features")
    booster = mlflow.xgboost.load_model(info.uri)
    # As in the job's UDF: one thread. On small inputs OpenMP's thread start-up costs more than
    # the trees (a one-row prediction takes 5 ms with all threads, 0.2 ms with one).
    booster.set_param({"nthread": 1})
    return Champion(info, booster)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    # A time without an offset is UTC, as in the job (its Spark session runs in UTC).
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def check_event(value: bytes | None, max_bytes: int) -> tuple[Event | None, str | None]:
    """(event, None) for a valid record, else (None, the job's reason code of `streaming.parse`).

    orjson refuses NaN, Infinity and numbers that overflow a double, so those records are
    invalid_json here (non_finite in the job); the bounds check holds only finite values anyway.
    """
    if value is None:
        return None, INVALID_JSON
    if len(value) > max_bytes:
        return None, TOO_LARGE
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, INVALID_JSON
    if not isinstance(raw, dict):
        return None, INVALID_JSON
    if any(_blank(raw.get(name)) for name in EVENT_FIELDS):
        return None, MISSING_FIELD
    ids = raw["event_id"], raw["device_id"]
    if not all(isinstance(v, str) or _is_number(v) for v in ids) or not all(_is_number(raw[s]) for s in SENSOR_COLUMNS):
        return None, WRONG_TYPE
    ts = _timestamp(raw["ts"])
    if ts is None:
        return None, BAD_TIMESTAMP
    readings = {s: float(raw[s]) for s in SENSOR_COLUMNS}
    if not all(low <= readings[s] <= high for s, (low, high) in SENSOR_BOUNDS.items()):
        return None, OUT_OF_RANGE
    return {"event_id": str(ids[0]), "device_id": str(ids[1]), "ts": ts, **readings}, None


def _iso_ms(stamp: datetime) -> str:
    # The job's format, yyyy-MM-dd'T'HH:mm:ss.SSSXXX in UTC: milliseconds and a Z.
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


class _FloatOps:
    """The operations of `features.formulas` on Python floats (NaN is "no value"), as
    `features.frames` has them on arrays."""

    abs = staticmethod(abs)
    is_missing = staticmethod(math.isnan)

    @staticmethod
    def greatest(*values: float) -> float:
        return max((v for v in values if not math.isnan(v)), default=math.nan)

    @staticmethod
    def least(*values: float) -> float:
        return min((v for v in values if not math.isnan(v)), default=math.nan)

    @staticmethod
    def coalesce(value: float, fallback: float) -> float:
        return fallback if math.isnan(value) else value

    @staticmethod
    def choose(cases: list[tuple[bool, str]], default: str) -> str:
        return next((label for condition, label in cases if condition), default)

    @staticmethod
    def unless(condition: bool, value: float) -> float:
        return math.nan if condition else value

    @staticmethod
    def pick(cases: list[tuple[bool, float]]) -> float:
        return next((value for condition, value in cases if condition), math.nan)


class Scorer:
    """Scores valid events with the champion, each reading compared with its device's previous
    one; the last reading per device is kept in memory from call to call.

    Events are the dicts of `check_event` plus source_partition and source_offset; statistics
    come from `features.store.online_features`."""

    def __init__(self, settings: Settings, champion: Champion) -> None:
        self.max_age_minutes = settings.feature.max_age_minutes
        self.champion = champion
        self.last: dict[str, tuple[Any, ...]] = {}  # device_id -> (ts, event_id, *sensors)

    def score(self, events: list[Event], online: pd.DataFrame) -> list[Alert]:
        """The alerts among a batch of events, in one vectorized pass through `features.frames`."""
        batch = pd.DataFrame.from_records(events)
        batch["ts"] = pd.to_datetime(batch["ts"], utc=True)
        batch = batch.merge(online, on="device_id", how="left")
        earlier = self._earlier(batch["device_id"].unique())
        featured = frames.add_features(frames.usable_stats(batch, self.max_age_minutes), earlier)
        matrix = featured[list(FEATURE_COLUMNS)].to_numpy(np.float32, na_value=np.nan)
        featured[SCORE] = self.champion.booster.inplace_predict(matrix).astype(np.float64)
        self._remember_batch(batch)
        hits = featured[featured[SCORE] >= self.champion.info.threshold]
        scored_at = _iso_ms(datetime.now(UTC))
        return [
            self._alert(row, features, scored_at)
            for row, features in zip(
                hits.drop(columns=list(FEATURE_COLUMNS)).to_dict("records"),
                hits[list(REPORTED_COLUMNS)].astype(np.float64).to_dict("records"),
                strict=True,
            )
        ]

    def score_one(self, event: Event, stats: dict[str, Any]) -> Alert | None:
        """The alert for one event, or None: what `score` computes for a batch of one, on Python
        floats. `stats` is the device's row of `online_features`, as a dict."""
        stats_time, baseline_time = stats[STATS_TIME], stats[BASELINE_TIME]
        first_baseline_mean = _number(stats[formulas.FIRST_BASELINE_MEAN])
        baseline_age_seconds = (event["ts"] - baseline_time).total_seconds() if baseline_time is not None else math.nan
        status = formulas.feature_status(
            stats_time is None,
            _number(stats[formulas.FIRST_MEAN]),
            (event["ts"] - stats_time).total_seconds() if stats_time is not None else math.nan,
            self.max_age_minutes,
            first_baseline_mean,
            baseline_age_seconds,
            stats[formulas.BASELINE_OF] == formulas.OF_TYPE,
            _FloatOps,
        )
        usable = formulas.stats_in_use(
            status,
            formulas.baseline_unusable(first_baseline_mean, baseline_age_seconds, _FloatOps),
            {c: _number(stats[c]) for c in STATS_COLUMNS},
            {c: _number(stats[c]) for c in BASELINE_COLUMNS},
            _FloatOps,
        )
        # As in `features.frames.add_features`: a reading is compared with an earlier one only.
        known = self.last.get(event["device_id"])
        order = (event["ts"], event["event_id"])
        previous = known[2:] if known is not None and known[:2] < order else (math.nan,) * len(SENSOR_COLUMNS)
        if known is None or order > known[:2]:
            self.last[event["device_id"]] = (*order, *(event[s] for s in SENSOR_COLUMNS))
        inputs = formulas.model_inputs(
            event, dict(zip(SENSOR_COLUMNS, previous, strict=True)), usable, usable, _FloatOps
        )
        features = {**{s: event[s] for s in SENSOR_COLUMNS}, **inputs}
        matrix = np.array([[features[c] for c in FEATURE_COLUMNS]], dtype=np.float32)
        score = float(self.champion.booster.inplace_predict(matrix)[0])
        if score < self.champion.info.threshold:
            return None
        row = {**event, "device_type": stats["device_type"], "feature_status": status, SCORE: score}
        return self._alert(row, features, _iso_ms(datetime.now(UTC)))

    def _earlier(self, devices: np.ndarray) -> pd.DataFrame | None:
        rows = [(device, *self.last[device]) for device in devices if device in self.last]
        return pd.DataFrame(rows, columns=_READING) if rows else None

    def _remember_batch(self, batch: pd.DataFrame) -> None:
        # Events may arrive out of order: a device's last reading is its newest by (ts, event_id).
        newest = batch.sort_values(["ts", "event_id"]).drop_duplicates("device_id", keep="last")
        for device, *reading in newest[_READING].itertuples(index=False):
            known = self.last.get(device)
            if known is None or tuple(reading[:2]) > known[:2]:
                self.last[device] = tuple(reading)

    def _alert(self, row: dict[str, Any], features: dict[str, float], scored_at: str) -> Alert:
        """The alert JSON contract of the job (`streaming.batch._observed`)."""
        info = self.champion.info
        device_type = row["device_type"]
        return {
            "event_id": row["event_id"],
            "device_id": row["device_id"],
            "event_ts": _iso_ms(row["ts"]),
            "scored_at": scored_at,
            "score": row[SCORE],
            "threshold": info.threshold,
            "model_name": info.name,
            "model_version": info.version,
            # A device unknown to the store has no type: None, or NaN after the batch's merge.
            "device_type": device_type if isinstance(device_type, str) else None,
            "feature_status": row["feature_status"],
            "features": features,
            "source_partition": int(row["source_partition"]),
            "source_offset": int(row["source_offset"]),
        }


def parse_args(name: str, doc: str | None) -> argparse.Namespace:
    """The options both baselines take; topics and services come from the settings (WARDEN_*)."""
    parser = argparse.ArgumentParser(
        prog=f"{name}.py", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--from",
        dest="start",
        choices=("earliest", "latest"),
        default="latest",
        help="where a new consumer group starts in the telemetry topic (default: latest)",
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="exit once no record arrived for SECONDS after the first one (default 0: run until SIGTERM/SIGINT)",
    )
    parser.add_argument(
        "--metrics-file",
        type=Path,
        required=True,
        metavar="PATH",
        help='written anew: one JSON line {"rows", "seconds", "end"} per batch or interval processed',
    )
    parser.add_argument(
        "--consumer-group",
        default=f"baseline-{name}-{uuid.uuid4().hex[:8]}",
        help="Kafka consumer group (default: a fresh one)",
    )
    return parser.parse_args()


class RunLog:
    """The totals of a run, its progress line and its metrics file."""

    def __init__(self, name: str, metrics_path: Path) -> None:
        self.name = name
        self.events = self.alerts = self.dead_letters = 0
        self.first: float | None = None
        self.last = 0.0
        self.progress = ProgressLine(name)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        # Line-buffered: the benchmark may read the file while the run goes on, or kill the run.
        self._metrics = metrics_path.open("w", buffering=1)

    def processed(self, rows: int, started: float, ended: float) -> None:
        """`rows` records were processed from `started` to `ended` (time.monotonic)."""
        self.events += rows
        if self.first is None:
            self.first = started
        self.last = ended
        end = time.time() - (time.monotonic() - ended)  # a line may be written after its interval ended
        self._metrics.write(orjson.dumps({"rows": rows, "seconds": ended - started, "end": end}).decode() + "\n")
        self.progress.update(self._totals())

    def _totals(self) -> str:
        return f"{self.events} events, {self.alerts} alerts, {self.dead_letters} dead letters"

    def finish(self) -> None:
        """Close the metrics file; the summary line's rate is over the time from the first record
        to the last one processed."""
        self._metrics.close()
        busy = self.last - self.first if self.first is not None else 0.0
        rate = self.events / busy if busy > 0 else 0.0
        self.progress.done(f"{self._totals()}, {rate:.0f} events/s")

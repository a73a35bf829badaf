"""Synthetic IoT telemetry with injected anomalies: the generator behind `simulate` and `backfill`.

A fleet of devices of a few types; each reading follows the device's baseline, a daily cycle,
correlated sensor noise and a slow drift. Anomalies are episodes that last one or more readings:
a spike, a stuck sensor, a drift away from normal, a dropout (the sensor reads 0) and a
correlated multi-sensor failure.

Two scenarios. `steady`: every device sends every round, all in one regime per type, faults of
a few readings. `realistic` (`FieldConditions`), what a fleet in the field does (issue 21):
devices start recording one after another, go silent for hours and come back cold (a warm-up
drift), run in operating regimes that differ between devices and shift over time, and their
faults last minutes to an hour. The output is columnar (numpy), so that a million events
cost well under a second to make.

Determinism: a device's type and baseline depend only on its index (a fleet keeps its devices
across runs); noise and anomalies depend on the run's seed; values depend on the event time.
The same (seed, start, interval, devices) gives the same events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson
import pyarrow as pa

from features.schema import ANOMALY_KINDS, LABEL_SCHEMA, SENSOR_COLUMNS, TELEMETRY_SCHEMA
from simulator.scenarios import SCENARIOS

# Baseline mean and noise (one standard deviation) per sensor, in the order of SENSOR_COLUMNS:
# temperature °C, humidity %RH, pressure kPa, vibration mm/s RMS, voltage V.
DEVICE_TYPES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "pump": ((55.0, 40.0, 300.0, 2.0, 230.0), (1.5, 2.0, 4.0, 0.15, 1.5)),
    "compressor": ((70.0, 35.0, 800.0, 4.0, 400.0), (2.0, 2.0, 10.0, 0.3, 2.5)),
    "hvac": ((22.0, 45.0, 101.3, 0.8, 230.0), (0.8, 3.0, 0.5, 0.08, 1.5)),
    "turbine": ((85.0, 30.0, 1500.0, 6.0, 690.0), (2.5, 1.5, 20.0, 0.5, 4.0)),
}
_TYPE_NAMES = tuple(DEVICE_TYPES)

# Noise correlation: warmer air is drier; load raises temperature and vibration and sags voltage.
_CORRELATION = np.array(
    [
        [1.0, -0.5, 0.2, 0.4, -0.2],
        [-0.5, 1.0, 0.0, -0.1, 0.0],
        [0.2, 0.0, 1.0, 0.2, 0.0],
        [0.4, -0.1, 0.2, 1.0, -0.3],
        [-0.2, 0.0, 0.0, -0.3, 1.0],
    ]
)
_CHOLESKY = np.linalg.cholesky(_CORRELATION)

# Daily cycle amplitude, in standard deviations, per sensor (peak mid-afternoon).
_DAILY_AMPLITUDE = np.array([1.5, -1.2, 0.0, 0.6, -0.3])
# Episode length range (readings) per anomaly kind, in the order of ANOMALY_KINDS.
_EPISODE_LENGTH = {"spike": (1, 1), "stuck": (8, 30), "drift": (10, 40), "dropout": (3, 12), "correlated": (4, 15)}
# In the field, a fault lasts minutes to an hour (at a reading a minute).
_FIELD_EPISODE_LENGTH = {
    "spike": (1, 1),
    "stuck": (15, 60),
    "drift": (20, 90),
    "dropout": (5, 30),
    "correlated": (10, 60),
}
_TEMPERATURE, _HUMIDITY, _PRESSURE, _VIBRATION, _VOLTAGE = range(5)
_NON_NEGATIVE = [_PRESSURE, _VIBRATION, _VOLTAGE]
_FLEET_SEED = 20_240_917
_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class Fleet:
    """The devices: ids, types and per-device baselines, stable for a given index."""

    device_ids: np.ndarray
    device_types: np.ndarray
    means: np.ndarray  # (devices, sensors)
    stds: np.ndarray  # (devices, sensors)
    drift_per_day: np.ndarray  # (devices, sensors), in standard deviations
    phase_us: np.ndarray  # (devices,), shifts the daily cycle (time zones, schedules)

    @classmethod
    def of_size(cls, devices: int) -> Fleet:
        ids, types, means, stds, drifts, phases = [], [], [], [], [], []
        for index in range(devices):
            rng = np.random.default_rng([_FLEET_SEED, index])
            kind = _TYPE_NAMES[int(rng.integers(len(_TYPE_NAMES)))]
            mean, std = (np.array(v) for v in DEVICE_TYPES[kind])
            ids.append(f"dev-{index:05d}")
            types.append(kind)
            means.append(mean * rng.normal(1.0, 0.03, size=5))
            stds.append(std * rng.uniform(0.8, 1.2, size=5))
            drifts.append(rng.normal(0.0, 0.05, size=5))
            phases.append(int(rng.integers(0, 3 * 3600)) * 1_000_000)
        return cls(
            np.array(ids),
            np.array(types),
            np.array(means),
            np.array(stds),
            np.array(drifts),
            np.array(phases, dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.device_ids)


# Devices of the fleet are registered at one fixed time: registry rows never change.
_REGISTERED_AT = datetime(2020, 1, 1, tzinfo=UTC)


def fleet_registry(fleet: Fleet) -> pa.Table:
    """The device registry an asset database would hold: device_id, device_type, registered_at."""
    return pa.table(
        {
            "device_id": fleet.device_ids,
            "device_type": fleet.device_types,
            "registered_at": pa.array([_REGISTERED_AT] * len(fleet), pa.timestamp("us", tz="UTC")),
        }
    )


@dataclass(frozen=True)
class Chunk:
    """Generated events in emission order, with their ground truth."""

    event_ids: np.ndarray
    device_index: np.ndarray
    ts_us: np.ndarray  # int64 microseconds since the epoch, UTC
    values: np.ndarray  # (events, sensors)
    kind: np.ndarray  # int8 index into ANOMALY_KINDS, -1 for normal

    def __len__(self) -> int:
        return len(self.ts_us)

    def head(self, count: int) -> Chunk:
        return Chunk(
            self.event_ids[:count],
            self.device_index[:count],
            self.ts_us[:count],
            self.values[:count],
            self.kind[:count],
        )

    def telemetry_table(self, fleet: Fleet) -> pa.Table:
        columns = {
            "event_id": self.event_ids,
            "device_id": fleet.device_ids[self.device_index],
            "ts": pa.array(self.ts_us, pa.timestamp("us", tz="UTC")),
            **{name: self.values[:, i] for i, name in enumerate(SENSOR_COLUMNS)},
        }
        return pa.table(columns, schema=TELEMETRY_SCHEMA)

    def label_table(self, fleet: Fleet) -> pa.Table:
        kinds = np.array([*ANOMALY_KINDS, None], dtype=object)[self.kind]
        return pa.table(
            {
                "event_id": self.event_ids,
                "device_id": fleet.device_ids[self.device_index],
                "ts": pa.array(self.ts_us, pa.timestamp("us", tz="UTC")),
                "is_anomaly": self.kind >= 0,
                "anomaly_type": kinds,
            },
            schema=LABEL_SCHEMA,
        )

    def json_events(self, fleet: Fleet) -> tuple[list[bytes], list[bytes]]:
        """(keys, values) as the producer sends them: key = device_id, value = the contract's JSON."""
        device_ids = fleet.device_ids[self.device_index].tolist()
        stamps = (np.datetime_as_string(self.ts_us.astype("datetime64[us]"), unit="ms")).tolist()
        columns = [self.values[:, i].round(4).tolist() for i in range(len(SENSOR_COLUMNS))]
        dumps = orjson.dumps
        t, h, p, v, u = columns
        values = [
            dumps(
                {
                    "event_id": event_id,
                    "device_id": device_id,
                    "ts": stamp + "Z",
                    "temperature": t[i],
                    "humidity": h[i],
                    "pressure": p[i],
                    "vibration": v[i],
                    "voltage": u[i],
                }
            )
            for i, (event_id, device_id, stamp) in enumerate(
                zip(self.event_ids.tolist(), device_ids, stamps, strict=True)
            )
        ]
        return [device_id.encode() for device_id in device_ids], values


class FieldConditions:
    """The realistic scenario's devices: when each one records, its regime and its warm-up.

    Regimes and shifts are normal operation (labeled normal): a model must not flag a device
    for running in its own regime, nor for warming up after a silence."""

    FIRST_START_HOURS = 6.0  # devices start recording one after another over the first hours
    SESSION_HOURS = 10.0  # mean time a device records before it goes silent
    SILENCE_HOURS = (1.0, 8.0)
    REGIME_SPREAD = 3.0  # standard deviations between devices' operating points, per sensor
    SHIFT_HOURS = 12.0  # mean time between changes of a device's operating point
    SHIFT_SIZE = 1.5  # standard deviations, per sensor
    SHIFT_READINGS = 30.0  # a shift is approached over about this many readings
    # A cold start: cool, damp, low pressure, shaky, in standard deviations, fading over ~15 readings.
    WARMUP = np.array([-4.0, 2.0, -1.5, 2.5, 0.0])
    WARMUP_READINGS = 15.0

    def __init__(self, fleet: Fleet, rng: np.random.Generator, interval_us: int) -> None:
        n = len(fleet)
        self.hours_per_round = interval_us / 3.6e9
        # A device's regime depends on its index only, as its baseline does: the same fleet.
        self.regime = np.array(
            [np.random.default_rng([_FLEET_SEED, i, 1]).normal(0.0, self.REGIME_SPREAD, 5) for i in range(n)]
        )
        self.silent_left = self._rounds(rng.uniform(0.0, self.FIRST_START_HOURS, n))
        self.since_start = np.zeros(n)
        self.shift = np.zeros((n, 5))
        self.shift_target = np.zeros((n, 5))

    def _rounds(self, hours: np.ndarray) -> np.ndarray:
        return np.ceil(hours / self.hours_per_round).astype(np.int64)

    def step(self, reading: np.ndarray, stds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Move the devices' regimes and warm-ups on by one round, in `reading`; which devices send."""
        n = len(reading)
        silent = self.silent_left > 0
        self.silent_left[silent] -= 1
        self.since_start[silent] = 0.0
        leaving = ~silent & (rng.random(n) < self.hours_per_round / self.SESSION_HOURS)
        self.silent_left[leaving] = self._rounds(rng.uniform(*self.SILENCE_HOURS, int(leaving.sum())))
        shifting = rng.random(n) < self.hours_per_round / self.SHIFT_HOURS
        self.shift_target[shifting] = rng.normal(0.0, self.SHIFT_SIZE, (int(shifting.sum()), 5))
        self.shift += (self.shift_target - self.shift) / self.SHIFT_READINGS
        warmup = self.WARMUP * np.exp(-self.since_start / self.WARMUP_READINGS)[:, None]
        reading += stds * (self.regime + self.shift + warmup)
        sends = ~silent & ~leaving
        self.since_start[sends] += 1.0
        return sends


class TelemetryGenerator:
    """Emits rounds of readings: in each round every device that records sends one event (in the
    steady scenario, every device)."""

    def __init__(
        self,
        devices: int,
        *,
        seed: int,
        start: datetime,
        interval_s: float,
        anomaly_rate: float,
        id_prefix: str,
        scenario: str = "steady",
    ) -> None:
        if devices < 1:
            raise ValueError("devices must be at least 1")
        if not 0.0 <= anomaly_rate < 0.5:
            raise ValueError("anomaly rate must be in [0, 0.5)")
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
        self.fleet = Fleet.of_size(devices)
        self.rng = np.random.default_rng(seed)
        self.start_us = int(start.astimezone(UTC).timestamp() * 1_000_000)
        self.interval_us = max(1, round(interval_s * 1_000_000))
        self.id_prefix = f"{id_prefix}{seed}.{self.start_us // 1_000_000}."
        self.episode_length = _FIELD_EPISODE_LENGTH if scenario == "realistic" else _EPISODE_LENGTH
        self.field = FieldConditions(self.fleet, self.rng, self.interval_us) if scenario == "realistic" else None
        # Probability that a device not in an episode starts one, so that the expected share of
        # anomalous readings is `anomaly_rate`: p·L / (1 + p·L) = rate.
        mean_episode = float(np.mean([(lo + hi) / 2 for lo, hi in self.episode_length.values()]))
        self.p_start = anomaly_rate / (mean_episode * (1.0 - anomaly_rate)) if anomaly_rate else 0.0
        self.offset_us = self.rng.integers(0, self.interval_us, size=devices)
        self.rounds_done = 0
        self.seq = 0
        self.last = self.fleet.means.copy()
        self.episode_kind = np.full(devices, -1, dtype=np.int8)
        self.episode_left = np.zeros(devices, dtype=np.int32)
        self.episode_age = np.zeros(devices, dtype=np.int32)
        self.episode_sensor = np.zeros(devices, dtype=np.int8)
        self.episode_sign = np.ones(devices)
        self.stuck_value = np.zeros(devices)

    @property
    def now_us(self) -> int:
        """Event time of the next round's first reading."""
        return self.start_us + self.rounds_done * self.interval_us

    def next_chunk(self, rounds: int) -> Chunk:
        fleet = self.fleet
        n = len(fleet)
        ts = np.empty((rounds, n), dtype=np.int64)
        values = np.empty((rounds, n, len(SENSOR_COLUMNS)))
        kinds = np.empty((rounds, n), dtype=np.int8)
        sends = np.empty((rounds, n), dtype=bool)
        for r in range(rounds):
            ts[r] = self.start_us + (self.rounds_done + r) * self.interval_us + self.offset_us
            values[r], kinds[r], sends[r] = self._round(ts[r])
        self.rounds_done += rounds
        sent = sends.reshape(rounds * n)
        count = int(sent.sum())
        seq = np.arange(self.seq, self.seq + count)
        self.seq += count
        event_ids = np.char.add(self.id_prefix, seq.astype(str))
        return Chunk(
            event_ids.astype(object),
            np.tile(np.arange(n), rounds)[sent],
            ts.reshape(rounds * n)[sent],
            values.reshape(rounds * n, len(SENSOR_COLUMNS))[sent],
            kinds.reshape(rounds * n)[sent],
        )

    def _round(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fleet, rng = self.fleet, self.rng
        n = len(fleet)
        day_fraction = ((ts + fleet.phase_us) % _US_PER_DAY) / _US_PER_DAY
        # Peak at 15:00 local time.
        cycle = np.sin(2 * np.pi * (day_fraction - 0.375))[:, None] * _DAILY_AMPLITUDE
        days = (ts - self.start_us)[:, None] / _US_PER_DAY
        noise = rng.standard_normal((n, 5)) @ _CHOLESKY.T
        reading = fleet.means + fleet.stds * (noise + cycle + fleet.drift_per_day * days)
        sends = np.ones(n, dtype=bool) if self.field is None else self.field.step(reading, fleet.stds, rng)

        # New episodes on devices that are not in one.
        starting = (self.episode_left == 0) & (rng.random(n) < self.p_start)
        if starting.any():
            idx = np.flatnonzero(starting)
            kinds = rng.integers(0, len(ANOMALY_KINDS), size=idx.size)
            self.episode_kind[idx] = kinds
            self.episode_age[idx] = 0
            self.episode_sensor[idx] = rng.integers(0, 5, size=idx.size)
            self.episode_sign[idx] = rng.choice([-1.0, 1.0], size=idx.size)
            for kind_index, name in enumerate(ANOMALY_KINDS):
                of_kind = idx[kinds == kind_index]
                lo, hi = self.episode_length[name]
                self.episode_left[of_kind] = rng.integers(lo, hi + 1, size=of_kind.size)
            self.stuck_value[idx] = self.last[idx, self.episode_sensor[idx]]

        active = self.episode_left > 0
        kind = np.where(active, self.episode_kind, -1).astype(np.int8)
        if active.any():
            self._apply_episodes(reading, kind)
            self.episode_left[active] -= 1
            self.episode_age[active] += 1
        # Physical bounds: a sensor cannot report negative vibration or more than 100 %RH.
        np.clip(reading[:, _HUMIDITY], 0.0, 100.0, out=reading[:, _HUMIDITY])
        reading[:, _NON_NEGATIVE] = np.maximum(reading[:, _NON_NEGATIVE], 0.0)
        self.last = reading
        return reading, kind, sends

    def _apply_episodes(self, reading: np.ndarray, kind: np.ndarray) -> None:
        stds = self.fleet.stds
        sensor = self.episode_sensor.astype(np.intp)
        rows = np.arange(len(kind))

        spike = kind == ANOMALY_KINDS.index("spike")
        if spike.any():
            r, s = rows[spike], sensor[spike]
            magnitude = self.rng.uniform(6.0, 10.0, size=r.size)
            reading[r, s] += self.episode_sign[r] * magnitude * stds[r, s]

        stuck = kind == ANOMALY_KINDS.index("stuck")
        if stuck.any():
            r, s = rows[stuck], sensor[stuck]
            reading[r, s] = self.stuck_value[r]

        drift = kind == ANOMALY_KINDS.index("drift")
        if drift.any():
            r, s = rows[drift], sensor[drift]
            reading[r, s] += self.episode_sign[r] * (4.0 + 0.4 * self.episode_age[r]) * stds[r, s]

        dropout = kind == ANOMALY_KINDS.index("dropout")
        if dropout.any():
            r, s = rows[dropout], sensor[dropout]
            reading[r, s] = 0.0

        correlated = kind == ANOMALY_KINDS.index("correlated")
        if correlated.any():
            r = rows[correlated]
            reading[r, _TEMPERATURE] += 5.0 * stds[r, _TEMPERATURE]
            reading[r, _VIBRATION] += 6.0 * stds[r, _VIBRATION]
            reading[r, _VOLTAGE] -= 5.0 * stds[r, _VOLTAGE]
            reading[r, _PRESSURE] -= 4.0 * stds[r, _PRESSURE]

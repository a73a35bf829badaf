from collections import Counter
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest

from features.schema import ANOMALY_KINDS, EVENT_FIELDS, LABEL_SCHEMA, SENSOR_COLUMNS, TELEMETRY_SCHEMA
from simulator.generator import DEVICE_TYPES, TelemetryGenerator

START = datetime(2026, 11, 1, tzinfo=UTC)


def generator(seed: int = 7, devices: int = 50, anomaly_rate: float = 0.03) -> TelemetryGenerator:
    return TelemetryGenerator(
        devices, seed=seed, start=START, interval_s=10.0, anomaly_rate=anomaly_rate, id_prefix="t"
    )


def test_same_seed_same_events() -> None:
    first = generator(seed=11).next_chunk(400)
    second = generator(seed=11).next_chunk(400)
    assert np.array_equal(first.values, second.values)
    assert np.array_equal(first.kind, second.kind)
    assert first.event_ids.tolist() == second.event_ids.tolist()


def test_other_seed_other_noise_same_fleet() -> None:
    a, b = generator(seed=1), generator(seed=2)
    chunk_a, chunk_b = a.next_chunk(50), b.next_chunk(50)
    assert not np.array_equal(chunk_a.values, chunk_b.values)
    # A device keeps its type and baseline whatever the run's seed: it is the same fleet.
    assert a.fleet.device_types.tolist() == b.fleet.device_types.tolist()
    assert np.array_equal(a.fleet.means, b.fleet.means)


def test_anomaly_mix_and_rate() -> None:
    chunk = generator(anomaly_rate=0.03).next_chunk(2000)  # 100,000 readings
    kinds = Counter(chunk.kind[chunk.kind >= 0].tolist())
    assert set(kinds) == set(range(len(ANOMALY_KINDS))), "every anomaly kind appears"
    share = (chunk.kind >= 0).mean()
    assert 0.02 < share < 0.04


def test_no_anomalies_when_rate_is_zero() -> None:
    chunk = generator(anomaly_rate=0.0).next_chunk(200)
    assert (chunk.kind == -1).all()


def test_values_are_physically_possible_and_near_baseline() -> None:
    gen = generator(anomaly_rate=0.05)
    chunk = gen.next_chunk(1000)
    humidity = chunk.values[:, SENSOR_COLUMNS.index("humidity")]
    assert ((humidity >= 0) & (humidity <= 100)).all()
    assert (chunk.values[:, [2, 3, 4]] >= 0).all()
    normal = chunk.kind == -1
    means = gen.fleet.means[chunk.device_index[normal]]
    stds = gen.fleet.stds[chunk.device_index[normal]]
    z = np.abs(chunk.values[normal] - means) / stds
    assert np.median(z) < 2.0  # normal readings stay near the device's baseline


def test_sensors_are_correlated_as_designed() -> None:
    chunk = generator(anomaly_rate=0.0, devices=1).next_chunk(5000)
    temperature, humidity = chunk.values[:, 0], chunk.values[:, 1]
    assert np.corrcoef(temperature, humidity)[0, 1] < -0.3  # warmer air is drier


def test_spike_and_dropout_look_like_their_kind() -> None:
    gen = generator(anomaly_rate=0.2)
    chunk = gen.next_chunk(500)
    dropout = chunk.kind == ANOMALY_KINDS.index("dropout")
    assert dropout.any()
    assert ((chunk.values[dropout] == 0.0).sum(axis=1) >= 1).all()
    spike = chunk.kind == ANOMALY_KINDS.index("spike")
    z = (
        np.abs(chunk.values[spike] - gen.fleet.means[chunk.device_index[spike]])
        / gen.fleet.stds[chunk.device_index[spike]]
    )
    assert (z.max(axis=1) > 4).all()


def test_event_json_follows_the_contract() -> None:
    gen = generator()
    chunk = gen.next_chunk(3)
    keys, values = chunk.json_events(gen.fleet)
    event = orjson.loads(values[0])
    assert tuple(event) == EVENT_FIELDS
    assert keys[0] == event["device_id"].encode()
    assert event["ts"].endswith("Z")
    assert datetime.fromisoformat(event["ts"]).tzinfo is not None
    assert all(isinstance(event[name], float) for name in SENSOR_COLUMNS)
    assert "is_anomaly" not in event and "anomaly_type" not in event
    assert len({orjson.loads(v)["event_id"] for v in values}) == len(values)


def test_tables_have_the_lake_schemas() -> None:
    gen = generator()
    chunk = gen.next_chunk(10)
    assert chunk.telemetry_table(gen.fleet).schema.equals(TELEMETRY_SCHEMA)
    labels = chunk.label_table(gen.fleet)
    assert labels.schema.equals(LABEL_SCHEMA)
    assert labels.num_rows == len(chunk)


def test_device_types_are_mixed() -> None:
    fleet = generator(devices=200).fleet
    assert set(fleet.device_types.tolist()) == set(DEVICE_TYPES)


@pytest.mark.parametrize("rate", [-0.1, 0.5])
def test_bad_anomaly_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="anomaly rate"):
        generator(anomaly_rate=rate)


def realistic(seed: int = 5, devices: int = 20) -> TelemetryGenerator:
    return TelemetryGenerator(
        devices, seed=seed, start=START, interval_s=60.0, anomaly_rate=0.02, id_prefix="r", scenario="realistic"
    )


def _readings_of(chunk, device: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    own = chunk.device_index == device
    order = np.argsort(chunk.ts_us[own], kind="stable")
    return chunk.ts_us[own][order], chunk.values[own][order], chunk.kind[own][order]


def test_realistic_devices_start_one_after_another_and_go_silent_and_come_back() -> None:
    chunk = realistic().next_chunk(2 * 1440)  # two days, a reading a minute
    assert len(chunk) < 20 * 2 * 1440
    first_hours = []
    for device in range(20):
        ts, _, _ = _readings_of(chunk, device)
        first_hours.append((ts[0] - START.timestamp() * 1e6) / 3.6e9)
        gaps_hours = np.diff(ts) / 3.6e9
        # A gap of an hour or more between two readings: the device went silent and came back.
        assert (gaps_hours >= 1.0).any(), f"device {device} never went silent"
    assert max(first_hours) - min(first_hours) > 2.0, "devices start recording hours apart"


def test_realistic_devices_warm_up_after_a_silence_run_in_their_own_regimes_and_faults_last_minutes() -> None:
    gen = realistic()
    chunk = gen.next_chunk(2 * 1440)
    temperature = SENSOR_COLUMNS.index("temperature")
    cold, regimes = [], []
    for device in range(20):
        ts, values, kinds = _readings_of(chunk, device)
        mean, std = gen.fleet.means[device, temperature], gen.fleet.stds[device, temperature]
        z = (values[:, temperature] - mean) / std - gen.field.regime[device, temperature]
        starts = np.flatnonzero(np.diff(ts, prepend=0) > 3.6e9)  # first readings after a silence
        cold += [z[start] - np.median(z) for start in starts if kinds[start] == -1]
        regimes.append(np.median((values[:, temperature] - mean) / std))
    # A cold start reads about 4 standard deviations low, and it is normal operation.
    assert np.median(cold) < -2.5
    # Devices of one type run at operating points standard deviations apart.
    assert np.std(regimes) > 1.5
    lengths = []
    for device in range(20):
        _, _, kinds = _readings_of(chunk, device)
        edges = np.flatnonzero(np.diff(np.r_[-1, kinds, -1]) != 0)
        lengths += [
            e - s for s, e in zip(edges[:-1], edges[1:], strict=True) if kinds[s] == ANOMALY_KINDS.index("correlated")
        ]
    assert np.mean(lengths) >= 10, "a correlated fault lasts ten readings or more"


def test_realistic_is_deterministic_and_keeps_the_fleet() -> None:
    a, b = realistic(seed=3).next_chunk(600), realistic(seed=3).next_chunk(600)
    assert a.event_ids.tolist() == b.event_ids.tolist() and np.array_equal(a.values, b.values)
    assert np.array_equal(realistic(seed=3).field.regime, realistic(seed=4).field.regime)
    with pytest.raises(ValueError, match="unknown scenario 'lab'"):
        TelemetryGenerator(1, seed=0, start=START, interval_s=1.0, anomaly_rate=0.0, id_prefix="x", scenario="lab")

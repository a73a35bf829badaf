"""Each device's last reading, carried from one micro-batch to the next.

A reading's delta features compare it with the device's previous reading, which for the first
reading of a device in a batch lies in an earlier batch. The last reading per device after
batch N is kept beside the checkpoint as `last_readings/batch-N.json`; batch N+1 (and its
replay after a crash) reads exactly that snapshot, so a replayed batch computes the same features.

The snapshot is one small record per device, so the driver reads and writes it itself through
Hadoop's FileSystem (a local folder or HDFS, like the checkpoint): no Spark job per batch.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession

from features.logic import EARLIER_FIELDS, earlier
from infra.spark import hadoop_filesystem

READING_FIELDS: tuple[str, ...] = EARLIER_FIELDS
# (ts, event_id, *sensors): the order in which a device's readings follow each other is (ts, event_id).
Reading = tuple[Any, ...]
_KEEP = 3  # snapshots kept: the newest is enough, two more cover a crash while writing


def newer(readings: dict[str, Reading], candidates: dict[str, Reading]) -> dict[str, Reading]:
    """The newest reading per device of both (events may arrive out of order)."""
    merged = dict(readings)
    for device, reading in candidates.items():
        known = merged.get(device)
        if known is None or reading[:2] > known[:2]:
            merged[device] = reading
    return merged


class LastReadings:
    def __init__(self, spark: SparkSession, folder: str) -> None:
        self.folder = folder.rstrip("/")
        self._fs, self._path = hadoop_filesystem(spark, self.folder)
        self._jvm = spark.sparkContext._jvm
        # The snapshot this process saved last: the next batch reads it from memory, not the folder.
        self._saved: tuple[int, dict[str, Reading]] | None = None

    def _snapshots(self) -> list[int]:
        if not self._fs.exists(self._path(self.folder)):
            return []
        names = (status.getPath().getName() for status in self._fs.listStatus(self._path(self.folder)))
        return sorted(
            int(n[len("batch-") : -len(".json")]) for n in names if n.startswith("batch-") and n.endswith(".json")
        )

    def _file(self, batch_id: int) -> Any:
        return self._path(f"{self.folder}/batch-{batch_id}.json")

    def before(self, batch_id: int) -> dict[str, Reading]:
        """The last reading of every device as of the end of the newest batch before `batch_id`."""
        if self._saved is not None and self._saved[0] == batch_id - 1:
            return self._saved[1]
        earlier = [i for i in self._snapshots() if i < batch_id]
        if not earlier:
            return {}
        stream = self._fs.open(self._file(earlier[-1]))
        try:
            data = bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))  # type: ignore[union-attr]
        finally:
            stream.close()
        return {device: (datetime.fromisoformat(r[0]), *r[1:]) for device, r in json.loads(data).items()}

    def save(self, batch_id: int, readings: dict[str, Reading]) -> None:
        """Write the snapshot after `batch_id`, whole or not at all (write, then rename)."""
        data = json.dumps({device: [r[0].isoformat(), *r[1:]] for device, r in readings.items()}).encode()
        final, partial = self._file(batch_id), self._path(f"{self.folder}/_batch-{batch_id}.json.tmp")
        out = self._fs.create(partial, True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()
        self._fs.delete(final, False)
        self._fs.rename(partial, final)
        self._saved = (batch_id, readings)
        for old in self._snapshots()[:-_KEEP]:
            self._fs.delete(self._file(old), False)

    @staticmethod
    def frame(readings: dict[str, Reading], devices: list[str]) -> pd.DataFrame:
        """The readings of these devices, as the columns `features.logic.add_features` reads
        for a device's earlier reading (device_id, then `earlier(field)` for each field)."""
        rows = [(device, *readings[device]) for device in devices if device in readings]
        return pd.DataFrame(rows, columns=["device_id", *(earlier(field) for field in READING_FIELDS)])

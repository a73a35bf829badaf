"""Each device's last reading, carried from one micro-batch to the next.

A reading's delta features compare it with the device's previous reading, which for the first
reading of a device in a batch lies in an earlier batch. The last reading per device after
batch N is kept beside the checkpoint as `last_readings/batch=N`; batch N+1 (and its replay
after a crash) reads exactly that snapshot, so a replayed batch computes the same features.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features.schema import SENSOR_COLUMNS
from infra.spark import hadoop_filesystem

_KEEP = 3  # snapshots kept: the newest is enough, two more cover a crash while writing


class LastReadings:
    def __init__(self, spark: SparkSession, folder: str) -> None:
        self.spark = spark
        self.folder = folder.rstrip("/")
        self._fs, self._path = hadoop_filesystem(spark, self.folder)

    def _snapshots(self) -> list[int]:
        if not self._fs.exists(self._path(self.folder)):
            return []
        ids = []
        for status in self._fs.listStatus(self._path(self.folder)):
            name = status.getPath().getName()
            if name.startswith("batch=") and self._fs.exists(self._path(status.getPath(), "_SUCCESS")):
                ids.append(int(name.split("=", 1)[1]))
        return sorted(ids)

    def before(self, batch_id: int) -> DataFrame | None:
        """The last reading of every device as of the end of the newest batch before `batch_id`."""
        earlier = [i for i in self._snapshots() if i < batch_id]
        if not earlier:
            return None
        return self.spark.read.parquet(f"{self.folder}/batch={earlier[-1]}")

    def save(self, batch_id: int, events: DataFrame, previous: DataFrame | None) -> None:
        """Write the snapshot after `batch_id`: the newest reading per device of both."""
        columns = ["device_id", "ts", "event_id", *SENSOR_COLUMNS]
        candidates = events.select(*columns)
        if previous is not None:
            candidates = candidates.unionByName(previous.select(*columns))
        newest = candidates.groupBy("device_id").agg(
            F.max_by(F.struct(*columns[1:]), F.struct("ts", "event_id")).alias("r")
        )
        newest.select("device_id", "r.*").coalesce(1).write.mode("overwrite").parquet(f"{self.folder}/batch={batch_id}")
        for old in self._snapshots()[:-_KEEP]:
            self._fs.delete(self._path(f"{self.folder}/batch={old}"), True)

"""The lake: Parquet datasets and Delta tables, partitioned by date, under `WARDEN_LAKE_ROOT`.

Python code that is not Spark reads and writes the lake only through this module, which reaches
the root through fsspec (`lake_filesystem`, the one place that picks it): a local folder, or
WebHDFS for an hdfs:// root, so no native Hadoop client is needed outside the JVM. Spark reads
the same datasets through `Lake.url`, with its own Hadoop client. The tables
`telemetry`, `scored` and `rejected` are Delta tables: Python reads them through their log with `deltalake`
(delta-rs, which reaches hdfs:// natively), a consistent snapshot, never by listing files.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError
from fsspec.implementations.local import LocalFileSystem

from infra.exceptions import LakeError
from infra.probes import port_is_open
from infra.settings import Settings

# Lake datasets are partitioned by the event's UTC date, in a hive-style `date=YYYY-MM-DD` folder.
PARTITION_COLUMN = "date"

# The lake's Delta tables, each with the columns whose min/max its files record: a read of one
# batch, or of a time range, opens only the files that can hold it. Statistics of every column
# cost ~0.2 s a streaming write here.
DELTA_TABLES = {"telemetry": "ts", "scored": "batch_id,ts", "rejected": "batch_id,source_timestamp"}


def table_properties(table: str) -> dict[str, str]:
    """The properties a Delta table of the lake is created with, whoever creates it (the stream
    through Spark, or a backfill through deltalake)."""
    return {
        "delta.dataSkippingStatsColumns": DELTA_TABLES[table],
        # A log checkpoint every 100 commits, not 10: its Spark job stays out of most streaming
        # batches, and readers still replay at most 100 small commit files.
        "delta.checkpointInterval": "100",
        # Commit files older than this are deleted when a checkpoint is written. Every snapshot
        # update lists the whole `_delta_log` folder (Hadoop has no "list from"), and a stream
        # commits each batch: 30 days (the default) of 2 s batches would be 1.3M files a table.
        # Time travel reaches back two days, and vacuum keeps removed data files as long (Delta
        # requires the log to be kept at least as long as them).
        "delta.logRetentionDuration": "interval 2 days",
        "delta.deletedFileRetentionDuration": "interval 2 days",
    }


_PARTITIONING = ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.string())]), flavor="hive")


def lake_filesystem(settings: Settings) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem that holds the lake, and the root's path on it.

    hdfs:// goes through the NameNode's WebHDFS (port WARDEN_HDFS_HTTP_PORT): fsspec's own
    "hdfs" protocol needs libhdfs and a JVM in this process.
    """
    root = settings.lake_url
    if settings.lake_on_hdfs and not port_is_open(settings.hdfs_namenode[0], settings.hdfs.http_port, timeout=2.0):
        raise LakeError(
            f"the lake's NameNode does not answer on {settings.webhdfs_url} (WebHDFS); start it with "
            "`warden up --lake hdfs`, or fix WARDEN_LAKE_ROOT and WARDEN_HDFS_HTTP_PORT"
        )
    try:
        if settings.lake_on_hdfs:
            fs = fsspec.filesystem(
                "webhdfs", host=settings.hdfs_namenode[0], port=settings.hdfs.http_port, user=settings.hdfs.user
            )
            return fs, urlsplit(root).path or "/"
        return fsspec.core.url_to_fs(root)  # type: ignore[no-any-return]
    except (ImportError, OSError, ValueError) as exc:
        raise LakeError(f"lake root {root} cannot be opened: {exc}") from None


class Lake:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.lake_url
        self.fs, self.base = lake_filesystem(settings)
        # Arrow's own local filesystem where it can: its writer threads then never call back into
        # Python (a process could abort at exit with "terminate called without an active exception").
        local = isinstance(self.fs, LocalFileSystem)
        self._arrow_fs = pafs.LocalFileSystem() if local else pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))

    def url(self, dataset: str) -> str:
        """The dataset's location as Spark and other readers address it."""
        return f"{self.root}/{dataset}"

    def offline_url(self, dataset: str) -> str:
        """The dataset's location for Python readers that take a URL (Feast's offline store via
        dask and fsspec): hdfs:// becomes the NameNode's WebHDFS address."""
        if self.settings.lake_on_hdfs:
            s = self.settings
            return f"webhdfs://{s.hdfs.user}@{s.hdfs_namenode[0]}:{s.hdfs.http_port}{self._path(dataset)}"
        return self.url(dataset)

    def spark_url(self, offline_url: str) -> str:
        """The inverse of `offline_url`: a location of the lake, as Spark addresses it."""
        prefix = self.offline_url("")
        return self.url(offline_url[len(prefix) :]) if offline_url.startswith(prefix) else offline_url

    def _path(self, dataset: str) -> str:
        return f"{self.base.rstrip('/')}/{dataset}"

    def check_writable(self) -> None:
        try:
            self.fs.makedirs(self.base, exist_ok=True)
            probe = f"{self.base.rstrip('/')}/.write-probe"
            self.fs.pipe(probe, b"ok")
            self.fs.rm(probe)
        except OSError as exc:
            raise LakeError(f"lake root {self.root} is not writable: {exc}") from None

    def write(self, table: pa.Table, dataset: str, basename: str) -> int:
        """Add `table` to `dataset`, partitioned by the UTC date of its `ts` column; returns rows.

        `basename` names the files (`{i}` is replaced by a counter); a file of the same name is
        replaced.
        """
        dates = pc.strftime(table["ts"], format="%Y-%m-%d", locale="C")
        try:
            ds.write_dataset(
                table.append_column(PARTITION_COLUMN, dates),
                self._path(dataset),
                format="parquet",
                partitioning=_PARTITIONING,
                filesystem=self._arrow_fs,
                basename_template=basename,
                existing_data_behavior="overwrite_or_ignore",
                max_rows_per_group=256 * 1024,
            )
        except OSError as exc:
            raise LakeError(f"cannot write {dataset}/ under {self.root}: {exc}") from None
        return table.num_rows  # type: ignore[no-any-return]

    def remove(self, dataset: str, prefix: str, dates: list[str]) -> int:
        """Delete the files of `dataset` whose names start with `prefix` in the given date
        partitions (YYYY-MM-DD): how a writer replaces its own earlier output and nobody else's."""
        removed = 0
        for date in dates:
            folder = f"{self._path(dataset)}/{PARTITION_COLUMN}={date}"
            if not self.fs.exists(folder):
                continue
            for path in self.fs.ls(folder, detail=False):
                if path.rsplit("/", 1)[-1].startswith(prefix):
                    self.fs.rm(path)
                    removed += 1
        return removed

    def write_file(self, table: pa.Table, dataset: str, filename: str) -> None:
        """Write (or replace) one unpartitioned Parquet file `dataset/filename`."""
        folder = self._path(dataset)
        try:
            self.fs.makedirs(folder, exist_ok=True)
            pq.write_table(table, f"{folder}/{filename}", filesystem=self._arrow_fs)
        except OSError as exc:
            raise LakeError(f"cannot write {dataset}/{filename} under {self.root}: {exc}") from None

    def read(self, dataset: str, columns: list[str] | None = None) -> pa.Table:
        """The whole dataset (with its `date` partition column) as one Arrow table."""
        path = self._path(dataset)
        if not self.fs.exists(path):
            raise LakeError(f"{dataset}/ does not exist under {self.root}; run `warden backfill` first")
        try:
            return ds.dataset(path, format="parquet", partitioning=_PARTITIONING, filesystem=self._arrow_fs).to_table(
                columns=columns
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise LakeError(f"cannot read {dataset}/ under {self.root}: {exc}") from None

    def read_table(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """A Delta table (with its `date` partition column) as of its latest commit."""
        return self.delta_table(table).to_pyarrow_table(columns=columns)

    def delta_table(self, table: str) -> DeltaTable:
        """The Delta table `table` as of its latest commit."""
        try:
            return DeltaTable(self.url(table))
        except TableNotFoundError:
            raise LakeError(
                f"{table}/ is not a Delta table under {self.root} yet; `warden backfill` or `warden stream` writes it"
            ) from None

    def append_table(self, table: str, rows: pa.Table) -> int:
        """Append `rows` to the Delta table `table` in one commit, each in the date partition of its
        `ts`; returns the rows written."""
        dates = pc.strftime(rows["ts"], format="%Y-%m-%d", locale="C")
        try:
            write_deltalake(
                self.url(table),
                rows.append_column(PARTITION_COLUMN, dates),
                mode="append",
                partition_by=[PARTITION_COLUMN],
                configuration=table_properties(table),
            )
        except (OSError, DeltaError) as exc:
            raise LakeError(f"cannot append to {table}/ under {self.root}: {exc}") from None
        return rows.num_rows  # type: ignore[no-any-return]

    def delete_rows(self, table: str, predicate: str) -> int:
        """Delete the rows of `table` that match `predicate` (SQL), if the table exists; returns
        how many."""
        try:
            snapshot = self.delta_table(table)
        except LakeError:
            return 0
        return int(snapshot.delete(predicate)["num_deleted_rows"])

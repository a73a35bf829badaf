"""The lake: Parquet datasets partitioned by date under `WARDEN_LAKE_ROOT`.

Python code that is not Spark reads and writes the lake only through this module, which reaches
the root through fsspec, so a local folder and a remote filesystem take the same code path.
Spark reads the same datasets through `Lake.url`.
"""

from __future__ import annotations

from typing import Literal

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from features.schema import PARTITION_COLUMN
from infra.exceptions import LakeError
from infra.settings import Settings

DATASETS = ("telemetry", "labels", "scored", "rejected")

_PARTITIONING = ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.string())]), flavor="hive")


class Lake:
    def __init__(self, settings: Settings) -> None:
        self.root = settings.lake_url
        try:
            self.fs, self.base = fsspec.core.url_to_fs(self.root)
        except (ImportError, OSError, ValueError) as exc:
            raise LakeError(f"lake root {self.root} cannot be opened: {exc}") from None
        self._arrow_fs = pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))

    def url(self, dataset: str) -> str:
        """The dataset's location as Spark and other readers address it."""
        return f"{self.root}/{dataset}"

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

    def write(
        self,
        table: pa.Table,
        dataset: str,
        basename: str,
        existing: Literal["append", "replace_partitions"] = "append",
    ) -> int:
        """Write `table` partitioned by the UTC date of its `ts` column; returns rows written.

        `basename` names the files (`{i}` is replaced by a counter); `replace_partitions` deletes
        whatever the touched date partitions held before, so a re-run replaces its own output.
        """
        dates = pc.strftime(table["ts"], format="%Y-%m-%d", locale="C")
        table = table.append_column(PARTITION_COLUMN, dates)
        try:
            ds.write_dataset(
                table,
                self._path(dataset),
                format="parquet",
                partitioning=_PARTITIONING,
                filesystem=self._arrow_fs,
                basename_template=basename,
                existing_data_behavior=(
                    "delete_matching" if existing == "replace_partitions" else "overwrite_or_ignore"
                ),
                max_rows_per_group=256 * 1024,
            )
        except OSError as exc:
            raise LakeError(f"cannot write {dataset}/ under {self.root}: {exc}") from None
        return table.num_rows

    def read(self, dataset: str, columns: list[str] | None = None) -> pa.Table:
        """The whole dataset (with its `date` partition column) as one Arrow table."""
        path = self._path(dataset)
        if not self.fs.exists(path):
            raise LakeError(f"{dataset}/ does not exist under {self.root}; run `warden backfill` first")
        dataset_ = ds.dataset(path, format="parquet", partitioning=_PARTITIONING, filesystem=self._arrow_fs)
        return dataset_.to_table(columns=columns)

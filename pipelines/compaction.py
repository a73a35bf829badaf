"""Compaction of the lake's Delta tables: the stream commits a few small files to each table every
micro-batch; this rewrites them into large ones and deletes the files no recent version needs.

Runs through `deltalake` (delta-rs), no Spark session: a compaction commit only moves rows
between files (`dataChange=false`), so the stream's appends never conflict with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.exceptions import LakeError
from infra.lake import DELTA_TABLES, Lake
from infra.progress import ProgressLine


@dataclass(frozen=True)
class Compaction:
    table: str
    files_removed: int
    files_added: int
    files_vacuumed: int

    def summary(self) -> str:
        return f"{self.table}: {self.files_removed:,} files into {self.files_added:,}, {self.files_vacuumed:,} deleted"


def compact_tables(lake: Lake, progress: ProgressLine | None = None) -> list[Compaction]:
    """Compact every Delta table of the lake that exists, then vacuum it: files removed more than
    the table's `delta.deletedFileRetentionDuration` ago (2 days, `infra.lake.table_properties`)
    are deleted, so a reader or a time travel within that period still finds its files."""
    progress = progress or ProgressLine("compaction")
    done = []
    for table in DELTA_TABLES:
        try:
            snapshot = lake.delta_table(table)
        except LakeError:
            continue
        progress.update(f"{table}: compacting {len(snapshot.file_uris()):,} files", force=True)
        metrics = snapshot.optimize.compact()
        vacuumed = snapshot.vacuum(dry_run=False)
        done.append(Compaction(table, metrics["numFilesRemoved"], metrics["numFilesAdded"], len(vacuumed)))
    progress.done("; ".join(c.summary() for c in done) or "no Delta table in the lake yet")
    return done

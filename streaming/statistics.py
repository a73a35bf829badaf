"""The online statistics of the devices the stream has met, held in memory and re-read in the background.

A batch needs its devices' statistics before it can score. Reading Feast's online store in every
batch cost 100-400 ms of each one, for values that change only when `feature_refresh`
materializes (every 15 minutes by default). A batch therefore looks its devices up here; only a
device met for the first time is read from the store inside the batch, and every device met so
far is read again, in one batched read, every `refresh_seconds` on a thread of its own. A batch
can so use statistics up to `refresh_seconds` older than the store's, which is what a
materialization that ran that much later would have given; whether they are fresh enough for an
event is still decided against the event's time (`features.logic.usable_stats`).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import pandas as pd

from features.store import online_features

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)


class OnlineStatistics:
    def __init__(self, store: FeatureStore, refresh_seconds: float) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._known = pd.DataFrame()  # a row per device met, indexed by device_id
        # Guards the table. `of` also reads the store under it (a batch waits for its new devices);
        # `refresh` reads the store outside it, so batches never wait for a whole fleet's read.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh_loop, name="online-statistics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def met(self) -> set[str]:
        """Every device read so far."""
        with self._lock:
            return set(self._known.index)

    def of(self, devices: list[str]) -> pd.DataFrame:
        """A row per device, in this order, as `features.store.online_features` gives it (nulls
        for a device the store does not know)."""
        with self._lock:
            new = [d for d in devices if d not in self._known.index]
            if new:
                read = online_features(self.store, new).set_index("device_id")
                self._known = read if self._known.empty else pd.concat([self._known, read])
            return self._known.loc[devices].reset_index()

    def refresh(self) -> None:
        """Read every device met so far from the store again."""
        with self._lock:
            devices = list(self._known.index)
        if not devices:
            return
        fresh = online_features(self.store, devices).set_index("device_id")
        with self._lock:
            # Devices met while the store was being read keep the row their batch read.
            self._known = pd.concat([fresh, self._known.loc[~self._known.index.isin(fresh.index)]])

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception as exc:  # the store is gone for a moment: keep what is known
                log.warning("re-reading the online statistics failed, keeping the last ones: %s", exc)

"""Progress for long work: one line that updates in a terminal, a line every few seconds in a log."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressLine:
    """Shows `label: text` on stderr; call `update` often, it throttles itself."""

    def __init__(self, label: str, stream: TextIO | None = None, log_every: float = 5.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.2 if self.tty else log_every
        self._last = 0.0
        self._width = 0
        self._text = ""

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        if not self.tty and text == self._text:
            return  # a log of the same line every few seconds says nothing new
        self._last = now
        self._text = text
        line = f"{self.label}: {text}"
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self, text: str) -> None:
        """Replace the progress line with a final one."""
        self._last = 0.0
        self.update(text, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

"""Catch-up policy for live streams: when to skip interim windows because the server is behind.

A stream's audio is received by a reader thread as it arrives and processed in order. When a
live client (one that sends audio about as fast as it is spoken) gets ahead of the server,
interim windows are skipped until the backlog is worked off: VAD still sees every sample and
finals are still decoded, so nothing is lost, but latency stays bounded instead of growing
with every window the machine cannot afford. A client that has ever been well ahead of real
time is uploading a file (or a benchmark in fast mode): it wants every window, and its
results must not depend on the server's speed, so it is never skipped. Nothing is skipped
in a stream's first `probation_s` of wall time either, while that is still being found out.

Pure (clock injected); the servicer reports arrivals and processing, the stream asks
`skip_interim()` before each interim window.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable


@dataclasses.dataclass(frozen=True)
class PacingOptions:
    max_backlog_s: float = 0.5  # interim windows are skipped while more received audio than this waits
    file_lead_s: float = 0.5  # a client ever this far ahead of real time is not live: never skip
    probation_s: float = 2.0  # no skipping before the client has been watched this long
    max_buffer_s: float = 30.0  # the reader stops reading (gRPC flow control) beyond this much unprocessed audio


class LivePacing:
    def __init__(self, options: PacingOptions = PacingOptions(), clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self._clock = clock
        self._cv = threading.Condition()
        self._first: float | None = None  # arrival time of the first audio
        self._received_s = 0.0
        self._processed_s = 0.0
        self._live = True
        self._closed = False

    # ---- reader side -------------------------------------------------------------------
    def received(self, seconds: float) -> None:
        """`seconds` of audio arrived now."""
        with self._cv:
            now = self._clock()
            if self._first is None:
                self._first = now
            # ahead of real time: more audio before this chunk than time since the first one
            self._received_s += seconds
            if self._received_s - seconds - (now - self._first) > self.options.file_lead_s:
                self._live = False

    def wait_for_room(self) -> bool:
        """Block the reader while the unprocessed audio exceeds `max_buffer_s`; False once closed."""
        with self._cv:
            self._cv.wait_for(lambda: self._closed or self.backlog_s() < self.options.max_buffer_s)
            return not self._closed

    # ---- processing side ---------------------------------------------------------------
    def processed(self, seconds: float) -> None:
        with self._cv:
            self._processed_s += seconds
            self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def backlog_s(self) -> float:
        return self._received_s - self._processed_s

    @property
    def live(self) -> bool:
        """Sending at about real-time pace, as far as can be told yet."""
        return self._live and self._first is not None and self._clock() - self._first >= self.options.probation_s

    def skip_interim(self) -> bool:
        with self._cv:
            return self.live and self.backlog_s() > self.options.max_backlog_s

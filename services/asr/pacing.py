"""Catch-up policy for live streams: how much interim work to drop while the server is behind.

A stream's audio is received by a reader thread as it arrives and processed in order. When a
live client (one that sends audio about as fast as it is spoken) gets ahead of the server,
interim work is dropped until the backlog is worked off: first the interim text (a greedy
decode per window, only for display), then, further behind, the window itself (the encode
and the language probe that finds switches inside a segment). VAD still sees every sample
and finals are still decoded, so nothing is lost, and latency stays bounded instead of
growing with every window the machine cannot afford.

A client that has ever been well ahead of real time is uploading a file (or a benchmark in
fast mode): it wants every window, and its results must not depend on the server's speed,
so nothing is dropped for it. Nothing is dropped in a stream's first `probation_s` of wall
time either, while that is still being found out.

A live stream also rests between interim windows so they take at most `interim_duty` of its
wall time: after a step that ran the model for c seconds (queue wait included, so the rest
grows with the load of other streams), no interim window for c·(1/duty − 1) seconds. On a
machine where a window is cheap this changes nothing (the window interval is longer than the
rest); where it is dear, the interval stretches before a backlog builds, and finals decoded in
a pause do not wait behind interim windows. A suspected switch (one probe has voted for the
other language) is not kept waiting: its confirming probe skips the rest.

Pure (clock injected); the servicer reports arrivals, processing and model time, and asks
`interim_work()` before each step.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Literal

InterimWork = Literal["text", "probe", "none"]  # what an interim step may do (stream.RecognitionStream.step)


@dataclasses.dataclass(frozen=True)
class PacingOptions:
    text_backlog_s: float = 0.5  # interim text is dropped while more received audio than this waits
    probe_backlog_s: float = 2.0  # ... and the whole interim window beyond this
    file_lead_s: float = 0.5  # a client ever this far ahead of real time is not live: nothing dropped
    probation_s: float = 2.0  # nothing dropped before the client has been watched this long
    max_buffer_s: float = 30.0  # the reader stops reading (gRPC flow control) beyond this much unprocessed audio
    # A live stream's interim windows take at most this share of its wall time (1 = no rest, the
    # default: at 0.5 the sparser switch probes missed a ja/en stream's in-segment switches live).
    interim_duty: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.interim_duty <= 1:
            raise ValueError(f"interim_duty must be in (0, 1], got {self.interim_duty}")


class LivePacing:
    def __init__(self, options: PacingOptions = PacingOptions(), clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self._clock = clock
        self._cv = threading.Condition()
        self._first: float | None = None  # arrival time of the first audio
        self._received_s = 0.0
        self._processed_s = 0.0
        self._ahead = False  # has been ahead of real time: not a live client
        self._rest_until = float("-inf")  # no interim window before this (duty cycle)
        self._window_s = 0.0  # wall time of the last interim window run in the background
        self._closed = False

    # ---- reader side -------------------------------------------------------------------
    def received(self, seconds: float) -> None:
        """`seconds` of audio arrived now."""
        with self._cv:
            now = self._clock()
            if self._first is None:
                self._first = now
            # ahead of real time: more audio before this chunk than time since the first one
            if self._received_s - (now - self._first) > self.options.file_lead_s:
                self._ahead = True
            self._received_s += seconds

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

    def worked(self, seconds: float) -> None:
        """A step just ran the model for `seconds` of wall time (queue wait included)."""
        with self._cv:
            duty = self.options.interim_duty
            if duty < 1:
                self._rest_until = self._clock() + seconds * (1 / duty - 1)

    def window_took(self, seconds: float) -> None:
        """An interim window that ran beside the stream (servicer: background windows) took
        `seconds`: how stale its result was, what the backlog is for a window run inline."""
        with self._cv:
            self._window_s = seconds

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def backlog_s(self) -> float:
        return self._received_s - self._processed_s

    @property
    def live(self) -> bool:
        """Sending at about real-time pace, as far as can be told yet."""
        return not self._ahead and self._first is not None and self._clock() - self._first >= self.options.probation_s

    @property
    def resting(self) -> bool:
        """A live stream's interim windows are resting (duty cycle)."""
        with self._cv:
            return self.live and self._clock() < self._rest_until

    def interim_work(self, urgent: bool = False) -> InterimWork:
        """What the next step may do. `urgent` (a switch is suspected and its confirming probe is
        due) skips the rest, not the catch-up."""
        resting = not urgent and self.resting
        with self._cv:
            backlog = self.backlog_s() if self.live else 0.0
            late = self._window_s if self.live else 0.0  # the last background window's staleness
        o = self.options
        if resting or backlog > o.probe_backlog_s:
            return "none"
        return "probe" if max(backlog, late) > o.text_backlog_s else "text"

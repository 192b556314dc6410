"""Admission control: whether one more stream fits, by count and by measured inference load.

A stream's load is the inference time it costs per second of its audio (its real-time factor,
in inference workers), as the scheduler measures it. A stream with less than `settle_s` of
audio counts at `new_stream_load`, the cost of one stream measured when the models were warmed
up (`AsrRuntime.load`). A new stream is refused (the servicer answers `RESOURCE_EXHAUSTED`)
when `max_streams` are open, or when the open streams' load plus one new stream's would pass
`max_load` × workers. The share is well below 1 because finals come in bursts (a switch's
probes, the finals at a pause): on 2 cores, at 0.9 the open streams' final p95 was 2.0-2.5 s,
at 0.6 it stayed within 1.5 s (README, Benchmarks). The first stream is always admitted, however
slow the machine. Pure logic: the meters are callables.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Callable

Meter = Callable[[], tuple[float, float]]  # () -> (inference seconds, audio seconds) of one stream


class OverCapacity(Exception):
    """Why a stream was not admitted (the message is the gRPC status detail)."""


@dataclasses.dataclass(frozen=True)
class AdmissionOptions:
    max_streams: int = 8
    max_load: float = 0.6  # share of the inference workers' time the open streams may use (0 = count only)
    settle_s: float = 10.0  # audio a stream needs before its own measured load replaces new_stream_load


class Slot:
    """One admitted stream; `meter` is attached once the stream exists."""

    def __init__(self) -> None:
        self.meter: Meter | None = None

    def load(self, new_stream_load: float, settle_s: float) -> float:
        if self.meter is None:
            return new_stream_load
        busy, audio = self.meter()
        return busy / audio if audio >= settle_s else new_stream_load


class Admission:
    def __init__(self, options: AdmissionOptions, new_stream_load: float, workers: int = 1) -> None:
        self.options = options
        self.new_stream_load = new_stream_load
        self.workers = workers
        self._slots: list[Slot] = []
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        return len(self._slots)

    def load(self) -> float:
        """The open streams' load, in inference workers."""
        with self._lock:
            return self._load()

    def _load(self) -> float:
        return sum(s.load(self.new_stream_load, self.options.settle_s) for s in self._slots)

    def admit(self) -> Slot:
        o = self.options
        with self._lock:
            if len(self._slots) >= o.max_streams:
                raise OverCapacity(f"over capacity: {len(self._slots)} streams are open "
                                   f"(TANDEM_ASR_MAX_STREAMS={o.max_streams}); retry later")
            if o.max_load > 0 and self._slots:
                load, budget = self._load(), o.max_load * self.workers
                if load + self.new_stream_load > budget:
                    raise OverCapacity(
                        f"over capacity: the {len(self._slots)} open streams use {load:.2f} of this server's "
                        f"{budget:.2f} inference workers (TANDEM_ASR_MAX_LOAD={o.max_load} x {self.workers}), and "
                        f"a new stream needs about {self.new_stream_load:.2f}; retry later")
            slot = Slot()
            self._slots.append(slot)
            return slot

    def release(self, slot: Slot) -> None:
        with self._lock:
            self._slots.remove(slot)

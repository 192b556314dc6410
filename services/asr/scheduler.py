"""Cross-stream inference scheduling: one queue for every stream's Whisper calls.

Streams no longer call the engine directly; each gets a `StreamEngine` facade (same
interface) whose calls go through the `InferenceScheduler`:

- priorities: finals (and finals decoded ahead in a pause), then the interim windows that can
  confirm a language switch (due after a VAD dip, or with a switch suspected), then the other
  interim windows, then the head's final of a switch only suspected so far (it uses the time
  left over);
- fairness: within a priority, the job that has waited longest goes first (a stream has
  at most one job queued per thread: each waits for its result);
- batching: encodes of the same padded length and decodes of the same shape (beam, padded
  length, prefix or not) from different streams run as one batched engine call;
- a bounded queue and a load signal (`load()`: queued work per worker) that streams use
  to stretch their interim interval under load, so finals keep their latency;
- `others_busy(stream)`: the share of the workers' last 2 s that went to other streams'
  batches, which a stream reads before decoding its final ahead in a pause;
- `busy_seconds(stream)`: the worker time a stream has cost so far (a batch's time split
  evenly among its jobs), which admission control reads (admission.py).
Language detection is a single decoder step on an existing encoder output and runs inline.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np

# SWITCH_PROBE: an interim window that can confirm a switch (its interim text is INTERIM);
# SPECULATIVE: a switch's head final decoded before the switch is confirmed
FINAL, SWITCH_PROBE, INTERIM, SPECULATIVE = 0, 1, 2, 3
BUSY_HORIZON_S = 2.0  # what `others_busy` looks back over


@dataclasses.dataclass(order=True)
class _Job:
    priority: int
    enqueued: float
    seq: int
    kind: str = dataclasses.field(compare=False)  # "encode" | "decode"
    shape: tuple = dataclasses.field(compare=False)  # jobs with equal kind+shape batch together
    args: tuple = dataclasses.field(compare=False)
    future: Future = dataclasses.field(compare=False)
    stream: int = dataclasses.field(compare=False)


class SchedulerFull(RuntimeError):
    pass


class InferenceScheduler:
    def __init__(self, engine: Any, max_batch: int = 8, workers: int = 1, max_queue: int = 256,
                 batching: bool = True) -> None:
        self.engine = engine
        self.max_batch = max_batch if batching else 1
        self.max_queue = max_queue
        self._jobs: list[_Job] = []
        self._running: list[tuple[float, frozenset[int]]] = []  # batches being run: (start, streams)
        self._recent: collections.deque[tuple[float, float, frozenset[int]]] = collections.deque()  # (start, end, streams)
        self._busy: dict[int, float] = {}  # worker seconds per stream
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._stream_ids = itertools.count()
        self._closed = False
        self.batches = 0
        self.batched_jobs = 0
        self._workers = [threading.Thread(target=self._run, name=f"asr-infer-{i}", daemon=True) for i in range(workers)]
        for w in self._workers:
            w.start()

    # ---- API -------------------------------------------------------------------------
    def for_stream(self) -> "StreamEngine":
        stream = next(self._stream_ids)
        with self._cv:
            self._busy[stream] = 0.0
        return StreamEngine(self, stream)

    def load(self) -> float:
        """Queued jobs per worker (0 = idle)."""
        with self._cv:
            return len(self._jobs) / len(self._workers)

    def others_busy(self, stream: int) -> float:
        """Share of the workers' last `BUSY_HORIZON_S` spent on batches holding other streams'
        jobs (running ones so far): 0 = they left it all to `stream`, 1 = none left."""
        now = time.monotonic()
        since = now - BUSY_HORIZON_S
        with self._cv:
            spans = [(start, end) for start, end, streams in self._recent if streams - {stream}]
            spans += [(start, now) for start, streams in self._running if streams - {stream}]
        busy = sum(max(0.0, end - max(start, since)) for start, end in spans)
        return busy / (BUSY_HORIZON_S * len(self._workers))

    def busy_seconds(self, stream: int) -> float:
        """Worker seconds spent on `stream`'s jobs so far (a batch's time split among its jobs)."""
        with self._cv:
            return self._busy.get(stream, 0.0)

    def forget(self, stream: int) -> None:
        with self._cv:
            self._busy.pop(stream, None)

    def submit(self, kind: str, shape: tuple, args: tuple, priority: int, stream: int) -> Any:
        future: Future = Future()
        with self._cv:
            if self._closed:
                raise SchedulerFull("scheduler closed")
            if len(self._jobs) >= self.max_queue:
                raise SchedulerFull(f"inference queue full ({self.max_queue})")
            self._jobs.append(_Job(priority, time.monotonic(), next(self._seq), kind, shape, args, future, stream))
            self._cv.notify()
        return future.result()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            for job in self._jobs:
                job.future.set_exception(SchedulerFull("scheduler closed"))
            self._jobs.clear()
            self._cv.notify_all()

    # ---- worker ------------------------------------------------------------------------
    def _take(self) -> list[_Job] | None:
        with self._cv:
            while not self._jobs and not self._closed:
                self._cv.wait()
            if self._closed:
                return None
            self._jobs.sort()
            head = self._jobs[0]
            batch = [j for j in self._jobs if j.kind == head.kind and j.shape == head.shape][: self.max_batch]
            for j in batch:
                self._jobs.remove(j)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            results, error = None, None
            running = (time.monotonic(), frozenset(j.stream for j in batch))
            with self._cv:
                self._running.append(running)
            try:
                batched = getattr(self.engine, f"{batch[0].kind}_batch", None)
                if batched is not None:
                    results = batched([j.args for j in batch])
                elif batch[0].kind == "encode":
                    results = [self.engine.encode(*j.args) for j in batch]
                else:
                    results = [self.engine.decode(*j.args[:2], prompt=j.args[2], prefix=j.args[3], beam_size=j.args[4])
                               for j in batch]
            except BaseException as exc:  # noqa: BLE001 - delivered to the waiting streams
                error = exc
            with self._cv:
                self._running.remove(running)
                now = time.monotonic()
                self._recent.append((running[0], now, running[1]))
                for j in batch:  # (not a stream forgotten meanwhile: a window or draft that outlived it)
                    if j.stream in self._busy:
                        self._busy[j.stream] += (now - running[0]) / len(batch)
                while self._recent and self._recent[0][1] < now - BUSY_HORIZON_S:
                    self._recent.popleft()
            if error is not None:
                for j in batch:
                    j.future.set_exception(error)
                continue
            self.batches += 1
            self.batched_jobs += len(batch)
            for j, r in zip(batch, results):
                j.future.set_result(r)


class StreamEngine:
    """The engine as one stream sees it; `priority` is set by the stream around its calls, per
    thread (a stream's interim window may run on a thread of its own while its final is decoded)."""

    def __init__(self, scheduler: InferenceScheduler, stream: int) -> None:
        self.scheduler = scheduler
        self.stream = stream
        self._local = threading.local()

    @property
    def priority(self) -> int:
        return getattr(self._local, "priority", INTERIM)

    @priority.setter
    def priority(self, value: int) -> None:
        self._local.priority = value

    def load(self) -> float:
        return self.scheduler.load()

    def others_busy(self) -> float:
        return self.scheduler.others_busy(self.stream)

    def busy_seconds(self) -> float:
        return self.scheduler.busy_seconds(self.stream)

    def close(self) -> None:
        self.scheduler.forget(self.stream)

    def encode(self, audio: np.ndarray, padding=None, quantum_s: float | None = None):
        engine = self.scheduler.engine
        shape = engine.encode_shape(audio, padding, quantum_s) if hasattr(engine, "encode_shape") else ()
        return self.scheduler.submit("encode", shape, (audio, padding, quantum_s), self.priority, self.stream)

    def decode(self, encoded, language: str, *, prompt: str = "", prefix: str = "", beam_size: int = 1):
        engine = self.scheduler.engine
        shape = engine.decode_shape(encoded, prompt, prefix, beam_size) if hasattr(engine, "decode_shape") else ()
        return self.scheduler.submit("decode", shape, (encoded, language, prompt, prefix, beam_size),
                                     self.priority, self.stream)

    def detect(self, encoded, pair, last_seconds=None, span=None):
        return self.scheduler.engine.detect(encoded, pair, last_seconds, span)

    def detect_all(self, encoded, last_seconds=None, span=None):
        return self.scheduler.engine.detect_all(encoded, last_seconds, span)

    def detect_spans(self, encoded, pair, spans):
        return self.scheduler.engine.detect_spans(encoded, pair, spans)


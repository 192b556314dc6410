"""Pure session bookkeeping: segment ID allocation, translation direction, transcript store.

No gRPC here, so the rules (IDs unique and increasing within a session and stable across a
segment's revisions; a final in X is translated into the other language of the pair) are
unit-tested without servers.
"""

from __future__ import annotations

import collections
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


def _base(code: str) -> str:
    return code.split("-")[0].lower()


class SegmentIds:
    """Maps upstream (ASR) segment IDs to session segment IDs: 1, 2, 3, ... in first-seen order."""

    def __init__(self) -> None:
        self._by_upstream: dict[int, int] = {}

    def session_id_for(self, upstream_id: int) -> int:
        if upstream_id not in self._by_upstream:
            self._by_upstream[upstream_id] = len(self._by_upstream) + 1
        return self._by_upstream[upstream_id]


def translation_target(language: str, pair: tuple[str, ...]) -> str | None:
    """The other language of the pair (None with a single language)."""
    others = [code for code in pair if code != language and _base(code) != _base(language)]
    return others[0] if others else None


class TranscriptStore(Generic[T]):
    """Bounded, thread-safe store of session transcripts (oldest evicted first)."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._items: collections.OrderedDict[str, T] = collections.OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, value: T) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, key: str) -> T | None:
        with self._lock:
            return self._items.get(key)


class LeastLoaded(Generic[T]):
    """Picks the upstream (ASR worker) with the fewest open sessions; ties go round-robin."""

    def __init__(self, upstreams: list[T]) -> None:
        if not upstreams:
            raise ValueError("at least one upstream")
        self._open = [0] * len(upstreams)
        self._upstreams = upstreams
        self._next = 0
        self._lock = threading.Lock()

    def acquire(self) -> tuple[int, T]:
        with self._lock:
            n = len(self._upstreams)
            order = [(self._next + k) % n for k in range(n)]
            index = min(order, key=lambda i: self._open[i])
            self._open[index] += 1
            self._next = (index + 1) % n
            return index, self._upstreams[index]

    def release(self, index: int) -> None:
        with self._lock:
            self._open[index] -= 1

    def open_counts(self) -> list[int]:
        with self._lock:
            return list(self._open)

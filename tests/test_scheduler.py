"""Unit tests of the cross-stream inference scheduler with a fake engine (no model)."""

from __future__ import annotations

import threading
import time

from services.asr.scheduler import FINAL, INTERIM, InferenceScheduler


class FakeEngine:
    """Records the batches it is given; a gate holds the first call so a queue can build up."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list]] = []
        self.gate = threading.Event()

    def encode_shape(self, audio, padding=None, quantum_s=None):
        return (len(audio),)

    def decode_shape(self, encoded, prompt="", prefix="", beam_size=1):
        return (beam_size,)

    def encode_batch(self, items):
        self.gate.wait(5)
        self.batches.append(("encode", [a for a, *_ in items]))
        return [f"enc{len(a)}" for a, *_ in items]

    def decode_batch(self, items):
        self.gate.wait(5)
        self.batches.append(("decode", [it[1] for it in items]))
        return [f"text-{it[1]}" for it in items]


def _submit_async(stream, fn, *args, priority=INTERIM, **kwargs):
    out = {}

    def run():
        stream.priority = priority
        out["result"] = fn(*args, **kwargs)

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_same_shapes_batch_finals_first_and_results_go_back_to_their_callers():
    engine = FakeEngine()
    sched = InferenceScheduler(engine, max_batch=8)
    streams = [sched.for_stream() for _ in range(5)]
    blocker, _ = _submit_async(streams[0], streams[0].encode, [0.0] * 7)  # occupies the worker
    time.sleep(0.1)
    jobs = [
        _submit_async(streams[1], streams[1].decode, "e", "ja", beam_size=1),
        _submit_async(streams[2], streams[2].encode, [0.0] * 3),
        _submit_async(streams[3], streams[3].encode, [0.0] * 3),
        _submit_async(streams[4], streams[4].decode, "e", "en", beam_size=5, priority=FINAL),
    ]
    time.sleep(0.2)
    assert sched.load() == 4.0
    engine.gate.set()
    for t, _ in [(blocker, None), *jobs]:
        t.join(5)
    assert engine.batches[0] == ("encode", [[0.0] * 7])
    assert engine.batches[1] == ("decode", ["en"])  # the final overtakes older interim work
    assert ("encode", [[0.0] * 3, [0.0] * 3]) in engine.batches  # two streams, one batched call
    assert [out["result"] for _, out in jobs] == ["text-ja", "enc3", "enc3", "text-en"]
    sched.close()


def test_without_batching_every_call_runs_alone_and_errors_reach_the_caller():
    engine = FakeEngine()
    engine.gate.set()
    sched = InferenceScheduler(engine, batching=False)
    s = sched.for_stream()
    assert s.encode([0.0]) == "enc1"

    def broken(items):
        raise RuntimeError("model failed")

    engine.decode_batch = broken
    try:
        s.decode("e", "en")
    except RuntimeError as exc:
        assert "model failed" in str(exc)
    else:
        raise AssertionError("error not propagated")
    sched.close()


def test_others_busy_is_the_share_of_the_last_two_seconds_spent_on_other_streams():
    engine = FakeEngine()
    sched = InferenceScheduler(engine, max_batch=8)
    a, b = sched.for_stream(), sched.for_stream()
    assert a.others_busy() == b.others_busy() == 0.0
    running, _ = _submit_async(a, a.encode, [0.0] * 7)  # held by the gate for 0.4 s
    time.sleep(0.4)
    assert a.others_busy() == 0.0 and 0.18 <= b.others_busy() <= 0.5  # running so far: 0.4 s of 2 s
    engine.gate.set()
    running.join(5)
    assert a.others_busy() == 0.0 and 0.18 <= b.others_busy() <= 0.5  # finished, still within the 2 s
    sched.close()

"""Unit tests of admission control (admission.py) with fake meters, and of the scheduler's
per-stream accounting it reads."""

from __future__ import annotations

import threading
import time

import pytest

from services.asr.admission import Admission, AdmissionOptions, OverCapacity
from services.asr.scheduler import InferenceScheduler


def metered(admission: Admission, busy: float, audio: float):
    slot = admission.admit()
    slot.meter = lambda: (busy, audio)
    return slot


def test_the_first_stream_is_admitted_however_costly_and_a_young_one_counts_at_the_start_up_load():
    admission = Admission(AdmissionOptions(max_load=0.9), new_stream_load=1.5)
    first = admission.admit()  # alone: admitted though one stream costs more than the budget
    assert admission.load() == 1.5
    with pytest.raises(OverCapacity, match=r"1 open streams use 1.50 .* needs about 1.50"):
        admission.admit()
    admission.release(first)
    assert admission.open == 0 and admission.load() == 0
    admission.admit()


def test_a_settled_stream_counts_at_its_measured_load_and_a_young_one_at_the_start_up_load():
    admission = Admission(AdmissionOptions(max_load=0.9, settle_s=10), new_stream_load=0.3)
    metered(admission, busy=2.0, audio=9.0)  # under 10 s of audio: counts 0.3, not 0.22
    assert admission.load() == pytest.approx(0.3)
    metered(admission, busy=1.0, audio=20.0)  # settled: 0.05
    assert admission.load() == pytest.approx(0.35)
    admission.admit()  # 0.35 + 0.3 <= 0.9
    assert admission.load() == pytest.approx(0.65)
    with pytest.raises(OverCapacity, match="TANDEM_ASR_MAX_LOAD=0.9"):
        admission.admit()  # 0.65 + 0.3 > 0.9


def test_a_stream_that_turns_out_costly_keeps_new_ones_out():
    admission = Admission(AdmissionOptions(max_load=0.9, settle_s=10), new_stream_load=0.2)
    slot = admission.admit()
    admission.admit()
    busy = [0.0]
    slot.meter = lambda: (busy[0], 30.0)
    assert admission.load() == pytest.approx(0.2)  # measured 0 + young 0.2
    busy[0] = 18.0  # 0.6 of a worker: 0.8 in all, no room for 0.2 more
    with pytest.raises(OverCapacity):
        admission.admit()


def test_the_budget_scales_with_the_workers_and_max_load_zero_counts_streams_only():
    two = Admission(AdmissionOptions(max_load=0.9), new_stream_load=0.6, workers=2)
    two.admit(), two.admit(), two.admit()  # 1.8 <= 1.8
    with pytest.raises(OverCapacity):
        two.admit()
    count_only = Admission(AdmissionOptions(max_streams=3, max_load=0), new_stream_load=5.0)
    for _ in range(3):
        count_only.admit()
    with pytest.raises(OverCapacity, match=r"3 streams are open \(TANDEM_ASR_MAX_STREAMS=3\)"):
        count_only.admit()


class TimedEngine:
    """Each batched call takes `seconds`; the first waits for `gate`, so a queue can build up."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.gate = threading.Event()
        self.batch_sizes: list[int] = []

    def encode_batch(self, items):
        self.gate.wait(5)
        time.sleep(self.seconds)
        self.batch_sizes.append(len(items))
        return ["enc"] * len(items)


def test_the_scheduler_charges_each_stream_its_share_of_the_batches_it_was_in():
    engine = TimedEngine(0.2)
    sched = InferenceScheduler(engine, max_batch=8)
    a, b, c = sched.for_stream(), sched.for_stream(), sched.for_stream()
    threads = [threading.Thread(target=c.encode, args=([0.0],))]  # holds the worker at the gate
    threads[0].start()
    time.sleep(0.1)
    threads += [threading.Thread(target=s.encode, args=([0.0],)) for s in (a, b)]  # queued: one batch
    for t in threads[1:]:
        t.start()
    time.sleep(0.1)
    engine.gate.set()
    for t in threads:
        t.join()
    assert engine.batch_sizes == [1, 2]
    assert c.busy_seconds() >= 0.4  # the gate's wait and its own call
    assert a.busy_seconds() == pytest.approx(0.1, abs=0.04)  # half of the shared call each
    assert b.busy_seconds() == pytest.approx(0.1, abs=0.04)
    a.close()
    a.encode([0.0])  # a job that outlived its stream (a window or draft still running) is not charged
    assert a.busy_seconds() == 0 and b.busy_seconds() > 0
    sched.close()

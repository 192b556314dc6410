"""Unit tests of the catch-up policy (`LivePacing`) with a fake clock."""

from __future__ import annotations

import threading

from services.asr.pacing import LivePacing, PacingOptions


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_live_client_skips_interims_only_while_behind():
    clock = Clock()
    pacing = LivePacing(PacingOptions(max_backlog_s=0.5), clock)
    for _ in range(30):  # 3 s of audio in 0.1 s chunks, sent as it is spoken
        pacing.received(0.1)
        clock.now += 0.1
    assert pacing.live
    pacing.processed(2.6)  # the server is 0.4 s behind
    assert not pacing.skip_interim()
    pacing.received(0.1)
    pacing.received(0.1)  # 0.6 s behind
    assert pacing.skip_interim()
    pacing.processed(0.5)  # caught up
    assert not pacing.skip_interim()


def test_a_client_ahead_of_real_time_is_never_skipped():
    clock = Clock()
    pacing = LivePacing(PacingOptions(max_backlog_s=0.5, file_lead_s=0.5), clock)
    for _ in range(10):  # 1 s of audio at once: a file upload
        pacing.received(0.1)
    clock.now += 2.0
    assert not pacing.live
    assert not pacing.skip_interim()  # 4 s backlog, but it wants every window
    clock.now += 60.0  # ... and stays a file upload even when it later slows down
    pacing.received(0.1)
    assert not pacing.skip_interim()


def test_burst_after_a_stall_is_still_live():
    clock = Clock()
    pacing = LivePacing(PacingOptions(file_lead_s=0.5), clock)
    pacing.received(0.1)
    clock.now += 2.0  # network stall, then the delayed audio arrives at once
    for _ in range(20):
        pacing.received(0.1)
    assert pacing.live and pacing.skip_interim()


def test_nothing_is_skipped_during_probation():
    clock = Clock()
    pacing = LivePacing(PacingOptions(max_backlog_s=0.5, probation_s=2.0), clock)
    pacing.received(0.1)
    clock.now += 1.0
    pacing.received(0.9)  # 0.9 s behind, but the pace is not known yet
    assert not pacing.skip_interim()
    clock.now += 1.0
    assert pacing.skip_interim()


def test_reader_waits_for_room_and_is_released_by_close():
    pacing = LivePacing(PacingOptions(max_buffer_s=1.0), Clock())
    pacing.received(2.0)
    results = []
    reader = threading.Thread(target=lambda: results.append(pacing.wait_for_room()))
    reader.start()
    reader.join(0.1)
    assert reader.is_alive()  # 2 s unprocessed > 1 s buffer
    pacing.processed(1.5)
    reader.join(2)
    assert results == [True]
    pacing.received(5.0)
    reader = threading.Thread(target=lambda: results.append(pacing.wait_for_room()))
    reader.start()
    pacing.close()
    reader.join(2)
    assert results == [True, False]

"""Unit tests of the catch-up policy (`LivePacing`) with a fake clock."""

from __future__ import annotations

import threading

from services.asr.pacing import LivePacing, PacingOptions

OPTIONS = PacingOptions(text_backlog_s=0.5, probe_backlog_s=2.0, file_lead_s=0.5, probation_s=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def live_for(pacing, clock, seconds):
    for _ in range(round(seconds * 10)):  # 0.1 s chunks, sent as they are spoken
        pacing.received(0.1)
        clock.now += 0.1


def test_a_live_client_behind_drops_interim_text_then_the_whole_window():
    clock = Clock()
    pacing = LivePacing(OPTIONS, clock)
    live_for(pacing, clock, 3.0)
    assert pacing.live
    pacing.processed(2.6)  # the server is 0.4 s behind
    assert pacing.interim_work() == "text"
    pacing.received(0.1)
    pacing.received(0.1)  # 0.6 s behind
    assert pacing.interim_work() == "probe"
    pacing.received(1.5)  # 2.1 s behind
    assert pacing.interim_work() == "none"
    pacing.processed(1.8)  # caught up
    assert pacing.interim_work() == "text"


def test_a_client_ahead_of_real_time_gets_every_window():
    clock = Clock()
    pacing = LivePacing(OPTIONS, clock)
    for _ in range(10):  # 1 s of audio at once: a file upload
        pacing.received(0.1)
    clock.now += 2.0
    assert not pacing.live
    assert pacing.interim_work() == "text"  # 1 s backlog, but it wants every window
    clock.now += 60.0  # ... and stays a file upload even when it later slows down
    pacing.received(0.1)
    assert pacing.interim_work() == "text"


def test_burst_after_a_stall_is_still_live():
    clock = Clock()
    pacing = LivePacing(OPTIONS, clock)
    pacing.received(0.1)
    clock.now += 2.0  # network stall, then the delayed audio arrives at once
    for _ in range(15):
        pacing.received(0.1)
    assert pacing.live and pacing.interim_work() == "probe"


def test_nothing_is_dropped_during_probation():
    clock = Clock()
    pacing = LivePacing(OPTIONS, clock)
    pacing.received(0.1)
    clock.now += 1.0
    pacing.received(0.9)  # 1 s behind, but the pace is not known yet
    assert pacing.interim_work() == "text"
    clock.now += 1.0
    assert pacing.interim_work() == "probe"


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


def test_a_live_stream_rests_between_interim_windows_for_its_duty_cycle():
    clock = Clock()
    pacing = LivePacing(PacingOptions(interim_duty=0.5, probation_s=2.0), clock)
    live_for(pacing, clock, 3.0)
    pacing.processed(3.0)
    assert pacing.interim_work() == "text"
    pacing.worked(0.8)  # a window took 0.8 s: at most half the time, so no window for 0.8 s
    clock.now += 0.7
    assert pacing.resting and pacing.interim_work() == "none"
    clock.now += 0.2
    assert not pacing.resting and pacing.interim_work() == "text"


def test_uploads_and_duty_one_never_rest():
    clock = Clock()
    upload = LivePacing(PacingOptions(interim_duty=0.5), clock)
    for _ in range(10):  # 5 s of audio at once: a file upload, not live
        upload.received(0.5)
    upload.processed(5.0)
    clock.now += 3.0
    upload.worked(2.0)
    assert upload.interim_work() == "text"
    clock = Clock()
    unlimited = LivePacing(PacingOptions(interim_duty=1.0), clock)
    live_for(unlimited, clock, 3.0)
    unlimited.processed(3.0)
    unlimited.worked(2.0)
    assert unlimited.interim_work() == "text"


def test_a_suspected_switch_skips_the_rest_but_not_the_catch_up():
    clock = Clock()
    pacing = LivePacing(PacingOptions(interim_duty=0.5), clock)
    live_for(pacing, clock, 3.0)
    pacing.processed(3.0)
    pacing.worked(1.0)
    assert pacing.interim_work() == "none" and pacing.interim_work(urgent=True) == "text"
    pacing.received(2.5)  # 2.5 s behind
    assert pacing.interim_work(urgent=True) == "none"


def test_a_slow_background_window_makes_the_next_one_probe_only_as_a_backlog_would():
    """With windows run beside the stream, the stream keeps up however slow they are: how stale
    the last window's result was (its wall time) stands for the backlog an inline one leaves."""
    clock = Clock()
    pacing = LivePacing(OPTIONS, clock)
    live_for(pacing, clock, 3.0)
    pacing.processed(3.0)  # no backlog
    pacing.window_took(0.8)
    assert pacing.interim_work() == "probe"
    pacing.window_took(3.0)  # never "none": only a backlog stops windows
    assert pacing.interim_work() == "probe"
    pacing.window_took(0.3)
    assert pacing.interim_work() == "text"

    uploading = LivePacing(OPTIONS, clock)  # not live: nothing dropped
    uploading.received(10.0)
    uploading.window_took(3.0)
    assert uploading.interim_work() == "text"

"""Unit tests of the benchmark metrics on hand-made traces (no servers)."""

from __future__ import annotations

from pathlib import Path

from bench import metrics
from bench.manifest import Entry, RefSegment
from bench.runner import Trace
from tandem.session.v1 import session_pb2


def _segment(seg_id, lang, start, end, text, final=True):
    seg = session_pb2.Segment(segment_id=seg_id, is_final=final, language_code=lang, text=text)
    seg.start_offset.FromNanoseconds(int(start * 1e9))
    seg.end_offset.FromNanoseconds(int(end * 1e9))
    return session_pb2.StreamSessionResponse(segment=seg)


ENTRY = Entry("s", Path("x.wav"), ("ja", "en"), (
    RefSegment(0.3, 3.5, "ja", "水を買う"),
    RefSegment(4.3, 6.3, "en", "four queen of clubs"),
), True)


def test_perfect_trace_scores_perfectly():
    trace = Trace(ENTRY, realtime=True, responses=[
        (1.0, _segment(1, "ja", 0.3, 1.0, "水", final=False)),
        (4.1, _segment(1, "ja", 0.3, 3.6, "水を買う")),
        (5.0, _segment(2, "en", 4.3, 5.0, "four", final=False)),
        (6.9, _segment(2, "en", 4.3, 6.4, "Four queen of clubs.")),
    ])
    s = metrics.summarize([trace])
    assert s["error_rate"] == {"en": 0.0, "ja": 0.0}
    assert s["language_attribution"] == 1.0
    assert s["final_latency_s"]["n"] == 2 and abs(s["final_latency_s"]["p50"] - 0.6) < 1e-6
    assert abs(s["first_result_latency_s"]["p50"] - 0.7) < 1e-6  # (1.0-0.3 + 5.0-4.3) / 2
    assert s["switch"]["first_result_latency_s"]["p50"] == 5.0 - 4.3
    assert s["flaps"] == 0 and s["spurious_switches"] == 0


def test_wrong_language_and_flap_are_counted():
    trace = Trace(ENTRY, realtime=False, responses=[
        (4.0, _segment(1, "ja", 0.3, 1.5, "水を")),
        (4.1, _segment(2, "en", 1.5, 2.5, "war")),  # spurious switch inside the ja segment, reverted: a flap
        (4.2, _segment(3, "ja", 2.5, 3.6, "買う")),
        (7.0, _segment(4, "en", 4.3, 6.4, "four queen of clubs")),
    ])
    s = metrics.summarize([trace])
    assert s["flaps"] == 1 and s["spurious_switches"] >= 1
    assert 0.5 < s["language_attribution"] < 1.0
    assert s["final_latency_s"]["n"] == 0  # fast mode: no latency figures


def test_missing_finals_cost_error_rate_and_attribution():
    trace = Trace(ENTRY, realtime=False, responses=[(7.0, _segment(1, "en", 4.3, 6.4, "four queen of clubs"))])
    s = metrics.summarize([trace])
    assert s["error_rate"]["ja"] == 1.0 and s["error_rate"]["en"] == 0.0
    assert s["language_attribution"] == 4 / (4 + 4)

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


def _peer_ramp(*p95s, never=0):
    return [{"n": n, "p95_s": p95, "p50_s": p95, "errors": 0, "never_final": never if n == 1 else 0}
            for n, p95 in enumerate(p95s, start=1)]


def test_peer_capacity_counts_up_to_the_first_step_over_the_bound():
    from bench.peers import run_peers

    ramp = _peer_ramp(1.2, 1.4, 1.7, 1.45, 6.0)  # N = 4 back under 1.5 s by noise does not count
    assert run_peers.capacity(ramp, 1.5) == 2
    assert run_peers.capacity(ramp, 10.0) == 5
    assert run_peers.capacity(_peer_ramp(None), 10.0) == 0  # a segment never final: no p95
    ramp[1]["errors"] = 1
    assert run_peers.capacity(ramp, 10.0) == 1  # a failed stream ends the count


def _ours(label, p95s, bound=1.5, loose=10.0):
    steps = [{"streams": n, "final_latency_s": {"p50": p / 2, "p95": p}, "errors": []} for n, p in p95s]
    within = lambda limit: max([n for n, p in p95s if p <= limit], default=0)  # noqa: E731
    return {"label": label, "bound_s": bound, "loose_bound_s": loose, "steps": steps,
            "max_streams_within_bound": within(bound), "max_streams_within_loose_bound": within(loose),
            "loose_bound_exceeded": any(p > loose for _, p in p95s)}


def test_capacity_table_compares_our_default_with_the_best_peer_at_both_bounds():
    from bench import load

    results = [_ours("ct2", [(1, 0.6), (6, 1.4), (8, 1.7), (10, 1.9)]), _ours("torch", [(1, 1.7), (2, 12.0)])]
    peers = {"simul": {"max_realtime_streams": 0, "max_streams_within_loose_bound": 2, "loose_bound_exceeded": True,
                       "concurrency_ramp": _peer_ramp(8.1, 9.5, 14.0)},
             "wl": {"max_realtime_streams": 0, "max_streams_within_loose_bound": 0,
                    "concurrency_ramp": _peer_ramp(None, never=5)},
             "broken": {"failure": "RuntimeError: no venv"}}
    table = load.capacity_table(results, peers, "this run")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("|")}
    assert rows["Tandem ct2"].endswith("| 6 | 10 (or more: every step held it) |")
    assert rows["Tandem torch"].endswith("| 0 | 1 |")
    assert "never / never, 5 segments never final" in rows["wl (this run)"]
    assert "failed: RuntimeError" in rows["broken (this run)"]
    assert "- p95 ≤ 1.5 s: Tandem ct2 6 streams, the best peer 0: no ratio (the peers hold none)" in table
    assert "- p95 ≤ 10 s: Tandem ct2 10 or more streams, the best peer 2: 5.0× or more" in table
    peers["simul"]["loose_bound_exceeded"] = False  # its ramp stopped (budget) while within: a floor too
    table = load.capacity_table(results, peers, "this run")
    assert "| 0 | 2 (or more: its ramp stopped within it) |" in table
    assert "- p95 ≤ 10 s: Tandem ct2 10 or more streams, the best peer 2 or more: no ratio (both counts are floors)" in table
    results[0]["loose_bound_exceeded"] = True
    assert "the best peer 2 or more: 5.0× or less" in load.capacity_table(results, peers, "this run")

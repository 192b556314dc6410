"""Smoke tests of the benchmark commands (their --quick variants) on the real stack."""

from __future__ import annotations

import json

import pytest

from bench import eval as bench_eval
from bench import load as bench_load

pytestmark = pytest.mark.integration


def test_eval_quick_writes_report_and_timelines(stack, eval_dir, tmp_path):
    rc = bench_eval.main(["--quick", "--fast", "--no-ablations", "--target", stack.session.address,
                          "--manifest", str(eval_dir / "streams.jsonl"), "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    streaming, offline = report["streaming"], report["offline"]
    assert report["mode"] == "fast" and report["entries"] == 2
    assert set(streaming["error_rate"]) == {"ja", "en"}
    assert 0.5 <= streaming["language_attribution"] <= 1.0
    assert offline["language_id_accuracy"] == 1.0 and offline["error_rate"]["en"] < 0.3
    assert set(report["gap_relative"]) == {"ja", "en"}
    assert sorted(p.name for p in tmp_path.glob("timeline-*.png")) == [
        "timeline-ja-en_A-B_pause.png", "timeline-ja-en_B-A-B_immediate.png"]


def test_load_quick_reports_a_capacity(eval_dir, tmp_path):
    result = bench_load.run_load(eval_dir / "streams.jsonl", steps=[1], bound=1.5, max_seconds=120, per_session=1)
    step = result["steps"][0]
    assert step["streams"] == 1 and not step["errors"]
    assert step["final_latency_s"]["n"] >= 2 and step["real_time_factor"] > 0
    (transcript,) = step["transcripts"]  # what the one stream got, for diagnosis
    assert len(transcript["finals"]) >= 2 and all(f["text"] and f["language"] for f in transcript["finals"])
    assert result["max_streams_within_bound"] in (0, 1)

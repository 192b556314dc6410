"""Pure metrics over recorded traces (see README, Benchmarks, for the definitions).

- error rate: finals are attributed to the reference segment they overlap most; edits and
  reference tokens are summed per language (WER en/vi, CER ja/zh/ko; clients/scoring).
- language attribution: each reference token is placed uniformly inside its segment; it is
  right when the final covering that instant (or the nearest within 0.5 s) has its language.
- final latency: per reference segment, arrival of the last final attributed to it minus
  the segment's end (end of speech) on the stream clock.
- first partial: per reference segment, arrival of the first result overlapping it minus its start.
- switch: for a reference segment whose language differs from the previous one, arrival of
  the first result / first final in the new language overlapping it minus its start. The
  overhead is the median final latency of segments that end at a switch (the next segment
  is in the other language) minus that of the others (clips, last segments of streams).
- flaps: a committed language change (between consecutive finals) that reverts within 3 s;
  spurious switches: changes where the reference language at both finals' midpoints is equal.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics

import numpy as np

from bench.manifest import Entry, RefSegment
from clients.scoring import edit_distance, tokens


def seconds(duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def _base(code: str) -> str:
    return code.split("-")[0].lower()


@dataclasses.dataclass(frozen=True)
class Final:
    segment_id: int
    language: str
    start_s: float
    end_s: float
    text: str
    arrival_s: float


def finals_of(responses) -> list[Final]:
    out = []
    for arrival, r in responses:
        if r.WhichOneof("event") == "segment" and r.segment.is_final and r.segment.text:
            s = r.segment
            out.append(Final(s.segment_id, s.language_code, seconds(s.start_offset), seconds(s.end_offset),
                             s.text, arrival))
    return out


def results_of(responses):
    return [(arrival, r.segment) for arrival, r in responses if r.WhichOneof("event") == "segment" and r.segment.text]


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def attribute(finals: list[Final], refs: tuple[RefSegment, ...]) -> dict[int, list[Final]]:
    by_ref: dict[int, list[Final]] = collections.defaultdict(list)
    for f in finals:
        overlaps = [_overlap(f.start_s, f.end_s, r.start_s, r.end_s) for r in refs]
        best = int(np.argmax(overlaps))
        if overlaps[best] > 0:
            by_ref[best].append(f)
    return by_ref


def error_counts(entry: Entry, finals: list[Final]) -> dict[str, list[int]]:
    """language -> [edits, reference tokens]."""
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    by_ref = attribute(finals, entry.segments)
    for i, ref in enumerate(entry.segments):
        lang = _base(ref.language)
        hyp = " ".join(f.text for f in by_ref.get(i, []))
        ref_tokens = tokens(ref.text, lang)
        counts[lang][0] += edit_distance(ref_tokens, tokens(hyp, lang))
        counts[lang][1] += len(ref_tokens)
    return counts


def attribution(entry: Entry, finals: list[Final]) -> tuple[int, int]:
    """(reference tokens whose covering final has the right language, all reference tokens)."""
    right = total = 0
    for ref in entry.segments:
        n = len(tokens(ref.text, _base(ref.language)))
        for k in range(n):
            t = ref.start_s + (k + 0.5) * (ref.end_s - ref.start_s) / n
            covering = [f for f in finals if f.start_s <= t <= f.end_s]
            if not covering:
                near = [f for f in finals if min(abs(f.start_s - t), abs(f.end_s - t)) <= 0.5]
                covering = sorted(near, key=lambda f: min(abs(f.start_s - t), abs(f.end_s - t)))[:1]
            total += 1
            right += bool(covering) and _base(covering[0].language) == _base(ref.language)
    return right, total


def final_latencies(entry: Entry, finals: list[Final]) -> list[tuple[int, float]]:
    by_ref = attribute(finals, entry.segments)
    return [(i, max(f.arrival_s for f in by_ref[i]) - ref.end_s) for i, ref in enumerate(entry.segments) if by_ref.get(i)]


def first_result_latencies(entry: Entry, responses) -> list[float]:
    out = []
    results = results_of(responses)
    for ref in entry.segments:
        arrivals = [a for a, s in results
                    if _overlap(seconds(s.start_offset), seconds(s.end_offset), ref.start_s, ref.end_s) > 0]
        if arrivals:
            out.append(min(arrivals) - ref.start_s)
    return out


def switch_latencies(entry: Entry, responses, finals: list[Final]) -> list[dict]:
    out = []
    results = results_of(responses)
    for i in range(1, len(entry.segments)):
        ref, prev = entry.segments[i], entry.segments[i - 1]
        if _base(ref.language) == _base(prev.language):
            continue
        lang = _base(ref.language)
        partial = [a for a, s in results if _base(s.language_code) == lang
                   and _overlap(seconds(s.start_offset), seconds(s.end_offset), ref.start_s, ref.end_s) > 0]
        final = [f.arrival_s for f in finals if _base(f.language) == lang
                 and _overlap(f.start_s, f.end_s, ref.start_s, ref.end_s) > 0]
        out.append({"segment": i, "switch_at_s": ref.start_s,
                    "first_result_s": (min(partial) - ref.start_s) if partial else None,
                    "first_final_s": (min(final) - ref.start_s) if final else None})
    return out


def _ref_language_at(entry: Entry, t: float) -> str | None:
    for ref in entry.segments:
        if ref.start_s - 0.3 <= t <= ref.end_s + 0.3:
            return _base(ref.language)
    return None


def flaps(entry: Entry, finals: list[Final], window_s: float = 3.0) -> tuple[int, int]:
    """(changes that revert within window_s, changes where the reference has none)."""
    ordered = sorted(finals, key=lambda f: f.start_s)
    flap = spurious = 0
    reverts: set[int] = set()  # the change back after a flap is part of that flap
    for k in range(1, len(ordered)):
        a, b = ordered[k - 1], ordered[k]
        if _base(a.language) == _base(b.language):
            continue
        ra, rb = _ref_language_at(entry, (a.start_s + a.end_s) / 2), _ref_language_at(entry, (b.start_s + b.end_s) / 2)
        if ra is not None and ra == rb:
            spurious += 1
        if k in reverts:
            continue
        run_end = b.end_s  # does the new language revert within window_s?
        for j in range(k + 1, len(ordered)):
            c = ordered[j]
            if _base(c.language) != _base(b.language):
                if _base(c.language) == _base(a.language) and run_end - b.start_s < window_s:
                    flap += 1
                    reverts.add(j)
                break
            run_end = c.end_s
    return flap, spurious


def percentiles(values) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"p50": None, "p95": None, "mean": None, "n": 0}
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "mean": float(statistics.fmean(values)), "n": len(values)}


def summarize(traces) -> dict:
    """Aggregate metrics of several traces (one run of the live stack)."""
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    right = total = flap_n = spurious_n = 0
    final_lat, first_lat, before_switch, ordinary = [], [], [], []
    switches, translation_lat = [], []
    translation_errors: collections.Counter = collections.Counter()
    per_entry = []
    for tr in traces:
        fin = finals_of(tr.responses)
        for lang, (e, n) in error_counts(tr.entry, fin).items():
            counts[lang][0] += e
            counts[lang][1] += n
        r, t = attribution(tr.entry, fin)
        right, total = right + r, total + t
        f, s = flaps(tr.entry, fin)
        flap_n, spurious_n = flap_n + f, spurious_n + s
        sw = switch_latencies(tr.entry, tr.responses, fin)
        ends_at_switch = {x["segment"] - 1 for x in sw}
        lat = final_latencies(tr.entry, fin) if tr.realtime else []
        for i, v in lat:
            final_lat.append(v)
            (before_switch if i in ends_at_switch else ordinary).append(v)
        if tr.realtime:
            first_lat += first_result_latencies(tr.entry, tr.responses)
            switches += sw
        for _, tl in tr.events("translation"):
            if tl.error.code:
                translation_errors[_code_name(tl.error.code)] += 1
            else:
                translation_lat.append(seconds(tl.latency))
        per_entry.append({
            "id": tr.entry.id, "error": tr.error, "wall_s": round(tr.wall_s, 3),
            "finals": [dataclasses.asdict(x) for x in fin],
            "attribution": (r / t) if t else None, "flaps": f, "spurious_switches": s, "switches": sw,
            "final_latency_s": [v for _, v in lat],
        })
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    overhead = (med(before_switch) - med(ordinary)) if before_switch and ordinary else None
    return {
        "error_rate": {lang: e / n for lang, (e, n) in sorted(counts.items()) if n},
        "reference_tokens": {lang: n for lang, (_, n) in sorted(counts.items())},
        "language_attribution": (right / total) if total else None,
        "final_latency_s": percentiles(final_lat),
        "first_result_latency_s": percentiles(first_lat),
        "switch": {
            "first_result_latency_s": percentiles([x["first_result_s"] for x in switches]),
            "first_final_latency_s": percentiles([x["first_final_s"] for x in switches]),
            "final_latency_at_switch_s": percentiles(before_switch),
            "final_latency_ordinary_s": percentiles(ordinary),
            "overhead_s": overhead,
        },
        "flaps": flap_n,
        "spurious_switches": spurious_n,
        "translation_latency_s": percentiles(translation_lat),
        "translation_errors": dict(translation_errors),
        "entries": per_entry,
    }


def _code_name(code: int) -> str:
    from google.rpc import code_pb2

    return code_pb2.Code.Name(code) if code in code_pb2.Code.values() else str(code)

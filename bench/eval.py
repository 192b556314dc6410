"""`make eval`: stream a manifest through the live stack and score it against the offline ceiling.

    python -m bench.eval [--manifest PATH ...] [--fast] [--quick] [--target HOST:PORT] [--out reports]

Without --target it starts the three services locally (clients.local_stack). Prints a
Markdown table, writes <out>/eval.json (keys: README, Benchmarks) and <out>/timeline-<id>.png
for every code-switched stream.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import grpc

from bench import manifest as manifest_mod
from bench import metrics, offline, plots, runner
from clients.local_stack import LocalStack
from services.common.settings import default_model_dir

DEFAULT_MANIFESTS = ["../shared/eval/streams.jsonl", "../shared/eval/manifest.jsonl"]


def _fmt(value, digits=3, unit="") -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}{unit}"


def evaluate(target: str, entries, realtime: bool, log) -> tuple[list, float]:
    traces = []
    t0 = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        for entry in entries:
            trace = runner.run(channel, entry, realtime=realtime)
            print(f"  {entry.id}: {len(metrics.finals_of(trace.responses))} finals in {trace.wall_s:.1f} s"
                  f"{' ERROR ' + trace.error if trace.error else ''}", file=log, flush=True)
            traces.append(trace)
    return traces, time.monotonic() - t0


def markdown(streaming: dict, ceiling: dict | None) -> str:
    lines = ["| measure | Tandem streaming | offline ceiling | gap |", "|---|---|---|---|"]
    for lang, rate in streaming["error_rate"].items():
        off = (ceiling or {}).get("error_rate", {}).get(lang)
        gap = f"{(rate - off) / off:+.0%}" if off else "–"
        kind = "WER" if lang in ("en", "vi") else "CER"
        lines.append(f"| {kind} {lang} | {rate:.3f} | {_fmt(off)} | {gap} |")
    lid = (ceiling or {}).get("language_id_accuracy")
    lines.append(f"| language attribution (tokens) | {_fmt(streaming['language_attribution'])} | "
                 f"{_fmt(lid)} (segment LID) | |")
    fl, fr, sw = streaming["final_latency_s"], streaming["first_result_latency_s"], streaming["switch"]
    lines += [
        f"| end of speech → final p50 / p95 (s) | {_fmt(fl['p50'], 2)} / {_fmt(fl['p95'], 2)} (n={fl['n']}) | | |",
        f"| onset → first partial p50 (s) | {_fmt(fr['p50'], 2)} (n={fr['n']}) | | |",
        f"| switch → first result in new language p50 (s) | {_fmt(sw['first_result_latency_s']['p50'], 2)} | | |",
        f"| final latency at a switch / ordinary p50 (s) | {_fmt(sw['final_latency_at_switch_s']['p50'], 2)} / "
        f"{_fmt(sw['final_latency_ordinary_s']['p50'], 2)} | | |",
        f"| switch overhead (s) | {_fmt(sw['overhead_s'], 2)} | | |",
        f"| flaps / spurious switches | {streaming['flaps']} / {streaming['spurious_switches']} | | |",
        f"| translation latency p50 / p95 (s) | {_fmt(streaming['translation_latency_s']['p50'], 2)} / "
        f"{_fmt(streaming['translation_latency_s']['p95'], 2)} (n={streaming['translation_latency_s']['n']}) | | |",
        f"| translation errors | {streaming['translation_errors'] or 'none'} | | |",
    ]
    return "\n".join(lines)


def run_eval(manifests: list[Path], realtime: bool, quick: bool, target: str | None, out: Path,
             model_dir: Path, env: dict[str, str] | None = None, with_offline: bool = True,
             with_ablations: bool = True, log=sys.stderr) -> dict:
    from bench import ablations

    entries = []
    for m in manifests:
        loaded = manifest_mod.load(m)
        entries += loaded[:2] if quick else loaded
    out.mkdir(parents=True, exist_ok=True)
    if target:
        traces, elapsed = evaluate(target, entries, realtime, log)
        phrase_rows = ablations.phrase_bias(entries, target, log)
    else:
        with LocalStack(log=log, label="eval", env=env) as stack:
            traces, elapsed = evaluate(stack.session_address, entries, realtime, log)
            phrase_rows = ablations.phrase_bias(entries, stack.session_address, log)
    ablation_rows = []
    if with_ablations and not target:
        streams = [e for e in entries if e.is_stream]
        clips = [e for e in entries if not e.is_stream]
        ablation_rows = ablations.run(streams, clips, log, rows=["all on", "no universal padding"] if quick else None)
    streaming = metrics.summarize(traces)
    ceiling = offline.run(entries, model_dir) if with_offline else None
    for trace in traces:
        if trace.entry.is_stream:
            plots.timeline(trace, metrics.finals_of(trace.responses), out / f"timeline-{trace.entry.id}.png")
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "manifests": [str(m) for m in manifests],
        "mode": "realtime" if realtime else "fast",
        "entries": len(entries),
        "audio_s": round(sum(e.duration_s for e in entries), 3),
        "elapsed_s": round(elapsed, 3),
        "streaming": streaming,
        "offline": ceiling,
        "ablations": ablation_rows,
        "phrase_biasing": phrase_rows,
        "gap_relative": {lang: (rate - ceiling["error_rate"][lang]) / ceiling["error_rate"][lang]
                         for lang, rate in streaming["error_rate"].items()
                         if ceiling and ceiling["error_rate"].get(lang)},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", action="append", type=Path,
                        help="manifest(s) in the ../shared/eval format (default: its streams and clips)")
    parser.add_argument("--fast", action="store_true", help="send audio as fast as possible (no latency figures)")
    parser.add_argument("--quick", action="store_true", help="two entries per manifest (smoke test)")
    parser.add_argument("--target", help="an already running SessionService (default: start one locally)")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--no-offline", action="store_true", help="skip the offline ceiling")
    parser.add_argument("--no-ablations", action="store_true", help="skip the per-mechanism ablation rows")
    args = parser.parse_args(argv)
    manifests = args.manifest or [Path(m) for m in DEFAULT_MANIFESTS]
    for m in manifests:
        if not m.exists():
            parser.error(f"{m}: no such manifest")
    report = run_eval(manifests, not args.fast, args.quick, args.target, args.out, default_model_dir(),
                      with_offline=not args.no_offline, with_ablations=not args.no_ablations)
    (args.out / "eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\n{report['entries']} entries, {report['audio_s']:.1f} s of audio, {report['mode']}, "
          f"{report['elapsed_s']:.1f} s\n")
    print(markdown(report["streaming"], report["offline"]))
    from bench import ablations

    if report["ablations"]:
        print("\nAblations (fast mode; streams, clips < 4 s, synthetic non-speech):\n")
        print(ablations.markdown(report["ablations"]))
    if report["phrase_biasing"]:
        print("\nPhrase biasing (error rate of the clip without / with its phrase list):\n")
        print(ablations.phrase_markdown(report["phrase_biasing"]))
    print(f"\nwrote {args.out / 'eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

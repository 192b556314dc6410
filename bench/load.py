"""`make load`: N concurrent real-time sessions against the live stack, N stepped up.

    python -m bench.load [--manifest streams.jsonl] [--steps 1,2,3,4,6,8] [--configs ct2,ct2-nobatch]
                         [--quick] [--out reports]

Every session streams code-switched streams at real-time pace, one after another
(`--streams-per-session`, so each step rests on enough finals for a p95; staggered starts,
translation on). Per N: end of speech → final latency p50/p95 over all sessions, the ASR's real-time
factor (inference seconds / audio seconds, from its Prometheus endpoint), the CPU used by
the three service processes and the latency from a final to its translation. Reports the
largest N whose p95 stays within --bound (1.5 s), over all finals (the target's measure) and
over the finals that do not end at a language switch (whose latency is queueing, not the
switch's detection). Stops stepping after two steps whose ordinary finals are over the bound.
Loopback only; bounded by --max-seconds.

Admission by load is off (TANDEM_ASR_MAX_LOAD=0) so that every offered stream is served and
measured, except in `ct2-admit`: there it is on as by default, the steps run N = 2..4 sessions
only, and the rows count the streams refused (RESOURCE_EXHAUSTED) apart; latency and error
rates are those of the admitted streams.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc

from bench import manifest as manifest_mod
from bench import metrics, plots, runner
from clients.local_stack import LocalStack

CLK = os.sysconf("SC_CLK_TCK")
# Stack configurations that can be compared in one run (environment of the services).
CONFIGS = {
    "ct2": {},
    "ct2-nobatch": {"TANDEM_ASR_BATCHING": "false"},
    "ct2-unprimed": {"TANDEM_ASR_PRIME": "false"},  # without the CPU priming of engine._load_ct2_whisper
    "ct2-nocatchup": {"TANDEM_ASR_CATCH_UP_TEXT_S": "0", "TANDEM_ASR_CATCH_UP_PROBE_S": "0"},  # every window (pacing.py)
    "ct2-duty": {"TANDEM_ASR_INTERIM_DUTY": "0.5"},  # interim windows rest half the time (pacing.py)
    "ct2-nopauseinterims": {"TANDEM_ASR_INTERIM_IN_PAUSES": "false"},  # no interim windows in pauses (stream.py)
    "ct2-lean": {"TANDEM_ASR_INTERIM_DUTY": "0.5", "TANDEM_ASR_INTERIM_IN_PAUSES": "false"},  # both
    "ct2-norecheck": {"TANDEM_ASR_PROBE_RECHECK_ABOVE": "0"},  # unsure probes not re-checked (stream.py)
    "ct2-speculate": {"TANDEM_ASR_SPECULATE_BELOW_BUSY": "2"},  # finals decoded ahead in pauses whatever the load
    "ct2-speculate25": {"TANDEM_ASR_SPECULATE_BELOW_BUSY": "0.25"},  # ... only below a quarter busy (until 2026-11-25)
    "ct2-head": {"TANDEM_ASR_HEAD_DRAFTS": "true"},  # a suspected switch's head final decoded ahead (stream.py)
    "ct2-probe5": {"TANDEM_ASR_PROBE_QUANTUM_S": "5"},  # interim windows of 3 s and more padded to 5 s, not 10 s
    "ct2-late": {"TANDEM_ASR_SPECULATE_AFTER_S": "0.3"},  # finals decoded ahead 0.3 s into a pause, not 0.15
    "ct2-nogaps": {"TANDEM_ASR_PROBE_GAPS": "false"},  # spaced-out windows probe only their tail (stream.py)
    "ct2-noonset": {"TANDEM_ASR_ONSET_PROBE_S": "0"},  # no onset probes after VAD dips (stream.py)
    "ct2-noscan": {"TANDEM_ASR_FINAL_SWITCH_SCAN": "off"},  # no switch scan at finals (stream.py)
    "ct2-inline": {"TANDEM_ASR_BACKGROUND_WINDOWS": "false"},  # interim windows block VAD and finals (servicer.py)
    "ct2-greedy": {"TANDEM_ASR_BEAM_SIZE": "1"},  # greedy finals
    "ct2-beam5": {"TANDEM_ASR_LONG_FINAL_BEAM": "0"},  # finals over 6 s keep beam 5 (not 2)
    "ct2-2threads": {"TANDEM_ASR_INFERENCE_THREADS": "2", "TANDEM_ASR_INTRA_THREADS": "1"},  # (the default)
    "ct2-1thread": {"TANDEM_ASR_INFERENCE_THREADS": "1", "TANDEM_ASR_INTRA_THREADS": "2"},  # the default until 2026-11-25
    "ct2-2workers": {"TANDEM_ASR_INTRA_THREADS": "1"},  # with asr_workers=2 (below)
    "ct2-translate2": {"TANDEM_TRANSLATE_INTRA_THREADS": "2"},  # translation on 2 threads (the default until 2026-11-25)
    "torch": {"TANDEM_ASR_ENGINE": "torch"},
    "ct2-admit": {"TANDEM_ASR_MAX_LOAD": "0.9"},  # admission by measured load, as by default (admission.py)
}
# Configurations that differ on the client's side: its sessions' RecognitionConfig.
CLIENT = {"ct2-finals": {"interim_results": False}}  # finals only: probe-only windows (stream.py)
CONFIGS["ct2-finals"] = {}
ADMISSION_STEPS = {"ct2-admit": (2, 4)}  # the offered N it runs (of --steps)
WORKERS = {"ct2-2workers": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for name in ("asr_inference_seconds_sum", "asr_audio_seconds_total"):
        m = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / CLK


def step(target: str, entries, n: int, metrics_port: int, pids: list[int], rng: random.Random,
         per_session: int = 3, client: dict | None = None) -> dict:
    before, cpu0, t0 = scrape(metrics_port), cpu_seconds(pids), time.monotonic()
    traces: list = [None] * (n * per_session)
    delays = [rng.uniform(0, 1.0) for _ in range(n)]

    def one(i: int) -> None:  # session i plays streams i*per_session ... one after another
        time.sleep(delays[i])
        with grpc.insecure_channel(target) as channel:
            for j in range(per_session):
                k = i * per_session + j
                traces[k] = runner.run(channel, entries[k % len(entries)], realtime=True, **(client or {}))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    after, cpu1 = scrape(metrics_port), cpu_seconds(pids)
    refused = [tr for tr in traces if tr.error.startswith("RESOURCE_EXHAUSTED")]
    traces = [tr for tr in traces if tr not in refused]
    per_final = [(tr.entry.id, i, v) for tr in traces for i, v in metrics.final_latencies(tr.entry, metrics.finals_of(tr.responses))]
    summary = metrics.summarize(traces)  # the same measures as `make eval`, under this load
    audio = after["asr_audio_seconds_total"] - before["asr_audio_seconds_total"]
    return {
        "streams": n,
        "finals": len(per_final),
        "refused": len(refused),  # streams refused by admission control; the figures are the others'
        "refused_reason": refused[0].error if refused else None,
        "final_latency_s": summary["final_latency_s"],
        # finals of segments that end at a language switch (their latency is mostly the switch's
        # detection, which needs speech of the new language) and the others (mostly queueing)
        "final_latency_at_switch_s": summary["switch"]["final_latency_at_switch_s"],
        "final_latency_ordinary_s": summary["switch"]["final_latency_ordinary_s"],
        "first_result_latency_s": summary["first_result_latency_s"],
        "translation_latency_s": summary["translation_latency_s"],  # final -> its translation (zh/en here)
        "error_rate": summary["error_rate"],
        "language_attribution": summary["language_attribution"],
        "real_time_factor": (after["asr_inference_seconds_sum"] - before["asr_inference_seconds_sum"]) / audio
        if audio else None,
        "cpu_cores_used": (cpu1 - cpu0) / wall,
        "errors": [tr.error for tr in traces if tr.error],
        "per_final": [{"entry": e, "segment": i, "latency_s": round(v, 3)} for e, i, v in per_final],
        "transcripts": [{"entry": tr.entry.id, "finals": [dataclasses.asdict(f) for f in metrics.finals_of(tr.responses)]}
                        for tr in traces],  # what each stream got under this load (for diagnosis)
        "wall_s": round(wall, 2),
    }


def run_load(manifest: Path, steps: list[int], bound: float, max_seconds: float, label: str = "tandem",
             env: dict[str, str] | None = None, log=sys.stderr, per_session: int = 3) -> dict:
    entries = [e for e in manifest_mod.load(manifest) if e.is_stream]
    entries.sort(key=lambda e: -e.duration_s)
    metrics_port = free_port()
    rows, over, started = [], 0, time.monotonic()
    stack_env = {"TANDEM_ASR_METRICS_PORT": str(metrics_port), "TANDEM_ASR_MAX_STREAMS": "64",
                 "TANDEM_ASR_MAX_LOAD": "0", "TANDEM_SESSION_MAX_SESSIONS": "64", **(env or {})}
    if label in ADMISSION_STEPS:
        steps = [n for n in steps if min(ADMISSION_STEPS[label]) <= n <= max(ADMISSION_STEPS[label])]
    with LocalStack(log=log, label=f"load {label}", env=stack_env, asr_workers=WORKERS.get(label, 1)) as stack:
        pids = [s.proc.pid for s in stack.services]
        rng = random.Random(0)
        for n in steps:
            if time.monotonic() - started > max_seconds:
                print(f"load: time budget of {max_seconds:.0f} s spent; stopping before N={n}", file=log)
                break
            row = {"label": label, **step(stack.session_address, entries, n, metrics_port, pids, rng, per_session,
                                          CLIENT.get(label))}
            rows.append(row)
            fl = row["final_latency_s"]
            print(f"load: N={n}: {row['refused']} streams refused, " if row["refused"] else f"load: N={n}: ",
                  end="", file=log)
            ordinary, tl = row["final_latency_ordinary_s"], row["translation_latency_s"]
            print(f"{row['finals']} finals, final p50 {_num(fl['p50'])} s p95 {_num(fl['p95'])} s "
                  f"(ordinary p95 {_num(ordinary['p95'])} s), "
                  f"translation p50 {_num(tl['p50'])} s p95 {_num(tl['p95'])} s, "
                  f"attribution {_num(row['language_attribution'], 3)}, RTF {row['real_time_factor']:.2f}, "
                  f"CPU {row['cpu_cores_used']:.2f} cores{', errors ' + str(row['errors']) if row['errors'] else ''}",
                  file=log, flush=True)
            if row["errors"]:  # the services' own account of the failure, beside the figures
                for service in stack.services:
                    tail = [line for line in service.stderr_tail(200).splitlines()
                            if "ERROR" in line or "Traceback" in line or line.startswith((" ", "\t"))
                            or "Error" in line]
                    if tail:
                        print(f"load: {service.name} log:\n" + "\n".join(tail[-40:]), file=log, flush=True)
            # (stepping goes on while the ordinary finals hold: beyond that the machine is full)
            over = over + 1 if (ordinary["p95"] is None or ordinary["p95"] > bound or row["errors"]) else 0
            if over >= 2:
                break
    def within(key: str) -> int:
        ok = [r["streams"] for r in rows if r[key]["p95"] is not None and r[key]["p95"] <= bound and not r["errors"]]
        return max(ok) if ok else 0

    return {"label": label, "bound_s": bound, "steps": rows, "max_streams_within_bound": within("final_latency_s"),
            "max_streams_within_bound_ordinary": within("final_latency_ordinary_s")}


def _num(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: list[dict]) -> str:
    lines = ["| config | N | refused | finals | final p50 (s) | final p95 (s) | p95 at a switch / ordinary (s) "
             "| first result p50 (s) | translation p50 / p95 (s) | WER/CER | attribution | ASR RTF | CPU cores | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for r in res["steps"]:
            fl, fr = r["final_latency_s"], r.get("first_result_latency_s") or {}
            tl = r.get("translation_latency_s") or {}
            at_switch, ordinary = r["final_latency_at_switch_s"], r["final_latency_ordinary_s"]
            rates = " ".join(f"{lang} {rate:.3f}" for lang, rate in (r.get("error_rate") or {}).items())
            attribution = r.get("language_attribution")
            lines.append(f"| {res['label']} | {r['streams']} | {r.get('refused', 0)} | {r.get('finals', '')} | "
                         f"{_num(fl['p50'])} | {_num(fl['p95'])} | {_num(at_switch['p95'])} / {_num(ordinary['p95'])} | "
                         f"{_num(fr.get('p50'))} | {_num(tl.get('p50'))} / {_num(tl.get('p95'))} | {rates} | {_num(attribution, 3)} | "
                         f"{r['real_time_factor']:.2f} | {r['cpu_cores_used']:.2f} | {len(r['errors'])} |")
    lines.append("")
    for res in results:
        reasons = [r["refused_reason"] for r in res["steps"] if r.get("refused_reason")]
        if reasons:
            refused = sum(r["refused"] for r in res["steps"])
            offered = refused + sum(len(r["transcripts"]) for r in res["steps"])
            lines.append(f"- {res['label']}: admission refused {refused} of {offered} streams offered, the rows "
                         f"are the admitted ones'; e.g. {reasons[0]}")
        else:
            lines.append(f"- {res['label']}: max concurrent real-time streams with p95 ≤ {res['bound_s']} s: "
                         f"**{res['max_streams_within_bound']}** (all finals; counting only finals that do not "
                         f"end at a switch: {res['max_streams_within_bound_ordinary']})")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path("../shared/eval/streams.jsonl"))
    parser.add_argument("--steps", default="1,2,3,4,6,8")
    parser.add_argument("--bound", type=float, default=1.5)
    parser.add_argument("--max-seconds", type=float, default=1500.0)
    parser.add_argument("--configs", default="ct2,ct2-finals,ct2-nobatch,torch,ct2-admit",
                        help=f"comma-separated, of {sorted(CONFIGS)}")
    parser.add_argument("--peers", type=Path, default=Path("reports/peers.json"),
                        help="peer results to show beside ours (from `make peers`), if present")
    parser.add_argument("--streams-per-session", type=int, default=3,
                        help="code-switched streams each session plays in turn (more finals per step)")
    parser.add_argument("--quick", action="store_true", help="N = 1, 2 only, one stream per session (smoke test)")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    steps = [1, 2] if args.quick else [int(x) for x in args.steps.split(",")]
    results = []
    for name in args.configs.split(","):
        if name not in CONFIGS:
            parser.error(f"unknown config {name!r}; choose from {sorted(CONFIGS)}")
        results.append(run_load(args.manifest, steps, args.bound, args.max_seconds, label=name, env=CONFIGS[name],
                                per_session=1 if args.quick else args.streams_per_session))
    args.out.mkdir(parents=True, exist_ok=True)
    peers = json.loads(args.peers.read_text()).get("peers", {}) if args.peers.exists() else {}
    (args.out / "load.json").write_text(json.dumps({"results": results, "peers": peers}, indent=2) + "\n")
    plots.load_curve([{"label": res["label"], **r} for res in results for r in res["steps"]], args.out / "load.png",
                     args.bound)
    print(markdown(results))
    for name, peer in peers.items():
        print(f"- {name} (from {args.peers}): max concurrent real-time streams with p95 ≤ {args.bound} s: "
              f"**{peer.get('max_realtime_streams')}**")
    print(f"\nwrote {args.out / 'load.json'} and {args.out / 'load.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

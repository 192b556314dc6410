"""`make load`: N concurrent real-time sessions against the live stack, N stepped up.

    python -m bench.load [--manifest streams.jsonl] [--steps 1,2,3,4,6,8] [--configs ct2,ct2-nobatch]
                         [--run-peers wlk,wlk-simul,wl] [--quick] [--out reports]

Every session streams code-switched streams at real-time pace, one after another
(`--streams-per-session`, so each step rests on enough finals for a p95; staggered starts,
translation on). Per N: end of speech → final latency p50/p95 over all sessions, the ASR's real-time
factor (inference seconds / audio seconds, from its Prometheus endpoint), the CPU used by
the three service processes and the latency from a final to its translation. Reports the
largest N whose p95 stays within --bound (1.5 s), over all finals (the target's measure) and
over the finals that do not end at a language switch (whose latency is queueing, not the
switch's detection). Stops stepping after two steps whose ordinary finals are over the bound.
Loopback only; bounded by --max-seconds.

With --run-peers (`make load` passes it) the peers of bench/peers/ run first in the same run, on
the same weights and streams, and the capacity table at the end sets our configs beside them at
--bound and at --loose-bound (10 s: they hold no stream within 1.5 s on 2 cores), with the ratio
of our first config to the best peer at each.

Admission by load is off (TANDEM_ASR_MAX_LOAD=0) so that every offered stream is served and
measured, except in `ct2-admit`: there it is on as by default, the steps are N = 4, 8, 12 sessions
(within what 2 cores hold and beyond), and the rows count the streams refused (RESOURCE_EXHAUSTED) apart; latency and error
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
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc

from bench import manifest as manifest_mod
from bench import metrics, plots, runner
from bench.peers.run_peers import LOOSE_BOUND_S  # the peers' second bound, ours too
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
    # On a CUDA GPU (never run yet: no GPU was lent to a session that could run it), e.g.
    # --configs ct2-cuda,torch-cuda --steps 1,8,16,24,32 --bound 0.3
    "ct2-cuda": {"TANDEM_ASR_DEVICE": "cuda", "TANDEM_ASR_COMPUTE_TYPE": "int8_float16"},
    "torch-cuda": {"TANDEM_ASR_ENGINE": "torch", "TANDEM_ASR_DEVICE": "cuda", "TANDEM_ASR_COMPUTE_TYPE": "float16"},
    "ct2-admit": {"TANDEM_ASR_MAX_LOAD": "0.6"},  # admission by measured load, as by default (admission.py)
    "ct2-admit90": {"TANDEM_ASR_MAX_LOAD": "0.9"},  # ... at the default until 2026-12-03
}
# Configurations that differ on the client's side: its sessions' RecognitionConfig.
CLIENT = {"ct2-finals": {"interim_results": False}}  # finals only: probe-only windows (stream.py)
CONFIGS["ct2-finals"] = {}
# The offered N they run whatever --steps (not with --quick): within what 2 cores hold at p95 1.5 s
# (8, sixteenth session), where nothing should be refused, and beyond, where admission must refuse
# for the admitted streams to keep their latency.
ADMISSION_STEPS = {"ct2-admit": (4, 8, 12), "ct2-admit90": (4, 8, 12)}
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
             env: dict[str, str] | None = None, log=sys.stderr, per_session: int = 3,
             loose_bound: float = LOOSE_BOUND_S, own_steps: bool = True) -> dict:
    entries = [e for e in manifest_mod.load(manifest) if e.is_stream]
    entries.sort(key=lambda e: -e.duration_s)
    metrics_port = free_port()
    rows, over, started = [], 0, time.monotonic()
    stack_env = {"TANDEM_ASR_METRICS_PORT": str(metrics_port), "TANDEM_ASR_MAX_STREAMS": "64",
                 "TANDEM_ASR_MAX_LOAD": "0", "TANDEM_SESSION_MAX_SESSIONS": "64", **(env or {})}
    if label in ADMISSION_STEPS and own_steps:
        steps = list(ADMISSION_STEPS[label])
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
    def within(key: str, limit: float = bound) -> int:
        ok = [r["streams"] for r in rows if r[key]["p95"] is not None and r[key]["p95"] <= limit and not r["errors"]]
        return max(ok) if ok else 0

    return {"label": label, "bound_s": bound, "steps": rows, "max_streams_within_bound": within("final_latency_s"),
            "max_streams_within_bound_ordinary": within("final_latency_ordinary_s"),
            # (a lower bound where the last step ran holds it: the steps stop at the ordinary finals' 1.5 s)
            "loose_bound_s": loose_bound, "max_streams_within_loose_bound": within("final_latency_s", loose_bound),
            "loose_bound_exceeded": any(r["final_latency_s"]["p95"] is None or r["final_latency_s"]["p95"] > loose_bound
                                        for r in rows)}


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


def capacity_table(results: list[dict], peers: dict, peers_source: str) -> str:
    """Streams held within the target bound and the loose one, ours per config beside the peers',
    with the ratio of our default to the best peer at each bound."""
    if not results:
        return ""
    bound, loose = results[0]["bound_s"], results[0]["loose_bound_s"]
    lines = [f"| system | N = 1 final p50 / p95 (s) | streams within p95 ≤ {bound:g} s | within p95 ≤ {loose:g} s |",
             "|---|---|---|---|"]
    for res in results:
        one = next((r for r in res["steps"] if r["streams"] == 1), None)
        first = f"{_num(one['final_latency_s']['p50'])} / {_num(one['final_latency_s']['p95'])}" if one else "–"
        at_loose = res["max_streams_within_loose_bound"]
        offered = " offered, some refused" if any(r.get("refused") for r in res["steps"]) else ""
        lines.append(f"| Tandem {res['label']} | {first} | {res['max_streams_within_bound']}{offered} | "
                     f"{at_loose}{offered}{'' if res['loose_bound_exceeded'] else ' (or more: every step held it)'} |")
    held = []  # per peer: (its count within the bound, is it a floor) at each bound
    for name, peer in peers.items():
        if "concurrency_ramp" not in peer:
            lines.append(f"| {name} ({peers_source}) | failed: {str(peer.get('failure', ''))[:60]} | – | – |")
            continue
        one = peer["concurrency_ramp"][0]
        never = f", {one['never_final']} segments never final" if one.get("never_final") else ""
        fmt = lambda v: "never" if v is None else f"{v:.2f}"  # noqa: E731
        at_loose, floor = peer.get("max_streams_within_loose_bound"), not peer.get("loose_bound_exceeded", True)
        held.append(((peer["max_realtime_streams"], False), None if at_loose is None else (at_loose, floor)))
        lines.append(f"| {name} ({peers_source}) | {fmt(one['p50_s'])} / {fmt(one['p95_s'])}{never} | "
                     f"{peer['max_realtime_streams']} | {'–' if at_loose is None else at_loose}"
                     f"{' (or more: its ramp stopped within it)' if at_loose is not None and floor else ''} |")
    ours = results[0]
    if held:
        lines.append("")
        ours_at = ((bound, ours["max_streams_within_bound"], False),
                   (loose, ours["max_streams_within_loose_bound"], not ours["loose_bound_exceeded"]))
        for k, (limit, mine, mine_floor) in enumerate(ours_at):
            theirs = [counts[k] for counts in held if counts[k] is not None]
            if not theirs:
                continue
            best, best_floor = max(theirs)
            more = " or more" if mine_floor else ""
            if not best:
                ratio = "no ratio (the peers hold none)"
            elif more and best_floor:
                ratio = "no ratio (both counts are floors)"
            else:
                ratio = f"{mine / best:.1f}×{more or (' or less' if best_floor else '')}"
            lines.append(f"- p95 ≤ {limit:g} s: Tandem {ours['label']} {mine}{more} streams, the best peer "
                         f"{best}{' or more' if best_floor else ''}: {ratio}")
    return "\n".join(lines)


def run_peers(names: str, out: Path, quick: bool, loose_bound: float, log=sys.stderr) -> Path:
    """`bench/peers/run_peers.py` in this run, before our configs (the peers' own venvs, .peers/)."""
    path = out / "peers.json"
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "peers" / "run_peers.py"), "--out", str(path),
           "--peers", names, "--loose-bound-s", str(loose_bound)] + (["--quick"] if quick else [])
    print(f"load: peers first: {' '.join(cmd)}", file=log, flush=True)
    if subprocess.run(cmd).returncode != 0:  # a peer that failed is reported in its JSON, the rest are kept
        print("load: a peer failed (see its row)", file=log, flush=True)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path("../shared/eval/streams.jsonl"))
    parser.add_argument("--steps", default="1,2,3,4,6,8")
    parser.add_argument("--bound", type=float, default=1.5)
    parser.add_argument("--loose-bound", type=float, default=LOOSE_BOUND_S,
                        help="a second bound on the p95, the peers' too (they hold none at 1.5 s)")
    parser.add_argument("--max-seconds", type=float, default=1500.0)
    parser.add_argument("--configs", default="ct2,ct2-finals,ct2-nobatch,torch,ct2-admit",
                        help=f"comma-separated, of {sorted(CONFIGS)}")
    parser.add_argument("--run-peers", default="", metavar="wlk,wlk-simul,wl",
                        help="run these peers in this run, before our configs (needs `make peers-setup`)")
    parser.add_argument("--peers", type=Path, default=Path("reports/peers.json"),
                        help="without --run-peers: peer results of an earlier `make peers` to show beside ours, if present")
    parser.add_argument("--streams-per-session", type=int, default=3,
                        help="code-switched streams each session plays in turn (more finals per step)")
    parser.add_argument("--quick", action="store_true", help="N = 1, 2 only, one stream per session (smoke test)")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    steps = [1, 2] if args.quick else [int(x) for x in args.steps.split(",")]
    names = args.configs.split(",")
    for name in names:
        if name not in CONFIGS:
            parser.error(f"unknown config {name!r}; choose from {sorted(CONFIGS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.run_peers:
        args.peers, source = run_peers(args.run_peers, args.out, args.quick, args.loose_bound), "this run"
    else:
        source = f"{args.peers}, an earlier run"
    results = [run_load(args.manifest, steps, args.bound, args.max_seconds, label=name, env=CONFIGS[name],
                        per_session=1 if args.quick else args.streams_per_session, loose_bound=args.loose_bound,
                        own_steps=not args.quick)
               for name in names]
    peers = json.loads(args.peers.read_text()).get("peers", {}) if args.peers.exists() else {}
    (args.out / "load.json").write_text(json.dumps({"results": results, "peers": peers, "peers_source": source},
                                                   indent=2) + "\n")
    plots.load_curve([{"label": res["label"], **r} for res in results for r in res["steps"]], args.out / "load.png",
                     args.bound)
    print(markdown(results))
    print("\nCapacity (the largest N within each bound on the p95 of all finals, counted by each one's rule):\n")
    print(capacity_table(results, peers, source))
    print(f"\nwrote {args.out / 'load.json'} and {args.out / 'load.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

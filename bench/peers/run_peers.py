"""Side-by-side numbers for the peers (WhisperLiveKit, WhisperLive) on Tandem's model and clips.

    python bench/peers/run_peers.py [--manifest PATH] [--streams PATH] [--quick]
                                    [--out reports/peers.json] [--peers wlk,wl]

For each peer: start its server (its own venv, 127.0.0.1, a free port, the CTranslate2 Whisper
base directory models/whisper-base-ct2, HF_HUB_OFFLINE=1), stream every single-language clip
of the manifest and every code-switched stream in real time (100 ms chunks) through
bench/peers/peer_client.py (run in the peer's venv), stop the server, then ramp N concurrent
real-time streams. Writes JSON and prints a Markdown table.

Definitions (see also README-like notes in the JSON):
- error rate: Tandem's clients/scoring.py (`tokens`, `edit_distance`): WER for en, CER for
  ja/zh/ko, errors and reference tokens summed per language over clips and streams. The
  hypothesis is the peer's final output at end of stream (WLK: all committed `lines` plus any
  remaining `buffer_transcription`; WhisperLive: its completed segments plus the last
  uncompleted segment, as its own client writes the transcript). In a code-switched stream the
  hypothesis is split per language by script (Latin letters => en; kana/kanji/hangul => the
  other language; digits and punctuation stay with their neighbours) and compared with the
  stream's reference segments of that language, concatenated in order. (The peers do not
  segment by language, so a per-segment alignment would mostly measure their segmentation.)
- final: WLK = text in `lines` (committed by LocalAgreement, never revised);
  WhisperLive = segments with `completed: true`. Final latency of a reference segment = the
  arrival time (stream clock: audio at time t was spoken at t0 + t) of the LAST commit whose
  time span overlaps the segment's region (its start .. the middle of the gap to the next
  segment; +0.5 s for the last one), minus the segment's end: when the segment's final text
  is complete. A segment with no committed text at all counts as +inf in the percentiles
  (reported as null, with a count).
- max real-time streams: N = 1, 2, 3, ... lanes, each streaming code-switched streams
  back to back in real time (lanes staggered by 0.4 s); the largest N whose p95 final latency
  over all reference segments is <= 1.5 s, counting up to the first N that fails or errs. The
  ramp goes on while the p95 holds --loose-bound-s (10 s), and the same count at that bound is
  `max_streams_within_loose_bound`: a capacity for a peer that never holds 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
import urllib.request
import wave
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
from clients.scoring import edit_distance, tokens  # noqa: E402

TOL_S = 0.25  # only used to end the trailing silence early (peer_client)
BOUND_S = 1.5
# A second, looser bound on the p95, so that a peer that never holds 1.5 s still gets a capacity
# to compare with (WhisperLiveKit's SimulStreaming policy gave 8.1 s for one stream, tenth session).
LOOSE_BOUND_S = 10.0
CT2_DIR = ROOT / "models" / "whisper-base-ct2"
VAD_ONNX = ROOT / "models" / "vad" / "silero_vad_v6.onnx"
PEERS = {
    "wlk": {"name": "whisperlivekit", "dist": "whisperlivekit", "venv": "wlk"},
    "wlk-simul": {"name": "whisperlivekit-simulstreaming", "dist": "whisperlivekit", "venv": "wlk"},
    "wl": {"name": "whisperlive", "dist": "whisper-live", "venv": "wl"},
}
PROTOCOL = {"wlk": "wlk", "wlk-simul": "wlk", "wl": "wl"}


# ---------------------------------------------------------------- data

def read_pcm_i16(path: Path):
    import numpy as np

    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def speech_bounds(path: Path) -> tuple[float, float]:
    """The eval set's rule: frames within 35 dB of the loudest 20 ms frame are speech."""
    import numpy as np

    pcm = read_pcm_i16(path)
    frame = 320
    n = max(1, len(pcm) // frame)
    x = pcm[: n * frame].astype(np.float64).reshape(n, frame) / 32768.0
    db = 10 * np.log10(np.mean(x * x, axis=1) + 1e-12)
    active = np.nonzero(db > db.max() - 35.0)[0]
    if len(active) == 0:
        return 0.0, len(pcm) / 16000
    return active[0] * frame / 16000, (active[-1] + 1) * frame / 16000


def load_entries(manifest: Path | None, streams: Path | None):
    clips, strs = [], []
    if manifest and manifest.exists():
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            it = json.loads(line)
            path = (manifest.parent / it["path"]).resolve()
            if it.get("segments"):  # a manifest may also hold streams
                strs.append(_stream(it, path))
                continue
            start, end = speech_bounds(path)
            clips.append({"key": it["id"], "path": str(path), "languages": [it["language"]],
                          "segments": [{"start_s": start, "end_s": end, "language": it["language"], "text": it["text"]}],
                          "is_stream": False})
    if streams and streams.exists():
        for line in streams.read_text(encoding="utf-8").splitlines():
            if line.strip():
                it = json.loads(line)
                strs.append(_stream(it, (streams.parent / it["path"]).resolve()))
    return clips, strs


def _stream(it, path):
    segs = [{k: s[k] for k in ("start_s", "end_s", "language", "text")} for s in it["segments"]]
    langs = it.get("languages") or list(dict.fromkeys(s["language"] for s in segs))
    return {"key": it["id"], "path": str(path), "languages": langs, "segments": segs, "is_stream": True}


# ---------------------------------------------------------------- peers

def peer_model_dir(peers_dir: Path) -> Path:
    """The CT2 directory as the peers see it: model.bin/config.json/vocabulary.txt symlinked,
    tokenizer.json with the first GPT-2 BPE merge ("Ġ t") restored - the packaged file lacks it,
    which mis-encodes prompts (" the" -> " " + "the"); Tandem's engine repairs it the same way
    at load time (services/asr/engine.py load_tokenizer). Decoding is unaffected."""
    out = peers_dir / "whisper-base-ct2"
    out.mkdir(parents=True, exist_ok=True)
    for f in CT2_DIR.iterdir():
        if f.name == "tokenizer.json":
            continue
        link = out / f.name
        if not link.is_symlink() or link.resolve() != f.resolve():
            link.unlink(missing_ok=True)
            link.symlink_to(f.resolve())
    data = json.loads((CT2_DIR / "tokenizer.json").read_text(encoding="utf-8"))
    merges = data["model"]["merges"]
    as_string = isinstance(merges[0], str)
    if (merges[0] if as_string else " ".join(merges[0])) != "Ġ t":
        merges.insert(0, "Ġ t" if as_string else ["Ġ", "t"])
    text = json.dumps(data, ensure_ascii=False)
    tok = out / "tokenizer.json"
    if not tok.exists() or tok.read_text(encoding="utf-8") != text:
        tok.write_text(text, encoding="utf-8")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peer_env():
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONUNBUFFERED="1")
    return env


class Server:
    def __init__(self, key: str, venv: Path, logdir: Path, warmup_wav: str, max_clients: int = 32):
        self.key, self.venv, self.port = key, venv, free_port()
        py = str(venv / "bin" / "python")
        model = str(peer_model_dir(venv.parent))
        if key == "wlk":
            cmd = [py, "-m", "whisperlivekit.basic_server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--backend", "faster-whisper", "--backend-policy", "localagreement",
                   "--model_dir", model, "--pcm-input", "--lan", "auto",
                   "--warmup-file", warmup_wav, "--log-level", "INFO"]
        elif key == "wlk-simul":
            pt = converted_pt(venv)
            cmd = [py, "-m", "whisperlivekit.basic_server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--backend", "faster-whisper", "--backend-policy", "simulstreaming",
                   "--encoder-model-path", model, "--decoder-model-path", str(pt),
                   "--custom-alignment-heads", Path(str(pt) + ".heads").read_text().strip(),
                   "--pcm-input", "--lan", "auto", "--warmup-file", warmup_wav, "--log-level", "INFO"]
        else:
            cmd = [py, str(HERE / "wl_server.py"), "--port", str(self.port), "--model", model,
                   "--vad-onnx", str(VAD_ONNX), "--max-clients", str(max_clients)]
        self.cmd = cmd
        self.log_path = logdir / f"{key}-server.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=peer_env(),
                                     cwd=str(ROOT), start_new_session=True)

    def wait_ready(self, timeout=240.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.key} server exited ({self.proc.returncode}); see {self.log_path}")
            try:
                if PROTOCOL[self.key] == "wlk":
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                        if json.load(r).get("ready"):
                            return
                else:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.key} server not ready after {timeout:.0f} s; see {self.log_path}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def converted_pt(venv: Path) -> Path:
    """openai-whisper checkpoint of the same CT2 weights (for SimulStreaming's PyTorch decoder)."""
    pt = venv.parent / "whisper-base-pt" / "whisper-base.pt"
    src = CT2_DIR / "model.bin"
    if not pt.exists() or not Path(str(pt) + ".heads").exists() or pt.stat().st_mtime < src.stat().st_mtime:
        # converted by the project's own converter, in the project venv (make venv-torch)
        subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "services.asr.ct2_to_torch", str(CT2_DIR),
                        str(pt)], check=True, cwd=ROOT, capture_output=True)
    return pt


def run_client(venv: Path, peer: str, port: int, lanes, tmp: Path, tail_s=8.0, final_wait_s=30.0):
    job = {"peer": PROTOCOL[peer], "url": f"ws://127.0.0.1:{port}", "lanes": lanes, "chunk_s": 0.1,
           "tail_s": tail_s, "final_wait_s": final_wait_s, "lane_stagger_s": 0.4, "tol_s": TOL_S}
    jp, op = tmp / f"job-{time.monotonic_ns()}.json", tmp / f"out-{time.monotonic_ns()}.json"
    jp.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    proc = subprocess.run([str(venv / "bin" / "python"), str(HERE / "peer_client.py"), str(jp), str(op)],
                          env=peer_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"peer client failed: {proc.stderr[-2000:]}")
    return json.loads(op.read_text(encoding="utf-8"))


def item(entry, language=None):
    return {"key": entry["key"], "path": entry["path"], "language": language,
            "ref_ends": [s["end_s"] for s in entry["segments"]]}


# ---------------------------------------------------------------- analysis

def final_text(peer: str, trace) -> str:
    if not trace["events"]:
        return ""
    last = trace["events"][-1][1]
    states = [e[1] for e in trace["events"] if "lines" in e[1] or "completed" in e[1]]
    if not states:
        return ""
    last = states[-1]
    if PROTOCOL[peer] == "wlk":
        return " ".join([ln[2].strip() for ln in last["lines"]] + [last.get("buffer") or ""]).strip()
    parts = [c[2].strip() for c in last["completed"]]
    if last.get("tail") and last["tail"][2].strip() not in parts:
        parts.append(last["tail"][2].strip())
    return " ".join(parts).strip()


def commit_events(peer: str, trace):
    """[(arrival t, span_start, span_end)]: each time the committed output grows, the span of
    stream time that the newly committed text covers. WLK: committed lines only expose their
    start/end, so the new span runs from the previous committed end to the new one (or from
    the start of a new line); WhisperLive: each newly completed segment's own start/end."""
    out = []
    if PROTOCOL[peer] == "wlk":
        best = None
        for t, st in trace["events"]:
            lines = [ln for ln in st.get("lines", []) if ln[1] is not None]
            if not lines:
                continue
            end = max(ln[1] for ln in lines)
            if best is None or end > best + 1e-6:
                new_starts = [ln[0] for ln in lines if ln[0] is not None and (best is None or ln[0] >= best - 1e-6)]
                start = min(new_starts) if new_starts else best
                out.append((t, start if start is not None else 0.0, end))
                best = end
    else:
        seen = 0
        for t, st in trace["events"]:
            done = st.get("completed")
            if done is None:
                continue
            for c in done[seen:]:
                out.append((t, c[0], c[1]))
            seen = max(seen, len(done))
    return out


def latencies(peer: str, entry, trace):
    """Per reference segment: (arrival of the LAST commit whose span overlaps the segment's
    region) - segment end. The region runs from the segment's start (or the middle of the gap
    before it) to the middle of the gap after it (0.5 s past its end for the last segment):
    the time at which the segment's final text is complete. inf when nothing was committed."""
    ev = commit_events(peer, trace)
    segs = entry["segments"]
    res = []
    for i, seg in enumerate(segs):
        lo = seg["start_s"] if i == 0 else (segs[i - 1]["end_s"] + seg["start_s"]) / 2
        hi = seg["end_s"] + 0.5 if i == len(segs) - 1 else (seg["end_s"] + segs[i + 1]["start_s"]) / 2
        # a commit belongs to the segment when it overlaps the region by >= 0.3 s or by half its own span
        hits = [t for t, a, b in ev if min(b, hi) - max(a, lo) >= min(0.3, 0.5 * max(b - a, 1e-3))]
        res.append(max(0.0, max(hits) - seg["end_s"]) if hits else math.inf)
    return res


def script_of(ch: str) -> str | None:
    if ch.isdigit() or not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    if name.startswith(("LATIN", "FULLWIDTH LATIN")):
        return "latin"
    return "cjk"  # CJK ideographs, kana, hangul (the eval set's non-English languages)


def split_by_script(text: str, languages):
    """{language: text} for a pair (X, en) where X is written in a non-Latin script."""
    other = [lang for lang in languages if lang.split("-")[0] != "en"]
    if len(other) != 1 or len(languages) != 2 or other[0].split("-")[0] not in ("ja", "zh", "ko"):
        return None
    lang_of = {"latin": "en", "cjk": other[0]}
    runs, cur, buf = [], None, ""
    for ch in text:
        sc = script_of(ch)
        if sc is None or sc == cur or cur is None:
            buf += ch
            cur = cur or sc
        else:
            runs.append((cur, buf))
            cur, buf = sc, ch
    if buf:
        runs.append((cur, buf))
    out = {lang: [] for lang in languages}
    for sc, chunk in runs:
        if sc is not None:
            out[lang_of[sc]].append(chunk)
    return {lang: " ".join(v) for lang, v in out.items()}


def add_errors(acc, lang, ref, hyp):
    r = tokens(ref, lang)
    e = edit_distance(r, tokens(hyp, lang))
    a = acc.setdefault(lang.split("-")[0], [0, 0])
    a[0] += e
    a[1] += len(r)


def rates(acc):
    return {lang: round(e / max(1, n), 4) for lang, (e, n) in sorted(acc.items())}


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    x = v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))]
    return None if math.isinf(x) else round(x, 3)


def within(step, bound: float) -> bool:
    """A ramp step holds the bound: a p95 (no segment left without a final in its top 5 %) within
    it, and no stream failed."""
    return step["p95_s"] is not None and step["p95_s"] <= bound and not step["errors"]


def capacity(ramp, bound: float) -> int:
    """The largest N of the ramp (N = 1, 2, ... in order) before the first step over `bound`."""
    best = 0
    for step in ramp:
        if not within(step, bound):
            break
        best = step["n"]
    return best


# ---------------------------------------------------------------- main flow

class LoadSampler:
    """1-min load average and machine-wide CPU busy share, sampled every 2 s during a run."""

    def __init__(self):
        import threading

        self.samples, self.busy, self._stop = [], [], threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    @staticmethod
    def _cpu():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v) - idle, sum(v)

    def _run(self):
        prev = self._cpu()
        while not self._stop.wait(2.0):
            with open("/proc/loadavg") as f:
                self.samples.append(float(f.read().split()[0]))
            cur = self._cpu()
            if cur[1] > prev[1]:
                self.busy.append((cur[0] - prev[0]) / (cur[1] - prev[1]))
            prev = cur

    def stop(self):
        self._stop.set()
        self._t.join()
        m = lambda v: round(sum(v) / len(v), 2) if v else None  # noqa: E731
        return {"loadavg1_mean": m(self.samples), "loadavg1_max": max(self.samples) if self.samples else None,
                "cpu_busy_mean": m(self.busy)}


def bench_peer(key, clips, streams, args, logdir, tmp):
    info = PEERS[key]
    venv = Path(args.peers_dir) / info["venv"]
    if not (venv / "bin" / "python").exists():
        raise RuntimeError(f"{venv} missing: run bench/peers/setup.sh")
    version = subprocess.run([str(venv / "bin" / "python"), "-c",
                              f"import importlib.metadata as m; print(m.version('{info['dist']}'))"],
                             capture_output=True, text=True).stdout.strip()
    rep = {"version": version, "notes": [], "per_entry": {}}
    warm = (clips or streams)[0]["path"]
    t_start = time.monotonic()
    sampler = LoadSampler()
    server = Server(key, venv, logdir, warm)
    try:
        server.wait_ready()
        rep["startup_s"] = round(time.monotonic() - t_start, 1)
        # warm-up stream (not scored): WhisperLive loads its model on the first connection
        run_client(venv, key, server.port, [[{**item((clips or streams)[0]), "key": "warmup"}]], tmp, tail_s=3)

        # (a) + (b) one stream at a time, real time
        entries = clips + streams
        given = args.clip_language == "given"
        traces = run_client(venv, key, server.port,
                            [[item(e, e["languages"][0] if given and not e["is_stream"] else None) for e in entries]], tmp)
        by_key = {t["key"]: t for t in traces}
        acc_all, acc_clips, acc_streams = {}, {}, {}
        lat_clips, lat_streams, errors, langs_seen = [], [], [], {}
        for e in entries:
            tr = by_key[e["key"]]
            if tr.get("error"):
                errors.append(f"{e['key']}: {tr['error']}")
            hyp = final_text(key, tr)
            lat = latencies(key, e, tr)
            det = sorted({ln[3] for _, st in tr["events"] for ln in st.get("lines", []) if ln[3]} |
                         {st["language"] for _, st in tr["events"] if "language" in st})
            langs_seen[e["key"]] = det
            rep["per_entry"][e["key"]] = {"hypothesis": hyp, "final_latency_s": [None if math.isinf(x) else round(x, 3) for x in lat],
                                          "detected_languages": det, "error": tr.get("error")}
            if e["is_stream"]:
                lat_streams += lat
                parts = split_by_script(hyp, e["languages"])
                if parts is None:
                    rep["notes"].append(f"{e['key']}: pair {e['languages']} not splittable by script; not scored")
                    continue
                for lang in e["languages"]:
                    ref = " ".join(s["text"] for s in e["segments"] if s["language"] == lang)
                    for acc in (acc_all, acc_streams):
                        add_errors(acc, lang, ref, parts.get(lang, ""))
            else:
                lat_clips += lat
                seg = e["segments"][0]
                for acc in (acc_all, acc_clips):
                    add_errors(acc, seg["language"], seg["text"], hyp)
        lat_all = lat_clips + lat_streams
        rep.update({
            "error_rate": rates(acc_all), "error_rate_clips": rates(acc_clips), "error_rate_streams": rates(acc_streams),
            "reference_tokens": {k: v[1] for k, v in sorted(acc_all.items())},
            "final_latency_p50_s": pct(lat_all, 50), "final_latency_p95_s": pct(lat_all, 95),
            "final_latency_streams_p50_s": pct(lat_streams, 50), "final_latency_streams_p95_s": pct(lat_streams, 95),
            "final_latency_segments": len(lat_all),
            "final_latency_never_final": sum(1 for x in lat_all if math.isinf(x)),
            "stream_errors": errors,
        })
        rep["detected_languages"] = langs_seen

        # (d) concurrency ramp: on while the p95 holds the loose bound (capacity at both bounds)
        ramp = []
        p95_1 = pct(lat_streams, 95)
        ramp.append({"n": 1, "p95_s": p95_1, "p50_s": pct(lat_streams, 50), "segments": len(lat_streams),
                     "never_final": sum(1 for x in lat_streams if math.isinf(x)),
                     "errors": len(errors), "source": "the single-stream run above"})
        go = within(ramp[-1], args.loose_bound_s)
        n, budget_end = 2, time.monotonic() + args.ramp_budget_s
        per_lane = 1 if args.quick else 2
        while go and n <= args.max_n and time.monotonic() < budget_end:
            lanes = [[item(streams[(i * per_lane + j) % len(streams)]) for j in range(per_lane)] for i in range(n)]
            res = run_client(venv, key, server.port, lanes, tmp, tail_s=6.0)
            lat, errs = [], [r["error"] for r in res if r.get("error")]
            ent = {s["key"]: s for s in streams}
            for r in res:
                lat += latencies(key, ent[r["key"]], r)
            ramp.append({"n": n, "p95_s": pct(lat, 95), "p50_s": pct(lat, 50), "segments": len(lat),
                         "never_final": sum(1 for x in lat if math.isinf(x)), "errors": len(errs),
                         "error_examples": errs[:3]})
            go = within(ramp[-1], args.loose_bound_s)
            n += 1
        if go and n <= args.max_n:
            rep["notes"].append(f"concurrency ramp stopped by the time budget at N={n - 1} "
                                f"(still within {args.loose_bound_s} s)")
        rep["max_realtime_streams"] = capacity(ramp, BOUND_S)
        rep["loose_bound_s"] = args.loose_bound_s
        rep["max_streams_within_loose_bound"] = capacity(ramp, args.loose_bound_s)
        rep["loose_bound_exceeded"] = not go  # false: stopped by --max-n or the budget, the count is a floor
        rep["concurrency_ramp"] = ramp
    finally:
        server.stop()
        rep["machine_load"] = sampler.stop()
    rep["wall_s"] = round(time.monotonic() - t_start, 1)
    return rep


STATIC = {
    "wlk": {
        "config": "basic_server --backend faster-whisper --backend-policy localagreement --model_dir models/whisper-base-ct2 "
                  "--pcm-input --lan auto (defaults otherwise: beam 5, Silero VAC (bundled ONNX), min chunk 0.1 s, "
                  "buffer trimming 'segment' at 15 s, compute_type/device auto -> CPU int8, CTranslate2 default threads)",
        "language_pair_restriction": False,
        "language_per_segment": False,
        "language_notes": [
            "--lan / ?language= takes ONE language or 'auto'; no allow-list of two languages",
            "LocalAgreement + faster-whisper: lines carry no language (detected_language is only set by the "
            "SimulStreaming policy, which detects once per stream and then keeps it)",
            "with 'auto', faster-whisper re-detects the language on every processed buffer (not exposed)",
        ],
        "final_definition": "text in `lines` (LocalAgreement-2 committed, never revised); `buffer_transcription` is the partial",
        "not_measured": [],
    },
    "wlk-simul": {
        "config": "basic_server --backend faster-whisper --backend-policy simulstreaming (WLK's default policy, AlignAtt) "
                  "--encoder-model-path models/whisper-base-ct2 (faster-whisper encoder) --decoder-model-path = the same "
                  "weights re-packed as an openai-whisper checkpoint by services/asr/ct2_to_torch.py (PyTorch fp32 "
                  "decoder on CPU), --custom-alignment-heads from the CT2 config.json, --pcm-input --lan auto (defaults "
                  "otherwise: greedy, frame threshold 25, Silero VAC, min chunk 0.1 s)",
        "language_pair_restriction": False,
        "language_per_segment": True,
        "language_notes": [
            "--lan / ?language= takes ONE language or 'auto'; no allow-list of two languages",
            "lines carry detected_language, but it is detected once (first decode of the stream) and then kept, "
            "so after a switch the segment keeps the first language",
        ],
        "final_definition": "text in `lines` (committed by AlignAtt, never revised); `buffer_transcription` is the partial",
        "not_measured": ["CIF end-of-word model (not available offline): WLK then always trims the last word of a chunk"],
    },
    "wl": {
        "config": "TranscriptionServer.run(backend=faster_whisper, faster_whisper_custom_model_path=models/whisper-base-ct2, "
                  "single_model=True, max_clients=32) on 127.0.0.1; client options as whisper_live.client defaults "
                  "(use_vad, no_speech_thresh 0.45, same_output_threshold 10, send_last_n_segments 10), language None (auto); "
                  "beam 5 (transcriber default), CPU int8, CTranslate2 default threads",
        "language_pair_restriction": False,
        "language_per_segment": False,
        "language_notes": [
            "`language` option is ONE language or None; with None the first detection with p > 0.5 is sent once "
            "({language, language_prob}) and then fixed for the whole connection",
            "segments carry no language",
        ],
        "final_definition": "segments with completed=true (a segment completes when Whisper returns a following segment, "
                            "or when the same text repeats more than same_output_threshold=10 times)",
        "not_measured": [
            "batch inference (--batch_inference) targets GPUs; default server (one shared model, per-client threads) measured",
            "default max_clients is 4 (extra clients get WAIT); raised to 32 here so that compute, not the cap, limits N",
        ],
    },
}


def markdown(report) -> str:
    loose = report["setup"].get("loose_latency_bound_s", LOOSE_BOUND_S)
    rows = [f"| peer | version | en WER | ja CER | zh CER | ko CER | final p50 (s) | final p95 (s) | max RT streams (p95 ≤ {BOUND_S} s / ≤ {loose:g} s) | pair restriction | language per segment |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, p in report["peers"].items():
        if "error_rate" not in p:
            rows.append(f"| {name} | {p.get('version', '?')} | failed: {p.get('failure', '')[:80]} |||||||||")
            continue
        er = p["error_rate"]
        f = lambda k: "—" if er.get(k) is None else f"{er[k]:.3f}"  # noqa: E731
        g = lambda v: "never" if v is None else f"{v:.2f}"  # noqa: E731
        rows.append(f"| {name} | {p['version']} | {f('en')} | {f('ja')} | {f('zh')} | {f('ko')} | "
                    f"{g(p['final_latency_p50_s'])} | {g(p['final_latency_p95_s'])} | {p['max_realtime_streams']} / "
                    f"{p.get('max_streams_within_loose_bound', '–')} | "
                    f"{'yes' if p['language_pair_restriction'] else 'no'} | {'yes' if p['language_per_segment'] else 'no'} |")
    rows += ["", "| peer | streams-only final p50 / p95 (s) | segments never final | concurrency ramp (N: p95 s) | "
             "mean load / CPU busy during run | wall (s) |", "|---|---|---|---|---|---|"]
    for name, p in report["peers"].items():
        if "error_rate" not in p:
            continue
        g = lambda v: "never" if v is None else f"{v:.2f}"  # noqa: E731
        ramp = ", ".join(f"{r['n']}: {g(r['p95_s'])}" for r in p.get("concurrency_ramp", []))
        ld = p.get("machine_load", {})
        rows.append(f"| {name} | {g(p['final_latency_streams_p50_s'])} / {g(p['final_latency_streams_p95_s'])} | "
                    f"{p['final_latency_never_final']}/{p['final_latency_segments']} | {ramp} | "
                    f"{ld.get('loadavg1_mean')} / {ld.get('cpu_busy_mean')} | {p.get('wall_s')} |")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=ROOT.parent / "shared" / "eval" / "manifest.jsonl")
    ap.add_argument("--streams", type=Path, default=None,
                    help="code-switched streams (default: streams.jsonl beside the manifest)")
    ap.add_argument("--quick", action="store_true", help="few clips, N up to 2 (about 5 min)")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "peers.json")
    ap.add_argument("--peers", default="wlk,wlk-simul,wl",
                    help="wlk = WhisperLiveKit LocalAgreement, wlk-simul = WhisperLiveKit SimulStreaming (its default "
                         "policy), wl = WhisperLive")
    ap.add_argument("--peers-dir", default=str(ROOT / ".peers"))
    ap.add_argument("--max-n", type=int, default=8)
    ap.add_argument("--clip-language", choices=("auto", "given"), default="auto",
                    help="single-language clips: peer detects the language (auto, default) or is told it (given); "
                         "code-switched streams always run with auto (neither peer accepts a pair)")
    ap.add_argument("--ramp-budget-s", type=float, default=None)
    ap.add_argument("--loose-bound-s", type=float, default=LOOSE_BOUND_S,
                    help="the ramp goes on while the p95 holds this (capacity at a bound a peer can meet)")
    args = ap.parse_args(argv)
    if args.streams is None:
        args.streams = args.manifest.parent / "streams.jsonl"
    if args.ramp_budget_s is None:
        args.ramp_budget_s = 60.0 if args.quick else 400.0
    if args.quick:
        args.max_n = min(args.max_n, 2)
    clips, streams = load_entries(args.manifest, args.streams)
    if args.quick:
        picked, seen = [], set()
        for c in clips:  # one clip per language
            if c["languages"][0] not in seen:
                seen.add(c["languages"][0])
                picked.append(c)
        clips = picked[:3]
        streams = streams[:2]
    if not clips and not streams:
        sys.exit(f"no entries in {args.manifest} / {args.streams}")
    if not streams:
        sys.exit("the concurrency ramp needs code-switched streams (--streams)")
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    logdir = args.out.parent / "peers-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    report = {"peers": {}, "setup": {
        "model": str(CT2_DIR.relative_to(ROOT)) + " (served to the peers from .peers/whisper-base-ct2: same files "
                 "symlinked, tokenizer.json with its missing first BPE merge restored, as Tandem's engine does)", "manifest": str(args.manifest), "streams": str(args.streams),
        "clips": len(clips), "code_switched_streams": len(streams), "quick": args.quick,
        "clip_language": args.clip_language,
        "cpu_count": os.cpu_count(), "loadavg_before": load_before, "chunk_s": 0.1,
        "final_tolerance_s": TOL_S, "latency_bound_s": BOUND_S, "loose_latency_bound_s": args.loose_bound_s,
    }}
    tmp = Path(tempfile.mkdtemp(prefix="peers-"))
    try:
        for key in [k.strip() for k in args.peers.split(",") if k.strip()]:
            if key not in PEERS:
                sys.exit(f"unknown peer {key!r} (wlk, wlk-simul, wl)")
            name = PEERS[key]["name"]
            print(f"[peers] {name}: running ...", file=sys.stderr, flush=True)
            try:
                rep = bench_peer(key, clips, streams, args, logdir, tmp)
            except Exception as err:  # report the failure, go on with the next peer
                rep = {"failure": f"{type(err).__name__}: {err}"}
            rep.update(STATIC[key])
            report["peers"][name] = rep
            print(f"[peers] {name}: done {json.dumps({k: rep.get(k) for k in ('error_rate', 'final_latency_p50_s', 'final_latency_p95_s', 'max_realtime_streams', 'max_streams_within_loose_bound', 'failure')}, ensure_ascii=False)}",
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open("/proc/loadavg") as f:
        report["setup"]["loadavg_after"] = f.read().split()[:3]
    report["setup"]["wall_s"] = round(time.monotonic() - t0, 1)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(markdown(report))
    print(f"\n(written {args.out}; {report['setup']['wall_s']} s)")
    return 0 if all("failure" not in p for p in report["peers"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

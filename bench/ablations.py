"""Ablations of the bilingual mechanisms, non-speech hallucinations, and phrase biasing.

Each row restarts the live stack with one mechanism switched off (TANDEM_ASR_* settings)
and streams the code-switched streams, the short clips (< 4 s) and synthetic non-speech
(silence, low noise, noise bursts) in fast mode: error rates, language attribution, flaps,
spurious switches and non-speech hallucinations (any final on non-speech) are compared
with the row where everything is on. Latency rows need real time and are in the main table.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from bench import metrics
from bench.eval import evaluate
from bench.manifest import Entry
from clients.audio import write_wav
from clients.local_stack import LocalStack

ABLATIONS: list[tuple[str, dict[str, str]]] = [
    ("all on", {}),
    ("no pair constraint", {"TANDEM_ASR_PAIR_CONSTRAINT": "false"}),
    ("no hysteresis", {"TANDEM_ASR_HYSTERESIS_WINDOWS": "1", "TANDEM_ASR_HYSTERESIS_THRESHOLD": "0"}),
    ("no switch probe (in-segment switch)", {"TANDEM_ASR_SWITCH_PROBE": "false"}),
    ("no short-text script rule", {"TANDEM_ASR_SHORT_TEXT_CHARS": "0"}),
    ("no flush at VAD silences", {"TANDEM_ASR_VAD_FLUSH": "false"}),
    ("no universal padding", {"TANDEM_ASR_UNIVERSAL_PADDING": "false"}),
    ("no hallucination guards", {"TANDEM_ASR_HALLUCINATION_GUARDS": "false"}),
    ("finals forced to keep the LocalAgreement prefix", {"TANDEM_ASR_COMMIT_PREFIX": "true"}),
    ("finals padded to 30 s (as offline; not a mechanism)", {"TANDEM_ASR_FINAL_QUANTUM_S": "30"}),
    ("prompt: same-language text (hygiene)", {"TANDEM_ASR_PROMPT_CHARS": "200"}),
    ("prompt: all languages (no hygiene)", {"TANDEM_ASR_PROMPT_CHARS": "200", "TANDEM_ASR_PROMPT_HYGIENE": "false"}),
]


def non_speech_entries(folder: Path, pair: tuple[str, str] = ("ja", "en")) -> list[Entry]:
    """Synthetic clips with no speech at all: any final on them is a hallucination."""
    rng = np.random.default_rng(7)
    clips = {
        "silence_3s": np.zeros(48000),
        "noise_-50dBFS_3s": rng.standard_normal(48000) * 10 ** (-50 / 20),
        "noise_-30dBFS_2s": rng.standard_normal(32000) * 10 ** (-30 / 20),
        "bursts_cough_like": np.concatenate([
            np.concatenate([np.zeros(8000), rng.standard_normal(3200) * np.hanning(3200) * 0.3]) for _ in range(4)]),
    }
    entries = []
    for name, audio in clips.items():
        path = folder / f"{name}.wav"
        write_wav(path, np.clip(audio * 32767, -32768, 32767).astype(np.int16))
        entries.append(Entry(name, path, pair, (), False))
    return entries


def row(name: str, traces, non_speech_ids: set[str]) -> dict:
    speech = [t for t in traces if t.entry.id not in non_speech_ids]
    summary = metrics.summarize(speech)
    short = metrics.summarize([t for t in speech if not t.entry.is_stream])
    hallucinated = [f.text for t in traces if t.entry.id in non_speech_ids for f in metrics.finals_of(t.responses)]
    return {
        "name": name,
        "error_rate": summary["error_rate"],
        "short_clip_error_rate": short["error_rate"],
        "language_attribution": summary["language_attribution"],
        "flaps": summary["flaps"],
        "spurious_switches": summary["spurious_switches"],
        "non_speech_finals": len(hallucinated),
        "non_speech_texts": hallucinated,
    }


def run(stream_entries: list[Entry], clip_entries: list[Entry], log, rows: list[str] | None = None) -> list[dict]:
    short_clips = [e for e in clip_entries if e.duration_s < 4.0]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        non_speech = non_speech_entries(Path(tmp))
        entries = stream_entries + short_clips + non_speech
        for name, env in ABLATIONS:
            if rows and name not in rows:
                continue
            print(f"ablation: {name}", file=log, flush=True)
            with LocalStack(log=log, label="ablation", env=env) as stack:
                traces, _ = evaluate(stack.session_address, entries, realtime=False, log=log)
            results.append(row(name, traces, {e.id for e in non_speech}))
    return results


def phrase_bias(target_entries: list[Entry], session_address: str, log) -> list[dict]:
    """CER/WER of clips with and without their phrase list (bench/phrases.json)."""
    import grpc

    from bench import runner
    from clients.scoring import error_rate

    lists = json.loads((Path(__file__).parent / "phrases.json").read_text(encoding="utf-8"))
    out = []
    with grpc.insecure_channel(session_address) as channel:
        for entry in target_entries:
            if entry.id not in lists:
                continue
            ref = " ".join(s.text for s in entry.segments)
            lang = entry.segments[0].language
            texts = {}
            for label, phrases in (("without", None), ("with", lists[entry.id])):
                trace = runner.run(channel, entry, realtime=False, translate=False, phrases=phrases)
                texts[label] = " ".join(f.text for f in metrics.finals_of(trace.responses))
            out.append({"id": entry.id, "phrases": lists[entry.id], "reference": ref,
                        "without": {"text": texts["without"], "error_rate": error_rate(ref, texts["without"], lang)},
                        "with": {"text": texts["with"], "error_rate": error_rate(ref, texts["with"], lang)}})
            print(f"  phrases {entry.id}: {out[-1]['without']['error_rate']:.3f} -> {out[-1]['with']['error_rate']:.3f}",
                  file=log, flush=True)
    return out


def markdown(rows: list[dict]) -> str:
    langs = sorted({lang for r in rows for lang in r["error_rate"]})
    head = "| ablation | " + " | ".join(f"{'WER' if l in ('en', 'vi') else 'CER'} {l}" for l in langs) + \
        " | short clips (en/zh/ja/ko) | attribution | flaps | spurious switches | non-speech finals |"
    lines = [head, "|" + "---|" * (len(langs) + 6)]
    for r in rows:
        short = "/".join(f"{r['short_clip_error_rate'].get(l, float('nan')):.2f}" for l in ("en", "zh", "ja", "ko")
                         if l in r["short_clip_error_rate"])
        lines.append(f"| {r['name']} | " + " | ".join(f"{r['error_rate'].get(l, float('nan')):.3f}" for l in langs)
                     + f" | {short} | {r['language_attribution']:.3f} | {r['flaps']} | {r['spurious_switches']} | "
                     f"{r['non_speech_finals']} |")
    return "\n".join(lines)


def phrase_markdown(items: list[dict]) -> str:
    lines = ["| clip | phrases | without | with |", "|---|---|---|---|"]
    for it in items:
        phrases = "; ".join(p for ps in it["phrases"].values() for p in ps)
        lines.append(f"| {it['id']} | {phrases} | {it['without']['error_rate']:.3f} | {it['with']['error_rate']:.3f} |")
    return "\n".join(lines)

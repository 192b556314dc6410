"""The offline ceiling: Whisper on whole reference segments, as the brief measures it.

Same weights (CTranslate2 int8), the mel padded to the full 30 s window, beam 5, language
forced to the reference; language ID is the pair-restricted language token on the same
encoder output. Streams are cut at their reference segment boundaries.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

from bench.manifest import Entry
from clients.scoring import edit_distance, tokens
from services.asr.engine import Ct2WhisperEngine, EngineOptions
from services.asr.language import best


def _base(code: str) -> str:
    return code.split("-")[0].lower()


def run(entries: list[Entry], model_dir: Path, beam_size: int = 5) -> dict:
    engine = Ct2WhisperEngine(model_dir / "whisper-base-ct2", EngineOptions(pad_quantum_s=30.0))
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    lid_right = lid_total = 0
    compute_s = audio_s = 0.0
    per_segment = []
    for entry in entries:
        pcm = entry.pcm().astype("float32") / 32768.0
        for ref in entry.segments:
            audio = pcm[int(ref.start_s * 16000):int(ref.end_s * 16000)]
            t0 = time.perf_counter()
            encoded = engine.encode(audio)
            detected, _ = best(engine.detect(encoded, entry.languages))
            decoded = engine.decode(encoded, ref.language, beam_size=beam_size)
            compute_s += time.perf_counter() - t0
            audio_s += len(audio) / 16000
            lang = _base(ref.language)
            ref_tokens = tokens(ref.text, lang)
            edits = edit_distance(ref_tokens, tokens(decoded.text, lang))
            counts[lang][0] += edits
            counts[lang][1] += len(ref_tokens)
            lid_total += 1
            lid_right += _base(detected) == lang
            per_segment.append({"id": entry.id, "language": lang, "detected": detected, "text": decoded.text,
                                "error_rate": edits / max(1, len(ref_tokens))})
    return {
        "error_rate": {lang: e / n for lang, (e, n) in sorted(counts.items()) if n},
        "language_id_accuracy": lid_right / lid_total if lid_total else None,
        "real_time_factor": compute_s / audio_s if audio_s else None,
        "segments": per_segment,
    }

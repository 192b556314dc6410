"""Reading an evaluation manifest (the format of ../shared/eval, documented in its README).

An entry with `segments` is a code-switched stream (its `language` may be `mul`); an entry
without is a single-language clip, whose one reference segment spans the clip's speech
(found by the same energy rule the eval set uses: 35 dB under the loudest 20 ms frame).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from clients.audio import read_wav


@dataclasses.dataclass(frozen=True)
class RefSegment:
    start_s: float
    end_s: float
    language: str
    text: str


@dataclasses.dataclass(frozen=True)
class Entry:
    id: str
    path: Path
    languages: tuple[str, ...]  # the pair to configure
    segments: tuple[RefSegment, ...]
    is_stream: bool

    @property
    def duration_s(self) -> float:
        return len(self.pcm()) / 16000

    def pcm(self) -> np.ndarray:
        return read_wav(self.path)


def speech_bounds(pcm: np.ndarray, rate: int = 16000) -> tuple[float, float]:
    frame = rate // 50
    n = max(1, len(pcm) // frame)
    x = pcm[: n * frame].astype(np.float64).reshape(n, frame) / 32768.0
    db = 10 * np.log10(np.mean(x * x, axis=1) + 1e-12)
    active = np.nonzero(db > db.max() - 35.0)[0]
    if len(active) == 0:
        return 0.0, len(pcm) / rate
    return active[0] * frame / rate, (active[-1] + 1) * frame / rate


def _base(code: str) -> str:
    return code.split("-")[0].lower()


def load(manifest: Path, pair_for_clips: str = "en") -> list[Entry]:
    """Entries of a manifest; single-language clips are run with the pair (language, `pair_for_clips`)."""
    entries = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        path = (manifest.parent / item["path"]).resolve()
        if item.get("segments"):
            segments = tuple(RefSegment(s["start_s"], s["end_s"], s["language"], s["text"]) for s in item["segments"])
            languages = tuple(item.get("languages") or dict.fromkeys(s.language for s in segments))
            entries.append(Entry(item["id"], path, languages, segments, True))
        else:
            lang = item["language"]
            other = "zh" if _base(lang) == _base(pair_for_clips) else pair_for_clips
            start, end = speech_bounds(read_wav(path))
            entries.append(Entry(item["id"], path, (lang, other), (RefSegment(start, end, lang, item["text"]),), False))
    return entries

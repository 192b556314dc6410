"""Scoring of transcripts against references: normalisation, WER/CER, language attribution.

Normalisation (documented in README): NFKC (full-width -> half-width), lower case,
punctuation removed, Chinese unified to Simplified (OpenCC t2s), whitespace collapsed.
WER for space-delimited languages (en, vi, ko words), CER for ja/zh (characters, spaces
ignored).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

CER_LANGUAGES = {"ja", "zh", "ko"}


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def normalize(text: str, language: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    if language.startswith("zh"):
        text = _t2s().convert(text)
    text = "".join(" " if unicodedata.category(ch)[0] in "PSZ" and ch not in "'" else ch for ch in text)
    return " ".join(text.split())


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def tokens(text: str, language: str) -> list[str]:
    """Scoring units: characters for ja/zh/ko (spaces ignored), words otherwise."""
    norm = normalize(text, language)
    base = language.split("-")[0]
    return list(norm.replace(" ", "")) if base in CER_LANGUAGES else norm.split()


def error_rate(reference: str, hypothesis: str, language: str) -> float:
    ref = tokens(reference, language)
    return edit_distance(ref, tokens(hypothesis, language)) / max(1, len(ref))

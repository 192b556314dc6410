"""LocalAgreement-2 commit policy (after ufal/whisper_streaming's HypothesisBuffer), pure.

Successive hypotheses of the same growing audio are compared unit by unit (words for
space-delimited scripts, characters for CJK). The longest common prefix of the last two
hypotheses, beyond what is already committed, is committed: it will never be taken back.
"""

from __future__ import annotations

import re
import unicodedata

# Scripts written without spaces (Han, kana) are compared character by character; Hangul
# and everything else word by word.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def units(text: str) -> list[str]:
    """Split into comparison units: CJK characters one by one, other words by spaces."""
    out: list[str] = []
    for word in text.split():
        if _CJK.search(word):
            buf = ""
            for ch in word:
                if _CJK.match(ch):
                    if buf:
                        out.append(buf)
                        buf = ""
                    out.append(ch)
                else:
                    buf += ch
            if buf:
                out.append(buf)
        else:
            out.append(word)
    return out


def _key(unit: str) -> str:
    """Comparison key: case and punctuation do not block agreement."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", unit).lower() if not unicodedata.category(ch).startswith("P"))


def join_units(parts: list[str]) -> str:
    """Inverse of `units` up to spacing: no space next to a CJK character, one elsewhere."""
    text = ""
    for part in parts:
        if text and not (_CJK.match(part[0]) or _CJK.match(text[-1])):
            text += " "
        text += part
    return text


class LocalAgreement:
    """Commits the prefix two consecutive hypotheses agree on."""

    def __init__(self, agreement: int = 2) -> None:
        if agreement < 1:
            raise ValueError("agreement must be >= 1")
        self.agreement = agreement
        self.committed: list[str] = []
        self._history: list[list[str]] = []

    @property
    def tentative(self) -> list[str]:
        last = self._history[-1] if self._history else []
        return last[len(self.committed) :]

    def insert(self, hypothesis: list[str]) -> list[str]:
        """Add a hypothesis (units, beginning with the committed ones); return newly committed units."""
        self._history = (self._history + [hypothesis])[-self.agreement :]
        if len(self._history) < self.agreement:
            return []
        n = len(self.committed)
        newly: list[str] = []
        while True:
            i = n + len(newly)
            candidates = [h[i] if i < len(h) else None for h in self._history]
            if candidates[0] is None or any(c is None or _key(c) != _key(candidates[0]) for c in candidates):
                break
            newly.append(candidates[-1])
        self.committed.extend(newly)
        return newly

    def stability(self) -> float:
        total = len(self.committed) + len(self.tentative)
        return 1.0 if total == 0 else len(self.committed) / total

    def reset(self) -> None:
        self.committed = []
        self._history = []

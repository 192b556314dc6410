"""Language policy, pure: BCP-47 <-> Whisper codes, the pair restriction, switch hysteresis,
short-text resolution by script (and finals whose script contradicts their language), and
Chinese script conversion.

Nothing here calls a model; the engine hands over Whisper's language probabilities and
the stream asks these objects what to do with them.
"""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache

# Configurable BCP-47 code -> Whisper language token code.
_ALIASES = {
    "zh": "zh", "zh-hans": "zh", "zh-hant": "zh", "zh-cn": "zh", "zh-tw": "zh", "zh-hk": "zh",
    "cmn": "zh", "yue": "yue",
}
# Whisper's 99 (+yue) languages, by token code.
WHISPER_LANGUAGES = frozenset(
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th "
    "ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr "
    "pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt "
    "haw ln ha ba jw su yue".split()
)


class UnsupportedLanguage(ValueError):
    pass


def canonical_code(code: str) -> str:
    """Normalise a configured code's case: 'ZH-hans' -> 'zh-Hans', 'EN' -> 'en'."""
    parts = code.strip().replace("_", "-").split("-")
    out = [parts[0].lower()]
    for p in parts[1:]:
        out.append(p.title() if len(p) == 4 else p.upper() if len(p) == 2 else p.lower())
    return "-".join(out)


def whisper_code(code: str) -> str:
    """The Whisper language token code for a configured BCP-47 code, or UnsupportedLanguage."""
    key = code.strip().lower().replace("_", "-")
    base = _ALIASES.get(key, key.split("-")[0])
    if base not in WHISPER_LANGUAGES:
        raise UnsupportedLanguage(f"unsupported language code {code!r}")
    return base


def restrict_to_pair(probs: dict[str, float], pair: tuple[str, ...]) -> dict[str, float]:
    """Keep the configured languages' probabilities (by Whisper code) and renormalise.

    `probs` maps Whisper codes to probabilities; the result maps each configured code to
    its share of the pair's mass (uniform if the pair has no mass at all).
    """
    kept = {code: probs.get(whisper_code(code), 0.0) for code in pair}
    total = sum(kept.values())
    if total <= 0:
        return {code: 1.0 / len(pair) for code in pair}
    return {code: p / total for code, p in kept.items()}


def best(probs: dict[str, float]) -> tuple[str, float]:
    code = max(probs, key=lambda c: probs[c])
    return code, probs[code]


@dataclasses.dataclass(frozen=True)
class HysteresisOptions:
    windows: int = 2  # consecutive windows that must agree on the new language
    threshold: float = 0.75  # each with at least this (pair-renormalised) confidence


class SwitchDetector:
    """Commits a language change only after `windows` consecutive confident votes for it."""

    def __init__(self, committed: str | None, options: HysteresisOptions = HysteresisOptions()) -> None:
        self.committed = committed
        self.options = options
        self._votes: list[str] = []
        self.first_vote_index: int | None = None  # index of the first vote of the pending run
        self.switch_index: int | None = None  # first vote index of the last confirmed switch

    def vote(self, language: str, confidence: float, index: int = 0) -> bool:
        """Record one window's language; True when this vote confirms a switch."""
        if self.committed is None:
            self.committed = language
            return False
        if language == self.committed or confidence < self.options.threshold:
            self._votes = []
            self.first_vote_index = None
            return False
        if self._votes and self._votes[-1] != language:
            self._votes = []
        if not self._votes:
            self.first_vote_index = index
        self._votes.append(language)
        if len(self._votes) >= self.options.windows:
            self.committed = language
            self.switch_index = self.first_vote_index
            self._votes = []
            self.first_vote_index = None
            return True
        return False

    @property
    def pending(self) -> str | None:
        """The language of the pending run of votes (a suspected switch), if any."""
        return self._votes[-1] if self._votes else None

    def reset(self, committed: str | None) -> None:
        self.committed = committed
        self._votes = []
        self.first_vote_index = None


_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_VI = re.compile(r"[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", re.IGNORECASE)
_LATIN = re.compile(r"[A-Za-z]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
# Whisper languages not written in Latin script (their output never is Latin-only).
_NON_LATIN = frozenset(
    "zh yue ja ko ru uk be bg mk sr kk tg mn ba tt ar fa ur ps sd he yi hi mr ne sa bn as pa gu ta te kn ml "
    "si th lo km my bo ka hy el am".split()
)


def script_language(text: str, pair: tuple[str, ...]) -> str | None:
    """The language a short fragment's script proves, among the pair; None if ambiguous."""
    bases = {whisper_code(c): c for c in pair}
    if _KANA.search(text) and "ja" in bases:
        return bases["ja"]
    if _HANGUL.search(text) and "ko" in bases:
        return bases["ko"]
    if _VI.search(text) and "vi" in bases:
        return bases["vi"]
    if _HAN.search(text) or _KANA.search(text) or _HANGUL.search(text):
        return None  # Han alone is shared by ja and zh
    if _LATIN.search(text) and not _VI.search(text):
        latin = [code for base, code in bases.items() if base not in _NON_LATIN and base != "vi"]
        return latin[0] if len(latin) == 1 else None  # two Latin-script languages: ambiguous
    return None


def script_contradiction(text: str, language: str, pair: tuple[str, ...]) -> str | None:
    """The pair's other language when the text's script proves it was not `language`
    (Latin-only text decoded under ja, kana under en, ...); None otherwise."""
    proven = script_language(text, pair) if text else None
    return proven if proven is not None and proven != language else None


@lru_cache(maxsize=4)
def _opencc(config: str):
    import opencc

    return opencc.OpenCC(config)


def convert_script(text: str, language_code: str) -> str:
    """Chinese output in the configured script: zh/zh-Hans -> Simplified, zh-Hant -> Traditional."""
    code = language_code.lower()
    if not code.startswith("zh"):
        return text
    return _opencc("s2t" if code in ("zh-hant", "zh-tw", "zh-hk") else "t2s").convert(text)


@dataclasses.dataclass(frozen=True)
class LanguageDecision:
    language: str  # the segment's language
    commit: bool  # whether the stream's committed language becomes `language`


def decide_final_language(
    final: tuple[str, float],
    votes: list[tuple[str, float]],
    committed: str | None,
    text: str,
    pair: tuple[str, ...],
    options: HysteresisOptions = HysteresisOptions(),
    short_text_chars: int = 6,
) -> LanguageDecision:
    """The language of a finished segment that no confirmed switch fixed.

    `final` is the pair-restricted language of the whole segment; `votes` those of its interim
    windows, oldest first. A language other than the committed one wins only when the last
    `options.windows` votes (the final's included) all name it with at least
    `options.threshold`. Text shorter than `short_text_chars` is judged by its script and
    never changes the committed language (fillers, coughs).
    """
    if short_text_chars and len(text.replace(" ", "")) < short_text_chars:
        judged = script_language(text, pair) or committed or final[0]
        return LanguageDecision(judged, commit=committed is None)
    language, _ = final
    if committed is None or language == committed:
        return LanguageDecision(language, commit=True)
    run = [*votes, final][-options.windows:]
    if len(run) >= options.windows and all(lang == language and conf >= options.threshold for lang, conf in run):
        return LanguageDecision(language, commit=True)
    return LanguageDecision(committed, commit=False)

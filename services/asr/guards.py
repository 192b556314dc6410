"""Hallucination guards, pure: what Whisper says on silence or short noise is not speech.

- no-speech: the no-speech probability is high and the decode is not confident;
- repetition loops: consecutive duplicate sentences are collapsed; what still compresses
  too well (gzip ratio, as openai-whisper measures it) is dropped;
- known silence hallucinations (subtitle credits, "Thanks for watching!", ...), matched on
  normalised text.
`check()` returns the text to keep (possibly cleaned) and the reason when something was suppressed.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
import zlib

KNOWN_HALLUCINATIONS = (
    "thanks for watching", "thank you for watching", "thanks for watching and see you next time",
    "please subscribe", "subscribe to my channel", "like and subscribe",
    "subtitles by the amara.org community", "subtitles by the amaraorg community",
    "transcription by castingwords", "you", "bye", "thank you",
    "ご視聴ありがとうございました", "ご覧いただきありがとうございます", "チャンネル登録よろしくお願いします",
    "字幕由amaraorg社区提供", "字幕由amara.org社区提供", "请不吝点赞订阅转发打赏支持明镜与点点栏目",
    "谢谢观看", "感谢观看", "字幕志愿者", "中文字幕",
    "시청해주셔서 감사합니다", "구독과 좋아요 부탁드립니다", "mbc 뉴스",
    "hẹn gặp lại các bạn trong những video tiếp theo", "cảm ơn các bạn đã theo dõi",
)


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return " ".join(text.split())


_KNOWN = {_norm(p) for p in KNOWN_HALLUCINATIONS}
_KNOWN_NOSPACE = {k.replace(" ", "") for k in _KNOWN}
_SENTENCE = re.compile(r"[^.!?。！？]+[.!?。！？]*")


@dataclasses.dataclass(frozen=True)
class GuardOptions:
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    # Bare short phrases ("you", "thank you") are only dropped with this little confidence.
    weak_logprob: float = -0.7


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def collapse_repeats(text: str) -> str:
    """Drop consecutive duplicate sentences ("Seven of clubs. Seven of clubs." -> once)."""
    sentences = [s.strip() for s in _SENTENCE.findall(text) if s.strip()]
    kept: list[str] = []
    for s in sentences:
        if not kept or _norm(s) != _norm(kept[-1]):
            kept.append(s)
    joiner = "" if re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", text) else " "
    return joiner.join(kept) if kept else text


def strip_padding_echo(text: str, pad_text: str) -> str:
    """Universal padding's text repeated by the decoder after its forced copy.

    On very short unclear audio Whisper can say the padding clip again ("Bye bye.", "Okay,
    bye bye." on a 0.45 s fragment, measured): a leading run of the padding text's words is
    removed when it contains the text's last word ("bye"), so a genuine leading "Okay" stays.
    """
    pad_words = _norm(pad_text).split()
    if not pad_words:
        return text
    words = text.split()
    run = 0
    while run < len(words) and _norm(words[run]) and all(w in pad_words for w in _norm(words[run]).split()):
        run += 1
    if run and pad_words[-1] in _norm(" ".join(words[:run])).split():
        return " ".join(words[run:])
    return text


def check(text: str, no_speech_prob: float, avg_logprob: float,
          options: GuardOptions = GuardOptions()) -> tuple[str, str | None]:
    """(text to emit, suppression reason or None). An empty text means: nothing was said."""
    if not text.strip():
        return "", None
    if no_speech_prob > options.no_speech_threshold and avg_logprob < options.logprob_threshold:
        return "", "no_speech"
    norm = _norm(text)
    if norm in _KNOWN or norm.replace(" ", "") in _KNOWN_NOSPACE:
        short_ok = len(norm) > 12 or avg_logprob < options.weak_logprob or no_speech_prob > 0.3
        if short_ok:
            return "", "known_phrase"
    cleaned = collapse_repeats(text)
    if len(cleaned) >= 24 and compression_ratio(cleaned) > options.compression_ratio_threshold:
        return "", "repetition"
    return cleaned, ("repetition" if cleaned != text else None)

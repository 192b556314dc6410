"""One live recognition stream: orchestrates VAD, Whisper windows and the policies.

Audio comes in with `feed()` (cheap: VAD only, plus finals at VAD silences); `step()` runs
at most one Whisper window on the open segment (interim result, switch probe, forced cut
at the maximum segment length); `finish()` closes the stream. The policies it consults
(`SpeechSegmenter`, `LocalAgreement`, `SwitchDetector`, `script_language`) are pure and
tested apart; the engine is anything that implements `WhisperEngine`. Events are plain
dataclasses; the servicer turns them into protobuf messages.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Union

import numpy as np

from services.asr.commit import LocalAgreement, join_units, units
from services.asr.engine import Decoded, WhisperEngine
from services.asr.features import SAMPLE_RATE
from services.asr.language import HysteresisOptions, SwitchDetector, best, convert_script, script_language
from services.asr.vad import FRAME_SAMPLES, SegmenterOptions, SileroVad, SpeechSegmenter


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    languages: tuple[str, ...]
    initial_language: str | None = None
    interim_results: bool = True
    partial_interval_s: float = 0.5  # re-decode the open segment this often
    min_decode_s: float = 0.4  # no interim decode before this much speech
    max_segment_s: float = 15.0  # force a final at the quietest point beyond this
    min_silence_s: float = 0.5  # VAD silence that ends a segment
    speech_pad_s: float = 0.15  # audio kept before speech start / after speech end
    beam_size: int = 1  # final decode
    lock_after_s: float = 1.5  # a segment's language is locked once text is committed and it is this long
    keep_locked_above: float = 0.25  # a final keeps the locked language unless its probability is below this
    switch_probe_s: float = 2.0  # trailing seconds whose language is probed for a switch
    hysteresis: HysteresisOptions = HysteresisOptions()
    short_text_chars: int = 6  # finals shorter than this are judged by script
    prompt_chars: int = 0  # committed text of the current language fed as prompt (0 = off)
    no_speech_threshold: float = 0.6  # with a low avg log-prob, a window is silence


@dataclasses.dataclass(frozen=True)
class Result:
    segment_id: int
    revision: int
    is_final: bool
    stability: float
    start_s: float
    end_s: float
    language: str
    confidence: float
    text: str
    final_reason: str = ""  # "end_of_speech" | "language_switch" | "max_duration" | "end_of_stream"


@dataclasses.dataclass(frozen=True)
class SpeechBoundary:
    kind: str  # "start" | "end"
    offset_s: float


@dataclasses.dataclass(frozen=True)
class LanguageSwitched:
    from_language: str
    to_language: str
    offset_s: float


Event = Union[Result, SpeechBoundary, LanguageSwitched]


@dataclasses.dataclass
class _Segment:
    start: int  # stream sample
    language: str | None  # fixed when the segment was opened by a confirmed switch
    language_fixed: bool  # locked: only a confirmed switch changes it
    opened_by_switch: bool
    agreement: LocalAgreement
    detector: SwitchDetector
    segment_id: int | None = None
    revision: int = 0
    last_decode_end: int = 0
    confidence: float = 0.0


@dataclasses.dataclass
class StreamStats:
    windows: int = 0
    inference_seconds: float = 0.0


class RecognitionStream:
    def __init__(self, engine: WhisperEngine, vad: SileroVad, options: StreamOptions) -> None:
        if not 1 <= len(options.languages) <= 2:
            raise ValueError("one or two languages")
        self.engine = engine
        self.options = options
        self.pair = options.languages
        self._vad = vad.new_state()
        self._segmenter = SpeechSegmenter(SegmenterOptions(
            min_silence_frames=max(1, round(options.min_silence_s * SAMPLE_RATE / FRAME_SAMPLES))))
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_base = 0  # stream sample index of self._audio[0]
        self._probs: list[float] = []  # VAD probability per frame since stream start
        self.total = 0  # samples received
        self._segment: _Segment | None = None
        self._last_segment_end = 0
        self._next_segment_id = 0
        self.language: str | None = options.initial_language or (self.pair[0] if len(self.pair) == 1 else None)
        self._context: dict[str, str] = {}  # committed text per language (prompt hygiene)
        self.stats = StreamStats()
        self.on_window = None  # optional callback(seconds) for metrics

    # ---- input -------------------------------------------------------------------------
    def feed(self, pcm: np.ndarray) -> list[Event]:
        """Append float32 audio; run VAD; close segments at silences (finals)."""
        self._audio = np.concatenate([self._audio, pcm.astype(np.float32, copy=False)])
        self.total += len(pcm)
        probs = self._vad.process(pcm)
        self._probs.extend(probs.tolist())
        events: list[Event] = []
        pad = int(self.options.speech_pad_s * SAMPLE_RATE)
        for vad_event in self._segmenter.push(probs):
            sample = vad_event.frame * FRAME_SAMPLES
            if vad_event.kind == "start" and self._segment is None:
                start = max(self._last_segment_end, sample - pad, self._audio_base)
                self._open(start, self.language, fixed=False)
                events.append(SpeechBoundary("start", start / SAMPLE_RATE))
            elif vad_event.kind == "end" and self._segment is not None:
                end = min(self.total, sample + pad)
                events.append(SpeechBoundary("end", end / SAMPLE_RATE))
                events += self._finalize(end, "end_of_speech")
        self._trim()
        return events

    def step(self) -> list[Event]:
        """At most one interim window on the open segment, if one is due."""
        seg = self._segment
        if seg is None:
            return []
        o = self.options
        if self.total - seg.start >= o.max_segment_s * SAMPLE_RATE:
            return self._force_cut()
        due = self.total - max(seg.last_decode_end, seg.start) >= o.partial_interval_s * SAMPLE_RATE
        if not due or self.total - seg.start < o.min_decode_s * SAMPLE_RATE:
            return []
        return self._interim(seg)

    def finish(self) -> list[Event]:
        """End of the audio: finalize what is open."""
        if self._segment is None:
            return []
        return [SpeechBoundary("end", self.total / SAMPLE_RATE), *self._finalize(self.total, "end_of_stream")]

    # ---- segments ----------------------------------------------------------------------
    def _open(self, start: int, language: str | None, fixed: bool) -> None:
        self._segment = _Segment(
            start=start,
            language=language,
            language_fixed=fixed,
            opened_by_switch=fixed,
            agreement=LocalAgreement(2),
            detector=SwitchDetector(language if fixed else None, self.options.hysteresis),
        )

    def _window(self, start: int, end: int) -> np.ndarray:
        return self._audio[start - self._audio_base : end - self._audio_base]

    def _timed(self, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        elapsed = time.perf_counter() - t0
        self.stats.inference_seconds += elapsed
        if self.on_window:
            self.on_window(elapsed)
        return out

    def _segment_id(self, seg: _Segment) -> int:
        if seg.segment_id is None:
            seg.segment_id = self._next_segment_id
            self._next_segment_id += 1
        return seg.segment_id

    def _interim(self, seg: _Segment) -> list[Event]:
        end = self.total
        encoded = self._timed(self.engine.encode, self._window(seg.start, end))
        self.stats.windows += 1
        seg.last_decode_end = end
        probs = self.engine.detect(encoded, self.pair)
        o = self.options
        if not seg.language_fixed:
            language, seg.confidence = best(probs)
            if seg.agreement.committed and self.total - seg.start >= o.lock_after_s * SAMPLE_RATE:
                seg.language_fixed = True  # text is committed in this language: only a switch changes it
            elif language != seg.language:
                seg.language = language
                seg.agreement.reset()
                seg.detector.reset(language)
        if seg.language_fixed:
            seg.confidence = probs[seg.language]
        if len(self.pair) > 1 and encoded.duration_s >= o.switch_probe_s + 1.0:
            tail_language, tail_confidence = best(self.engine.detect(encoded, self.pair, last_seconds=o.switch_probe_s))
            if seg.detector.vote(tail_language, tail_confidence, index=end) and tail_language != seg.language:
                return self._switch(seg, tail_language, seg.detector.switch_index or end)
        language = seg.language or self.pair[0]
        decoded = self._timed(self.engine.decode, encoded, language, prompt=self._context.get(language, ""))
        if self._is_silence(decoded):
            return []
        seg.agreement.insert(units(decoded.text))
        if not o.interim_results:
            return []
        result = Result(
            segment_id=self._segment_id(seg), revision=seg.revision, is_final=False,
            stability=seg.agreement.stability(), start_s=seg.start / SAMPLE_RATE, end_s=end / SAMPLE_RATE,
            language=language, confidence=seg.confidence, text=convert_script(decoded.text, language),
        )
        seg.revision += 1
        return [result]

    def _quietest(self, lo: int, hi: int) -> int:
        """Sample at the centre of the least speech-like VAD frame in [lo, hi)."""
        f_lo, f_hi = lo // FRAME_SAMPLES, max(lo // FRAME_SAMPLES + 1, hi // FRAME_SAMPLES)
        window = self._probs[f_lo:f_hi]
        if not window:
            return hi
        frame = f_lo + int(np.argmin(window))
        return frame * FRAME_SAMPLES + FRAME_SAMPLES // 2

    def _switch(self, seg: _Segment, new_language: str, first_vote_end: int) -> list[Event]:
        """Confirmed switch: close the old-language segment at the pause, open a new one."""
        probe = int(self.options.switch_probe_s * SAMPLE_RATE)
        lo = max(seg.start + int(0.5 * SAMPLE_RATE), first_vote_end - probe)
        hi = max(lo + FRAME_SAMPLES, first_vote_end - int(0.3 * SAMPLE_RATE))
        cut = self._quietest(lo, hi)
        old = seg.language or new_language
        events = self._finalize(cut, "language_switch", language=old)
        events.append(LanguageSwitched(old, new_language, cut / SAMPLE_RATE))
        self.language = new_language
        self._open(cut, new_language, fixed=True)
        return events

    def _force_cut(self) -> list[Event]:
        seg = self._segment
        assert seg is not None
        span = self.total - seg.start
        cut = self._quietest(seg.start + span * 2 // 3, self.total - FRAME_SAMPLES)
        language = seg.language if seg.language_fixed else None
        events = self._finalize(cut, "max_duration")
        self._open(cut, language or self.language, fixed=language is not None)
        return events

    def _finalize(self, end: int, reason: str, language: str | None = None) -> list[Event]:
        seg = self._segment
        assert seg is not None
        self._segment = None
        self._last_segment_end = end
        audio = self._window(seg.start, end)
        if len(audio) < int(0.1 * SAMPLE_RATE):
            return []
        o = self.options
        encoded = self._timed(self.engine.encode, audio)
        self.stats.windows += 1
        probs = self.engine.detect(encoded, self.pair)
        forced = language or (seg.language if seg.opened_by_switch else None)
        lang = forced or best(probs)[0]
        if not forced and seg.language_fixed and probs.get(seg.language, 0.0) >= o.keep_locked_above:
            lang = seg.language  # the whole segment does not clearly contradict the locked language
        # LocalAgreement: what interim windows committed stays, when it is in this language.
        prefix = join_units(seg.agreement.committed) if lang == seg.language else ""
        prefix = prefix.rstrip(".,!?;:。、，！？")  # an interim's closing punctuation must not stop the final

        def decode(language_code: str, prefix_text: str) -> Decoded:
            return self._timed(self.engine.decode, encoded, language_code, prompt=self._context.get(language_code, ""),
                               prefix=prefix_text, beam_size=o.beam_size)

        decoded = decode(lang, prefix)
        # Short fragments: the script decides; ambiguous ones keep the committed language.
        if not forced and len(self.pair) > 1 and len(decoded.text.replace(" ", "")) < o.short_text_chars:
            judged = script_language(decoded.text, self.pair) or self.language or lang
            if judged != lang:
                lang = judged
                decoded = decode(lang, "")
        text = "" if self._is_silence(decoded) else convert_script(decoded.text, lang)
        events: list[Event] = []
        if not text and seg.segment_id is None:
            return events
        if text and self.language is not None and lang != self.language and not forced:
            events.append(LanguageSwitched(self.language, lang, seg.start / SAMPLE_RATE))
        if text:
            self.language = lang
            self._context[lang] = (self._context.get(lang, "") + " " + decoded.text).strip()[-o.prompt_chars:] if o.prompt_chars else ""
        events.append(Result(
            segment_id=self._segment_id(seg), revision=seg.revision, is_final=True, stability=1.0,
            start_s=seg.start / SAMPLE_RATE, end_s=end / SAMPLE_RATE, language=lang,
            confidence=float(probs.get(lang, 1.0)), text=text, final_reason=reason,
        ))
        return events

    def _is_silence(self, decoded: Decoded) -> bool:
        return not decoded.text or (
            decoded.no_speech_prob > self.options.no_speech_threshold and decoded.avg_logprob < -1.0)

    def _trim(self) -> None:
        keep_from = self._segment.start if self._segment else max(self._last_segment_end, self.total - SAMPLE_RATE)
        keep_from = min(keep_from, self.total - SAMPLE_RATE)
        if keep_from > self._audio_base + 5 * SAMPLE_RATE:
            drop = keep_from - self._audio_base
            self._audio = self._audio[drop:]
            self._audio_base = keep_from

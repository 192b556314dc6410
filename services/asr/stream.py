"""One live recognition stream: orchestrates VAD, Whisper windows and the bilingual policies.

Audio comes in with `feed()` (cheap: VAD only, plus finals at VAD silences); `step()` runs
at most one Whisper window on the open segment (interim result, switch probe, forced cut
at the maximum segment length), inline or, given a `background` runner, on another thread
while `feed()` goes on (so a final never waits behind its stream's interim window);
`finish()` closes the stream. The policies it consults
(`SpeechSegmenter`, `LocalAgreement`, `SwitchDetector`, `decide_final_language`,
`guards.check`) are pure and tested apart; the engine is anything implementing
`WhisperEngine`. Every mechanism can be switched off in `StreamOptions` so its effect can
be measured (`make eval` ablations). Events are plain dataclasses; the servicer turns them
into protobuf messages.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Callable, NamedTuple, Union

import numpy as np

from services.asr import guards
from services.asr.commit import LocalAgreement, join_units, units
from services.asr.engine import Decoded, Encoded, Padding, WhisperEngine
from services.asr.features import SAMPLE_RATE
from services.asr.pacing import InterimWork
from services.asr.scheduler import FINAL, INTERIM, SPECULATIVE, SWITCH_PROBE
from services.asr.language import (
    HysteresisOptions, SwitchDetector, best, convert_script, decide_final_language, script_contradiction,
    whisper_code,
)
from services.asr.vad import FRAME_SAMPLES, SegmenterOptions, SileroVad, SpeechSegmenter


ONSET_CONFIRM = 0.8  # see StreamOptions.onset_probe_s
ONSET_HEARD = 0.5  # ... the onset slice's, in the window's context (the other language its best)
# A window due by the interval waits for one due after a dip this soon: one window at a time, and
# one started just before would hold the onset probe back by its run time (0.2-0.3 s under load).
ONSET_WAIT_S = 0.3
# An onset probe's window waits as long for one due after a later dip (speech between them),
# whose slices start at both dips (live, ko-en at N = 6: a window due after a breath inside the
# Korean ran 0.4-0.5 s and held the English onset's probe back by as much).
# ... and a window that another onset probe's window follows within this leaves its interim text
# to a later one: a text decode (0.4-0.8 s under load) held that window back by as much.
ONSET_TEXT_AHEAD_S = 0.5


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    languages: tuple[str, ...]
    initial_language: str | None = None
    # False (a client that asked for finals only): every interim window is probe-only (language
    # votes and the switch probe on the segment's tail, no text decoded), as for a live stream
    # behind real time (`step`'s "probe").
    interim_results: bool = True
    partial_interval_s: float = 1.0  # re-decode the open segment this often (stretched up to 4x under load)
    # A suspected switch's confirming window comes this soon after the one that voted for it (its
    # probes: the 2 s tail 0.5 s on, and the onset slices longer by as much), not an interval later
    # (0 = the interval). Votes 0.5 s apart are what the gap probes and the final's scan cast too.
    confirm_after_s: float = 0.5
    min_decode_s: float = 0.4  # no interim decode before this much speech
    max_segment_s: float = 15.0  # force a final at the quietest point beyond this
    min_silence_s: float = 0.6  # VAD silence that ends a segment
    # The final is decoded ahead once this much of that silence has passed (`bench.load`, N = 1:
    # final p95 1.56 s at 0.3, 1.42 s at 0.15; a live stream's draft in a breath is dropped).
    speculate_after_s: float = 0.15
    # ... while other streams took less than this share of the inference workers' last 2 s (above
    # 1 = always). On a saturated machine drafts in breaths (speech resumes) took the CPU the other
    # streams needed (and, on the stream's thread, blocked it for 1.3-1.9 s); there the final is decoded
    # when VAD confirms the silence. Drafting anyway, now dropped in breaths: N = 2 p95 6.49 vs 6.26 s
    # (a 2-core AMD EPYC). On a 2-core Xeon with AVX-512, where a draft costs a third of that, 0.25
    # kept drafts from every stream at N = 4-8 and their finals waited for the silence: at 0.75
    # (or always) N = 6 final p50 0.52 s against 0.73 s, and a switch's head final was mostly
    # decoded ahead at the turns' gap (`snap_cut_s`).
    speculate_below_busy: float = 0.75
    # A live stream's suspected switch (one probe for the other language): the head's final is
    # decoded ahead on another thread, at the cut that probe's window locates, at the scheduler's
    # lowest priority, while the confirming probe comes; the confirmed switch takes that cut if it
    # is within 0.25 s of its own. Same load rule as above. (Files and fast mode run windows
    # inline: no head drafts there.) Off by default: `bench.eval` at real time, two alternating
    # pairs, gave the slowest switch finals 0.2-0.3 s sooner (p95 of all finals 3.29 / 3.12 s
    # against 3.52 / 3.44 s) but ordinary finals' p95 1.61 / 1.59 against 1.54 / 1.51 s, means
    # equal: a false suspicion near the end of a turn spends the worker time its pause's draft needs.
    head_drafts: bool = False
    # False: no interim window while VAD hears a pause in the open segment (its last `pause_s` all
    # below VAD's silence threshold): it would only add silence to the text, and on a busy machine
    # it delays the final decoded ahead in that pause; the window runs when speech resumes. Off
    # by default: live, the shifted windows missed the in-segment switches of a ja/en stream
    # (attribution 0.979 -> 0.574 on ja-en_B-A-B_immediate).
    interim_in_pauses: bool = True
    pause_s: float = 0.2
    speech_pad_s: float = 0.15  # audio kept after speech end
    onset_pad_s: float = 0.4  # audio kept before speech start (Silero reacts late to soft onsets)
    beam_size: int = 5  # final decode (interim windows are greedy)
    # ... narrowed to this for finals longer than `long_final_s` (0 = not narrowed): a beam-5
    # decode of 9 s of English took 0.88 s here, beam 2 0.65 s (error rates in README, Benchmarks).
    long_final_beam: int = 2
    long_final_s: float = 6.0
    # --- mechanisms (each can be switched off for ablations) ---------------------------
    pair_constraint: bool = True  # Whisper's language token restricted to the pair
    hysteresis: HysteresisOptions = HysteresisOptions()  # windows=1, threshold=0 switches it off
    # A confirmed switch's cut moves to the end of a final the segment decoded ahead in a pause
    # if one lies this near (0 = never): `_snap_to_drafted_end`.
    snap_cut_s: float = 0.25
    switch_probe: bool = True  # probe the trailing seconds for a switch inside a segment
    switch_probe_s: float = 2.0
    # The probe reads the trailing frames of the window's encoder output, which attended to the whole
    # window: after a switch they lag a separate encode of the same seconds by about 1 s. When the
    # probe gives the other language at least this much (but not a confident vote), those seconds
    # are encoded apart (no padding, interim quantum) and that judgement votes instead (0 = never).
    probe_recheck_above: float = 0.2
    # A window more than 1.5 intervals after the last probe (windows spaced out under load), or the
    # confirming one of a suspected switch, also probes where the missing probes would have ended,
    # 0.5 s apart, on slices of its own encoder output (one batched decoder step): `_unprobed_ends`.
    probe_gaps: bool = True
    # Onset probes: a probing window whose last 1-2 s follow VAD dips (frames below the
    # segmenter's silence threshold) also probes the slice from each dip's end to its own end,
    # which holds only the speech after the dip. At an immediate switch that slice is the new
    # language alone, where the 2 s tail is still half the old one. If a slice hears the other
    # language (`ONSET_HEARD`: more than the segment's), the one that gives it most is encoded on
    # its own too, and if that gives it at least `ONSET_CONFIRM` the switch is confirmed at once
    # (and located as the others are): two judgements, one in the window's context and one
    # without. At 54 dips inside one-language speech of the eval set (1.0 s after them) none
    # passed both (of the 7 heard in context as the other language, the highest alone was 0.55;
    # the 3 that passed alone had at most 0.005 in context); at the 9 onsets both passed 0.8. The
    # slice in context is the less steady judgement: live, at ja-en_B-A-B_immediate's en->ja
    # turn it gave Japanese 0.62, 0.37, 0.73 and 0.17 at 1.0-1.3 s after the dip where the
    # seconds alone gave 0.92-0.99 (README, Benchmarks). A window comes `onset_probe_s` after a dip
    # whatever the interval (`_onset_due`). Slices from `onset_probe_s` to 2 s long (0 = off).
    onset_probe_s: float = 1.0
    # A segment of at least 2 probe spans that the live probes did not cover (a stretch of over 1.5
    # intervals without one: windows dropped by catch-up or the duty cycle, or spaced out under load),
    # or whose first language vote came so late that it judged later audio, is
    # scanned at its final: the switch probe replayed on 2 s slices of the final's encoder output,
    # 0.5 s apart, anchored on the first slice's language; a confirmed switch splits the final there.
    # "missed" (default): only such segments; "always": every long-enough segment; "off".
    final_switch_scan: str = "missed"
    # Probe-only windows (a caller behind real time, see step) encode at most this much of the
    # segment's tail: one 10 s mel, however long the segment (the whole segment is re-encoded
    # only for interim text).
    probe_window_s: float = 8.0
    short_text_chars: int = 6  # finals shorter than this are judged by script (0 = off)
    vad_flush: bool = True  # finals at VAD silences (off: only switches / max length cut)
    padding: Padding | None = None  # universal padding clip (None = off)
    padding_cutoff_s: float = 3.0  # ... prepended to windows shorter than this
    # Interim windows too short for the switch probe pad their mel to a multiple of this (None:
    # the engine's quantum). Longer windows keep the engine's: the probe reads their trailing
    # encoder frames, and on short-padded windows it located switches seconds late (measured).
    interim_quantum_s: float | None = 2.0
    probe_quantum_s: float | None = None  # ... and the longer (probing) ones to a multiple of this (None: engine's)
    # The final's mel padding quantum (None: the engine's 10 s). 30 s is what Whisper was trained on
    # and the offline ceiling uses: closer to it, at 3-5x the final's encoder time.
    final_quantum_s: float | None = None
    hallucination_guards: bool = True
    commit_prefix: bool = False  # the final is forced to keep the text LocalAgreement committed
    interim_prefix: bool = True  # interim windows force the committed text and only decode the rest
    prompt_chars: int = 0  # committed text fed as prompt (0 = none)
    prompt_hygiene: bool = True  # the prompt carries the current language's text only
    phrases: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # biasing, per language
    lock_after_s: float = 1.5  # a segment's language is locked once text is committed (or a window votes it) and it is this long
    keep_locked_above: float = 0.25  # a final keeps the locked language unless its probability is below this


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


class _DraftKey(NamedTuple):
    """What a final decoded ahead depends on: it is reused only for an equal key."""

    start: int
    end: int
    votes: int | None  # the segment's whole-window votes (None for a forced language: they do not count)
    language: str | None  # forced (a switch's head), or None (a final in a pause)
    pending_switch: tuple[int, str, str] | None


class _Suspicion(NamedTuple):
    """Where a suspected switch would cut, located by the window of its first probe vote."""

    cut: int
    old: str
    new: str
    first_vote: int


@dataclasses.dataclass(frozen=True)
class _Draft:
    key: _DraftKey
    language: str
    text: str
    confidence: float
    commit: bool  # whether the stream's committed language becomes `language`
    forced: bool  # the language was fixed by a confirmed switch
    split: tuple[int, str, str] | None = None  # (cut sample, old, new): a switch the final's scan found


@dataclasses.dataclass
class _Segment:
    start: int  # stream sample
    language: str | None
    language_fixed: bool  # locked: only a confirmed switch changes it
    opened_by_switch: bool
    agreement: LocalAgreement
    detector: SwitchDetector
    votes: list[tuple[str, float]] = dataclasses.field(default_factory=list)  # interim whole-window LID
    probe_ends: list[int] = dataclasses.field(default_factory=list)  # stream samples where live probes ended
    first_vote_at: int | None = None  # stream sample where its first whole-window language vote ended
    pending_switch: tuple[int, str, str] | None = None  # (cut, old, new) confirmed by a window, not yet cut
    suspected_cut: _Suspicion | None = None
    segment_id: int | None = None
    revision: int = 0
    last_decode_end: int = 0
    confidence: float = 0.0
    draft: _Draft | None = None  # the final decoded ahead during a pause
    # Encoder outputs of finals decoded ahead (kept when the draft itself is dropped), by end
    # sample: a final at that end (a switch's head snapped to it) only decodes.
    encoded: dict[int, Encoded] = dataclasses.field(default_factory=dict)
    closing_at: int | None = None  # the end its final is being made at (other drafts are dropped)
    onset_wait_from: int | None = None  # the stream sample since which an onset probe's window waits for a later one


@dataclasses.dataclass
class StreamStats:
    windows: int = 0
    inference_seconds: float = 0.0
    suppressed: dict[str, int] = dataclasses.field(default_factory=dict)


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
        # State shared with a window running in the background: held by feed/step/finish, and by
        # that window between its model calls (never during them).
        self._lock = threading.RLock()
        self._pending: list[Event] = []  # results of a window, out with the next feed/step/finish
        self._window_running = False
        self._window_done_at = 0  # stream sample when the last background text window finished
        self._window_error: BaseException | None = None
        # Keys of the finals being decoded ahead on other threads: one in a pause, one of a switch's head.
        self._drafting: set[_DraftKey] = set()
        self._draft_done = threading.Condition()
        self._stats_lock = threading.Lock()
        self.on_window: Callable[[float], None] | None = None  # metrics hook: seconds of one model call
        self.on_suppressed: Callable[[str], None] | None = None  # metrics hook: hallucination reason

    # ---- input -------------------------------------------------------------------------
    def feed(self, pcm: np.ndarray) -> list[Event]:
        """Append float32 audio; run VAD; close segments at silences (finals)."""
        with self._lock:
            return self._feed(pcm)

    def _feed(self, pcm: np.ndarray) -> list[Event]:
        events: list[Event] = self._take_pending()  # a window's interim goes out before its final
        self._audio = np.concatenate([self._audio, pcm.astype(np.float32, copy=False)])
        self.total += len(pcm)
        probs = self._vad.process(pcm)
        self._probs.extend(probs.tolist())
        pad = int(self.options.speech_pad_s * SAMPLE_RATE)
        for vad_event in self._segmenter.push(probs):
            sample = vad_event.frame * FRAME_SAMPLES
            if vad_event.kind == "start" and self._segment is None:
                onset = int(self.options.onset_pad_s * SAMPLE_RATE)
                start = max(self._last_segment_end, sample - onset, self._audio_base)
                self._open(start, self.language, fixed=False)
                events.append(SpeechBoundary("start", start / SAMPLE_RATE))
            elif vad_event.kind == "end" and self._segment is not None and self.options.vad_flush:
                end = min(self.total, sample + pad)
                events.append(SpeechBoundary("end", end / SAMPLE_RATE))
                events += self._finalize(end, "end_of_speech")
        self._trim()
        return events

    def step(self, work: InterimWork = "text",
             background: Callable[..., None] | None = None) -> list[Event]:
        """At most one interim window on the open segment, if one is due. A caller behind real
        time (`pacing.LivePacing`) asks for less: "probe" runs the window's language votes and
        switch probe without the interim text; "none" only the forced cut and the final
        decoded ahead. With `background` (`background(job, window=True)` runs `job` on another
        thread; `window=False` for a final decoded ahead) the window's model calls run there;
        its interim result, or the switch it confirms, comes out of the next feed/step/finish,
        and a final made meanwhile supersedes it. One window at a time, and none while a final
        is decoded ahead."""
        with self._lock:
            events = self._take_pending()
            return events + self._step(work, background)

    def _step(self, work: InterimWork, background) -> list[Event]:
        seg = self._segment
        if seg is None:
            return []
        if seg.pending_switch is not None:  # confirmed by a window that ran in the background
            return self._cut_at_pending_switch(seg)
        o = self.options
        end = self._speech_probably_ended()
        if end is not None:  # decode the final now, so it is ready when the silence is confirmed
            if self._room_to_draft():
                if background is None:
                    self._draft_final(seg, end, None)
                else:
                    self._draft_in_background(seg, end, background)
            return []  # (no forced cut either: VAD is about to end the segment)
        if self.total - seg.start >= o.max_segment_s * SAMPLE_RATE:
            return self._force_cut()
        if background is not None and seg.suspected_cut is not None and self._room_to_draft():
            head = seg.suspected_cut  # the head's final, decoded while the confirming probe comes
            self._draft_in_background(seg, head.cut, background, language=head.old)
        if work == "none" or self._window_running or self._drafting_pause or \
                (o.vad_flush and not o.interim_in_pauses and self._in_pause()):
            return []  # (a draft still running is dropped at its next model call: speech resumed)
        interval = o.partial_interval_s
        load = getattr(self.engine, "load", None)
        # A busy scheduler stretches interim windows (finals keep their latency), but not a
        # suspected switch's confirming probe, which comes sooner: the final before the switch waits for it.
        if load is not None and not self.switch_suspected:
            interval *= min(4.0, 1.0 + load())
        probe_interval = o.confirm_after_s if self.switch_suspected and o.confirm_after_s > 0 else interval
        onset_due = self._onset_due(seg)
        due = self.total - max(seg.last_decode_end, seg.start) >= probe_interval * SAMPLE_RATE or onset_due
        if not due or self.total - seg.start < o.min_decode_s * SAMPLE_RATE:
            return []
        if not onset_due and self._onset_due(seg, ONSET_WAIT_S):
            return []  # the window due after a dip comes within ONSET_WAIT_S and does this one's work
        if onset_due and self._later_onset_due(seg, ONSET_WAIT_S):
            # (waiting ONSET_WAIT_S at most, not for a chain of such dips)
            seg.onset_wait_from = self.total if seg.onset_wait_from is None else seg.onset_wait_from
            if self.total - seg.onset_wait_from <= ONSET_WAIT_S * SAMPLE_RATE:
                return []
        seg.onset_wait_from = None
        # Interim text (the whole segment encoded and decoded) rests an interval from when the last
        # background window with text finished, not only from the audio it covered, so it leaves
        # the machine to finals; a window due before then is probe-only (cheaper, and what finds
        # switches: their probes keep the interval). So is one that an onset probe's window follows
        # within ONSET_TEXT_AHEAD_S (that one may have the text).
        end = seg.last_decode_end = self.total
        text = work == "text" and o.interim_results and end - self._window_done_at >= interval * SAMPLE_RATE and \
            not self._onset_due(seg, ONSET_TEXT_AHEAD_S)
        # interim text re-decodes the whole segment; a probe-only window needs only its tail
        audio = self._window(seg.start if text else max(seg.start, end - int(o.probe_window_s * SAMPLE_RATE)), end)
        # A window that can confirm a switch goes before other streams' interim windows.
        priority = SWITCH_PROBE if onset_due or self.switch_suspected else INTERIM
        if background is None:  # the window's result, then the cut at a switch it confirmed
            self._interim(seg, end, audio, text, priority)
            return self._take_pending() + self._step("none", None)
        self._window_running = True
        try:
            background(lambda: self._interim_in_background(seg, end, audio, text, priority))
        except BaseException:
            self._window_running = False
            raise
        return []

    def _room_to_draft(self) -> bool:
        """A final may be decoded ahead: other streams took less than `speculate_below_busy` of the
        inference workers' last 2 s (always, on an engine without a scheduler)."""
        others = getattr(self.engine, "others_busy", None)
        return others is None or others() < self.options.speculate_below_busy

    def _speech_probably_ended(self) -> int | None:
        """Where the open segment's final ends (the silence start plus the speech pad) once VAD has
        heard `speculate_after_s` of the silence that would close it; None before."""
        o, silence = self.options, self._segmenter.silence_start
        if silence is None or not o.vad_flush or \
                (self._segmenter.frames_seen - silence) * FRAME_SAMPLES < o.speculate_after_s * SAMPLE_RATE:
            return None
        return min(self.total, silence * FRAME_SAMPLES + int(o.speech_pad_s * SAMPLE_RATE))

    def _draft_in_background(self, seg: _Segment, end: int, background, language: str | None = None) -> None:
        """Decode the final ahead on another thread (a live stream's): VAD goes on meanwhile, and
        the final made when its end is confirmed waits for it (`_draft_final`).
        - In a pause (`language` None): dropped at its next model call once speech resumes (a
          breath costs at most one model call, not the stream's time).
        - The head of a suspected switch (`language`: the head's): dropped once the suspicion is
          withdrawn, the switch is confirmed elsewhere or a pause is closing the segment (whose own
          draft may run beside it); windows go on meanwhile, since the confirming probe is what
          the final waits for.
        One of each kind at a time."""
        key = self._draft_key(seg, end, language)
        if any((k.language is None) == (language is None) for k in tuple(self._drafting)) or \
                (seg.draft is not None and seg.draft.key == key):
            return
        audio = self._window(seg.start, end)

        def wanted() -> bool:  # read without the lock: a stale answer costs one model call at most
            if self._segment is not seg or seg.closing_at not in (None, end):
                return False  # (a final at another end, e.g. a switch's, is being made)
            if seg.closing_at == end:
                return True  # that final waits for this one
            if language is not None:
                head = seg.suspected_cut
                return head is not None and (head.cut, head.old) == (end, language) and \
                    self._speech_probably_ended() is None
            ended = self._speech_probably_ended()  # None once VAD confirmed the silence (the final waits)
            return ended == end or (ended is None and not self._segmenter.in_speech)

        def run() -> None:
            try:
                # a suspected switch's head takes the time the scheduler has left over
                self._decode_final(seg, key, audio, wanted, SPECULATIVE if language else FINAL)
            except Exception:  # noqa: BLE001 - the final decodes it again, and raises there
                pass
            finally:
                with self._draft_done:
                    self._drafting.discard(key)
                    self._draft_done.notify_all()

        self._drafting.add(key)
        try:
            background(run, window=False)
        except BaseException:
            self._drafting.discard(key)
            raise

    def _interim_in_background(self, seg: _Segment, end: int, audio: np.ndarray, text: bool, priority: int) -> None:
        try:
            self._interim(seg, end, audio, text, priority)
        except BaseException as exc:  # noqa: BLE001 - raised on the stream's own thread, next call
            with self._lock:
                self._window_error = exc
        finally:
            with self._lock:
                self._window_running = False
                if text:
                    self._window_done_at = self.total

    def _take_pending(self) -> list[Event]:
        """What a background window left: its error (raised here) or its events."""
        if self._window_error is not None:
            error, self._window_error = self._window_error, None
            raise error
        events, self._pending = self._pending, []
        return events

    def _cut_at_pending_switch(self, seg: _Segment) -> list[Event]:
        assert seg.pending_switch is not None
        (cut, old, new), seg.pending_switch = seg.pending_switch, None
        return self._cut_at_switch(cut, old, new)

    def _in_pause(self) -> bool:
        """The last `pause_s` of audio are all VAD silence frames (not merely a silence run begun:
        soft speech after a dip keeps that open without being silent)."""
        frames = max(1, round(self.options.pause_s * SAMPLE_RATE / FRAME_SAMPLES))
        quiet = self._segmenter.options.neg_threshold
        return len(self._probs) >= frames and all(p < quiet for p in self._probs[-frames:])

    @property
    def _drafting_pause(self) -> bool:
        """A final is being decoded ahead in a pause (no window starts meanwhile)."""
        return any(k.language is None for k in tuple(self._drafting))  # (a snapshot: draft threads discard keys)

    @property
    def switch_suspected(self) -> bool:
        """A switch probe has voted for the other language; the confirming vote is pending."""
        return self._segment is not None and self._segment.detector.first_vote_index is not None

    def finish(self) -> list[Event]:
        """End of the audio: finalize what is open (a window still running is superseded). A
        stream that ends in a pause long enough for its final to have been decoded ahead ends
        that final where the speech did, so the one decoded ahead is sent, not decoded again."""
        with self._lock:
            events = self._take_pending()
            if self._segment is None:
                return events
            end = self._speech_probably_ended()
            if end is None or end <= self._segment.start:
                end = self.total
            return events + [SpeechBoundary("end", end / SAMPLE_RATE), *self._finalize(end, "end_of_stream")]

    # ---- model calls -------------------------------------------------------------------
    def _set_priority(self, priority: int) -> None:
        if hasattr(self.engine, "priority"):  # a scheduler facade: finals go first
            self.engine.priority = priority

    def _timed(self, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        elapsed = time.perf_counter() - t0
        with self._stats_lock:
            self.stats.inference_seconds += elapsed
        if self.on_window:
            self.on_window(elapsed)
        return out

    def _encode(self, audio: np.ndarray, quantum_s: float | None = None) -> Encoded:
        o = self.options
        padding = o.padding if o.padding is not None and len(audio) < o.padding_cutoff_s * SAMPLE_RATE else None
        with self._stats_lock:
            self.stats.windows += 1
        return self._timed(self.engine.encode, audio, padding, quantum_s)

    def _encode_clean(self, audio: np.ndarray) -> Encoded:
        """An encode of its own for a probe: the interim quantum, never the universal padding (an
        English clip before the audio would colour the language it is asked about)."""
        with self._stats_lock:
            self.stats.windows += 1
        return self._timed(self.engine.encode, audio, None, self.options.interim_quantum_s)

    def _worth_rechecking(self, seg: _Segment, tail: dict[str, float]) -> bool:
        """The probe slice leans towards another language than the segment's without voting for it."""
        o = self.options
        if not o.probe_recheck_above or seg.language is None:
            return False
        other = max((p for code, p in tail.items() if code != seg.language), default=0.0)
        return o.probe_recheck_above <= other < o.hysteresis.threshold

    def _detect(self, encoded: Encoded, last_seconds: float | None = None) -> dict[str, float]:
        """Language probabilities over the pair; without the pair constraint, Whisper's winner
        among all languages (a winner outside the pair counts against the pair's languages)."""
        if self.options.pair_constraint or len(self.pair) == 1:
            return self.engine.detect(encoded, self.pair, last_seconds)
        probs = self.engine.detect_all(encoded, last_seconds)  # type: ignore[attr-defined]
        winner = max(probs, key=probs.get)
        mapped = {code: probs.get(whisper_code(code), 0.0) for code in self.pair}
        if winner not in {whisper_code(c) for c in self.pair}:
            mapped[winner] = probs[winner]  # an outside language may win
        return mapped

    def _detect_spans(self, encoded: Encoded, spans: list[tuple[float, float]]) -> list[dict[str, float]]:
        """Pair-restricted language probabilities of several spans of one encoder output (batched
        where the engine can)."""
        batched = getattr(self.engine, "detect_spans", None)
        if batched is not None:
            return batched(encoded, self.pair, spans)
        return [self.engine.detect(encoded, self.pair, span=span) for span in spans]

    def _decode(self, encoded: Encoded, language: str, prefix: str = "", beam: int = 1) -> Decoded:
        decoded = self._timed(self.engine.decode, encoded, language, prompt=self._prompt(language),
                              prefix=prefix, beam_size=beam)
        if encoded.padding is not None:  # the padding clip's text said again after its forced copy
            text = guards.strip_padding_echo(decoded.text, encoded.padding.text)
            if text != decoded.text:
                self._count_suppressed("padding_echo")
                decoded = dataclasses.replace(decoded, text=text)
        return decoded

    def _count_suppressed(self, reason: str) -> None:
        self.stats.suppressed[reason] = self.stats.suppressed.get(reason, 0) + 1
        if self.on_suppressed:
            self.on_suppressed(reason)

    def _final_beam(self, seconds: float) -> int:
        """The configured beam (narrower for a long final) while the scheduler keeps up; narrower
        under load (finals keep their latency)."""
        load = getattr(self.engine, "load", None)
        backlog = load() if load is not None else 0.0
        o = self.options
        beam = min(o.beam_size, o.long_final_beam or o.beam_size) if seconds > o.long_final_s else o.beam_size
        return beam if backlog < 1 else min(beam, 2) if backlog < 3 else 1

    def _prompt(self, language: str) -> str:
        o = self.options
        phrases = ", ".join(o.phrases.get(language, ()))
        context = ""
        if o.prompt_chars:
            texts = [self._context.get(language, "")] if o.prompt_hygiene else list(self._context.values())
            context = " ".join(t for t in texts if t)[-o.prompt_chars:]
        return " ".join(p for p in (phrases, context) if p)

    def _guard(self, decoded: Decoded) -> str:
        if not self.options.hallucination_guards:
            return decoded.text
        text, reason = guards.check(decoded.text, decoded.no_speech_prob, decoded.avg_logprob)
        if reason:
            self._count_suppressed(reason)
        return text

    # ---- segments ----------------------------------------------------------------------
    def _open(self, start: int, language: str | None, fixed: bool) -> None:
        self._segment = _Segment(
            start=start, language=language, language_fixed=fixed, opened_by_switch=fixed,
            agreement=LocalAgreement(2), detector=SwitchDetector(language if fixed else None, self.options.hysteresis),
        )

    def _window(self, start: int, end: int) -> np.ndarray:
        return self._audio[start - self._audio_base : end - self._audio_base]

    def _segment_id(self, seg: _Segment) -> int:
        if seg.segment_id is None:
            seg.segment_id = self._next_segment_id
            self._next_segment_id += 1
        return seg.segment_id

    def _interim(self, seg: _Segment, end: int, audio: np.ndarray, text: bool, priority: int = INTERIM) -> None:
        """One interim window: `audio` is the open segment's (or, probe-only, its tail's) up to
        stream sample `end`. Its interim result goes to the pending events, a switch it confirms
        to `seg.pending_switch` (cut by the stream's own thread). Model calls hold no lock; the
        segment's state is read and changed under it, and a window whose segment was closed
        meanwhile (a final made while it ran supersedes it) changes nothing. `priority`: its
        probes' (SWITCH_PROBE for a window that can confirm a switch); its interim text's is INTERIM."""
        self._set_priority(priority)
        o = self.options
        window_start = end - len(audio)
        probing = o.switch_probe and len(self.pair) > 1 and end - seg.start >= self._probe_from
        encoded = self._encode(audio, o.probe_quantum_s if probing else o.interim_quantum_s)
        probs = self._detect(encoded)
        tail = self._detect(encoded, o.switch_probe_s) if probing else {}
        gaps = self._unprobed_ends(seg, window_start, end) if probing and o.probe_gaps else []
        onsets = self._onsets(seg, window_start, end) if probing else []
        spans = [((g - window_start) / SAMPLE_RATE - o.switch_probe_s, (g - window_start) / SAMPLE_RATE) for g in gaps]
        spans += [((t - window_start) / SAMPLE_RATE, (end - window_start) / SAMPLE_RATE) for t in onsets]
        span_probs = self._detect_spans(encoded, spans) if spans else []  # one batched call
        gap_probs = span_probs[:len(gaps)]
        onset = self._confirm_onset(seg, audio, encoded, window_start, end, list(zip(onsets, span_probs[len(gaps):])))
        onset_switch = onset[1] if onset is not None else None
        with self._lock:
            if self._segment is not seg:
                return
            language = best(probs)[0]
            # The final was drafted in the pause this window ran into: a vote now would only make
            # it be decoded again when that pause is confirmed. A window whose onset probe confirmed
            # a switch lies over both turns: its vote would relabel a segment not yet locked with
            # the new language (live, ko-en: Korean 0.67 over 3 s of English and 1 s of Korean),
            # and the switch would be lost in one Korean final.
            if not self._in_drafted_pause(seg) and onset_switch is None:
                language = self._vote(seg, end, probs, text)
            recheck = probing and self._worth_rechecking(seg, tail)
        if recheck:
            tail = self._detect(self._encode_clean(audio[-int(o.switch_probe_s * SAMPLE_RATE):]))
        if probing:
            with self._lock:
                if self._segment is not seg:
                    return
                if seg.detector.committed is None:  # anchored on the segment's language, not on the first probe
                    seg.detector.reset(seg.language)
                new = None
                for at, heard in [*zip(gaps, gap_probs), (end, tail)]:
                    seg.probe_ends.append(at)
                    language_at, confidence = best(heard)
                    if at != end and confidence < o.hysteresis.threshold:
                        continue  # an unsure gap slice abstains (only the tail's doubt resets a pending switch)
                    if seg.detector.vote(language_at, confidence, index=at) and language_at != seg.language:
                        new = language_at
                        break
                if new is None and onset_switch is not None and seg.language not in (None, onset_switch):
                    new = onset_switch  # confirmed (`_confirm_onset`), located as the others are
                old, first_vote_end = seg.language or new, seg.detector.switch_index or end
                suspected, suspected_at = seg.detector.pending, seg.detector.first_vote_index
                if new is None and seg.suspected_cut and seg.suspected_cut.first_vote != suspected_at:
                    seg.suspected_cut = None  # that suspicion was withdrawn: its head's draft is dropped
                locate_head = new is None and suspected is not None and seg.suspected_cut is None and \
                    o.head_drafts and seg.language is not None and suspected != seg.language
            if new is not None:
                # (an onset probe's switch too: its dip can be a quiet frame inside the new speech)
                if onset is not None and onset[:2] == (old, new) and first_vote_end == end:
                    cut = onset[2]  # (located while the onset was confirmed, on the same terms)
                else:
                    cut = self._locate_switch(seg, encoded, window_start, old, new, first_vote_end)
                with self._lock:
                    if self._segment is seg:
                        # The cut the suspicion's window located, if this one agrees within 0.25 s:
                        # the head's final decoded meanwhile is then the one sent.
                        head = seg.suspected_cut
                        if head is not None and (head.old, head.new, head.first_vote) == (old, new, first_vote_end) \
                                and abs(head.cut - cut) <= SAMPLE_RATE // 4:
                            cut = head.cut
                        else:
                            cut = self._snap_to_drafted_end(seg, cut)
                        seg.pending_switch = (cut, old, new)
                return
            if locate_head:  # where the suspected switch would cut, for its head's final decoded ahead
                cut = self._locate_switch(seg, encoded, window_start, old, suspected, suspected_at)
                with self._lock:
                    if self._segment is seg and seg.detector.first_vote_index == suspected_at and seg.start < cut:
                        seg.suspected_cut = _Suspicion(cut, old, suspected, suspected_at)
        if not text:
            return
        self._set_priority(INTERIM)
        with self._lock:
            language = seg.language or language
            # The committed prefix is forced (one parallel pass), so only the tail is generated step by step.
            prefix = join_units(seg.agreement.committed) if o.interim_prefix and seg.language == language else ""
        decoded = self._guard(self._decode(encoded, language, prefix.rstrip(".,!?;:。、，！？")))
        with self._lock:
            if not decoded or self._segment is not seg:
                return
            seg.agreement.insert(units(decoded))
            self._pending.append(Result(
                segment_id=self._segment_id(seg), revision=seg.revision, is_final=False,
                stability=seg.agreement.stability(), start_s=seg.start / SAMPLE_RATE, end_s=end / SAMPLE_RATE,
                language=language, confidence=seg.confidence, text=convert_script(decoded, language),
            ))
            seg.revision += 1

    @property
    def _probe_from(self) -> int:
        """Samples into a segment from which a window probes its tail for a switch: the probe's
        `switch_probe_s` and 1 s before them (3 s). Also where the final's scan starts counting."""
        return math.ceil((self.options.switch_probe_s + 1.0) * SAMPLE_RATE)

    def _unprobed_ends(self, seg: _Segment, window_start: int, end: int) -> list[int]:
        """Where probes are missing before this window's `end`: none while windows keep about the
        interval (up to 1.5 of them since the last probe) and no switch is suspected; over a longer
        stretch (windows spaced out under load), or before a suspected switch's confirming probe,
        ends 0.5 s apart as the final's scan has them, so a short turn still gets two votes (a
        2.5 s turn holds its 2 s slices only over 0.5 s). Only where the probe's 2 s slice lies
        inside the window's audio."""
        o = self.options
        interval = int(o.partial_interval_s * SAMPLE_RATE)
        first_probe = seg.start + self._probe_from
        since = seg.probe_ends[-1] if seg.probe_ends else first_probe - interval
        if end - since <= 1.5 * interval and seg.detector.first_vote_index is None:
            return []
        step = SAMPLE_RATE // 2
        first = max(since + step, first_probe, window_start + int(o.switch_probe_s * SAMPLE_RATE))
        return list(range(first, end - step // 2, step))

    def _onsets(self, seg: _Segment, window_start: int, end: int) -> list[int]:
        """Where this window's onset probes start: the end of each VAD dip (a run of frames below
        the segmenter's silence threshold) between 2 s and `onset_probe_s` before `end` (inside the
        window and the segment, past its first second; a dip still going on at `onset_probe_s`
        before `end` ends there). Empty when off."""
        o = self.options
        if o.onset_probe_s <= 0:
            return []
        lo = max(end - int(o.switch_probe_s * SAMPLE_RATE), window_start, seg.start + SAMPLE_RATE)
        frames = self._vad_frames(lo, end - int(o.onset_probe_s * SAMPLE_RATE))
        quiet = self._segmenter.options.neg_threshold
        return [(f + 1) * FRAME_SAMPLES for f in frames
                if self._probs[f] < quiet and (f == frames[-1] or self._probs[f + 1] >= quiet)]

    def _confirm_onset(self, seg: _Segment, audio: np.ndarray, encoded: Encoded, window_start: int, end: int,
                       heard: list[tuple[int, dict[str, float]]]) -> tuple[str, str, int] | None:
        """The language the speech after a dip is in, if it is not the segment's: of the onset
        slices (`heard`: each one's start and its language in the window's context), the one that
        gives the other language most, if at least `ONSET_HEARD`, and then a separate encode of
        its seconds (`audio` from that start: those seconds alone) at least `ONSET_CONFIRM`. Returns (the
        segment's language, the new one, the cut `_locate_switch` gives on the window's `encoded`
        up to `end`, located on another thread while that encode runs), or None."""
        others = [(confidence, start, language) for start, probs in heard
                  for language, confidence in [best(probs)] if seg.language not in (None, language)]
        if not others:
            return None
        confidence, start, language = max(others)
        if confidence < ONSET_HEARD:
            return None
        old, located = seg.language, []
        beside = threading.Thread(name="onset-locate", daemon=True, target=lambda: located.append(
            self._locate_switch(seg, encoded, window_start, old, language, end)))
        beside.start()
        try:
            alone, alone_confidence = best(self._detect(self._encode_clean(audio[start - window_start:])))
        finally:
            beside.join()
        if alone != language or alone_confidence < ONSET_CONFIRM:
            return None
        return old, language, located[0] if located else self._locate_switch(seg, encoded, window_start, old,
                                                                               language, end)

    def _onset_due(self, seg: _Segment, ahead_s: float = 0.0) -> bool:
        """A window is due `onset_probe_s` after a VAD dip (within the last 0.5 s of that) when
        none has run since then: the earliest one that can confirm a switch at that dip. With
        `ahead_s`: one is due now or will be within that many seconds (after a dip heard already)."""
        o = self.options
        if o.onset_probe_s <= 0 or self.total + int(ahead_s * SAMPLE_RATE) - seg.start < self._probe_from:
            return False
        dips = self._dip_frames(seg, ahead_s)
        return bool(dips) and seg.last_decode_end < dips[-1] * FRAME_SAMPLES + int(o.onset_probe_s * SAMPLE_RATE)

    def _later_onset_due(self, seg: _Segment, ahead_s: float) -> bool:
        """Within `ahead_s`, a window becomes due `onset_probe_s` after a dip that follows the
        latest one due now, with speech between them (not the same dip going on). Its onsets
        (`_onsets`: every dip between 2 s and `onset_probe_s` before its end) include the dips due now."""
        now = self._dip_frames(seg)
        later = [f for f in self._dip_frames(seg, ahead_s) if now and f > now[-1]]
        quiet = self._segmenter.options.neg_threshold
        return bool(later) and any(self._probs[f] >= quiet for f in range(now[-1] + 1, later[-1]))

    def _dip_frames(self, seg: _Segment, ahead_s: float = 0.0) -> list[int]:
        """The VAD frames below the segmenter's silence threshold that end `onset_probe_s` or more
        before now (`ahead_s` later), within 0.5 s of that and past the segment's first second."""
        confirm = int(self.options.onset_probe_s * SAMPLE_RATE)
        lo = max(seg.start + SAMPLE_RATE, self.total - confirm - SAMPLE_RATE // 2)
        quiet = self._segmenter.options.neg_threshold
        return [f for f in self._vad_frames(lo, self.total + int(ahead_s * SAMPLE_RATE) - confirm)
                if self._probs[f] < quiet]

    def _vad_frames(self, lo: int, hi: int) -> range:
        """The VAD frames that lie wholly within samples [lo, hi) and have been seen."""
        return range(-(-lo // FRAME_SAMPLES), min(hi // FRAME_SAMPLES, len(self._probs)))

    def _in_drafted_pause(self, seg: _Segment) -> bool:
        """VAD is still in the silence the segment's final was drafted (or is being drafted) in."""
        silence = self._segmenter.silence_start
        return silence is not None and any(k.end >= silence * FRAME_SAMPLES for k in self._pause_draft_keys(seg))

    def _pause_draft_keys(self, seg: _Segment) -> list[_DraftKey]:
        """Keys of this segment's finals decoded, or being decoded, ahead in a pause (a head's
        draft is not a pause's)."""
        keys = (seg.draft.key if seg.draft else None, *tuple(self._drafting))  # (a snapshot: draft threads discard keys)
        return [k for k in keys if k and k.start == seg.start and k.language is None]

    def _vote(self, seg: _Segment, end: int, probs: dict[str, float], text: bool) -> str:
        """A window's whole-window language vote on its segment; returns the language it is
        decoded in (a weak vote for the other language keeps the committed one). `text`: the
        window decodes interim text (whose committed prefix locks the language)."""
        o = self.options
        language, confidence = best(probs)
        seg.votes.append((language, confidence))
        if seg.first_vote_at is None:
            seg.first_vote_at = end
        long_enough = end - seg.start >= o.lock_after_s * SAMPLE_RATE
        if not seg.language_fixed:
            if seg.agreement.committed and long_enough:
                seg.language_fixed = True  # text is committed in this language: only a switch changes it
            else:
                committed = self.language
                # hysteresis: a weak vote for the other language keeps the committed one
                if committed in probs and language != committed and confidence < o.hysteresis.threshold:
                    language = committed
                if language != seg.language:
                    seg.language = language
                    seg.agreement.reset()
                    seg.detector.reset(language)
                # Probe-only windows (a loaded live stream's) commit no text: a confident one locks
                # it instead, so a later window lying half over the next language does not
                # re-anchor the switch probe on that language. Only from the length the probe
                # starts at (3 s): Whisper gave the first 2 s of a Chinese turn English 0.94-0.99,
                # and a lock there cut that head off as an empty English final. (With interim
                # text, locking on one vote measured worse: zh CER 0.254 -> 0.304, `make eval --fast`.)
                probed = end - seg.start >= self._probe_from
                seg.language_fixed = not text and probed and confidence >= o.hysteresis.threshold
        seg.confidence = probs.get(seg.language, 0.0) if seg.language else confidence
        return language

    def _quietest(self, lo: int, hi: int) -> int:  # noqa: D401
        """Sample at the centre of the least speech-like VAD frame in [lo, hi)."""
        f_lo, f_hi = lo // FRAME_SAMPLES, max(lo // FRAME_SAMPLES + 1, hi // FRAME_SAMPLES)
        window = self._probs[f_lo:f_hi]
        if not window:
            return hi
        frame = f_lo + int(np.argmin(window))
        return frame * FRAME_SAMPLES + FRAME_SAMPLES // 2

    def _cut_at_switch(self, cut: int, old: str, new: str) -> list[Event]:
        """Finalize the open segment at `cut` in `old`; open the next one there, fixed to `new`."""
        events = self._finalize(cut, "language_switch", language=old)
        if not any(isinstance(e, LanguageSwitched) and e.to_language == new for e in events):  # (the scan
            events.append(LanguageSwitched(old, new, cut / SAMPLE_RATE))  # may have found it earlier)
        self.language = new
        self._open(cut, new, fixed=True)
        return events

    def _scan_for_switch(self, seg: _Segment, encoded: Encoded, old: str) -> tuple[int, str, str] | None:
        """The switch probe replayed on the final's encoder output, for a segment the live probes
        did not cover (windows dropped or spaced out, or its first vote came so late that its
        language, `old`, was judged on later audio): 2 s slices 0.5 s apart voting into a fresh
        `SwitchDetector`, anchored on the first slice's language when that is confident, else on
        `old`; a confirmed switch is located as a live one is. Returns (cut, from, to) or None."""
        o = self.options
        if o.final_switch_scan == "off" or not o.switch_probe or len(self.pair) < 2:
            return None
        duration = encoded.duration_s
        if duration < 2 * o.switch_probe_s + 0.5:
            return None
        late_vote = seg.first_vote_at is None or seg.first_vote_at - seg.start >= self._probe_from
        # Covered: from where a live probe can first end (3 s in) to the end, no stretch of more
        # than 1.5 intervals without one. Sparser probes (a loaded stream's) can step over a
        # short turn: two votes are needed inside it.
        marks = [seg.start + self._probe_from, *sorted(seg.probe_ends),
                 seg.start + int(duration * SAMPLE_RATE)]
        covered = bool(seg.probe_ends) and all(
            later - earlier <= 1.5 * o.partial_interval_s * SAMPLE_RATE for earlier, later in zip(marks, marks[1:]))
        if o.final_switch_scan == "missed" and covered and not late_vote:
            return None  # the live probes covered it, against a language voted on its start
        starts = np.arange(0.0, duration - o.switch_probe_s + 1e-6, 0.5)  # a 2.5 s turn still gets 2 votes
        spans = [(float(t), float(t) + o.switch_probe_s) for t in starts]
        votes = [best(probs) for probs in self._detect_spans(encoded, spans)]  # one batch
        first, first_confidence = votes[0]
        anchor = first if first_confidence >= o.hysteresis.threshold else old
        detector = SwitchDetector(anchor, o.hysteresis)
        for (_, span_end), (language, confidence) in zip(spans, votes):
            end = seg.start + int(span_end * SAMPLE_RATE)
            if detector.vote(language, confidence, index=end) and language != anchor:
                cut = self._locate_switch(seg, encoded, seg.start, anchor, language, detector.switch_index or end)
                return (cut, anchor, language) if seg.start < cut < seg.start + int(duration * SAMPLE_RATE) else None
        return None

    def _locate_switch(self, seg: _Segment, encoded: Encoded, window_start: int, old: str, new: str,
                       first_vote_end: int) -> int:
        """The pause where the language changed: among the quietest VAD frames before the first
        vote for `new`, the one with the old language just before it and the new one just after,
        judged on slices of the window's encoder output (no extra encode)."""
        o = self.options
        lo = max(seg.start + int(0.5 * SAMPLE_RATE), first_vote_end - int((o.switch_probe_s + 1.0) * SAMPLE_RATE))
        hi = max(lo + FRAME_SAMPLES, first_vote_end - int(0.2 * SAMPLE_RATE))
        f_lo, f_hi = lo // FRAME_SAMPLES, hi // FRAME_SAMPLES
        frames = sorted(range(f_lo, max(f_lo + 1, f_hi)), key=lambda f: self._probs[f] if f < len(self._probs) else 1.0)
        candidates: list[int] = []
        for f in frames:  # the 8 quietest frames, at least 0.15 s apart
            if all(abs(f - c) * FRAME_SAMPLES >= 0.15 * SAMPLE_RATE for c in candidates):
                candidates.append(f)
            if len(candidates) == 8:
                break
        duration = encoded.duration_s
        cuts = [(f, f * FRAME_SAMPLES + FRAME_SAMPLES // 2) for f in candidates]
        cuts = [(f, cut, (cut - window_start) / SAMPLE_RATE) for f, cut in cuts]
        cuts = [(f, cut, t) for f, cut, t in cuts if 0.2 < t < duration - 0.2]
        spans = [span for _, _, t in cuts for span in ((t, min(duration, t + 1.5)), (max(0.0, t - 1.5), t))]
        probs = self._detect_spans(encoded, spans)  # after and before each candidate, in one batch
        best_cut, best_score = hi, -1.0
        for k, (f, cut, _) in enumerate(cuts):
            score = probs[2 * k].get(new, 0.0) + probs[2 * k + 1].get(old, 0.0) - 0.5 * self._probs[f]
            if score > best_score:
                best_cut, best_score = cut, score
        return best_cut

    def _snap_to_drafted_end(self, seg: _Segment, cut: int) -> int:
        """A switch's cut moved to the nearest end, within `snap_cut_s`, of a final this segment
        had decoded (or is decoding) ahead in a pause: at an immediate switch VAD often hears the
        turns' gap, whose draft is dropped once speech resumes but leaves its encoder output, so
        the head's final only decodes (or is the draft itself)."""
        ends = [*seg.encoded, *(k.end for k in self._pause_draft_keys(seg))]
        near = [e for e in ends if seg.start < e and abs(e - cut) <= self.options.snap_cut_s * SAMPLE_RATE]
        return min(near, key=lambda e: abs(e - cut)) if near else cut

    def _force_cut(self) -> list[Event]:
        seg = self._segment
        assert seg is not None
        span = self.total - seg.start
        cut = self._quietest(seg.start + span * 2 // 3, self.total - FRAME_SAMPLES)
        language = seg.language if seg.language_fixed else None
        events = self._finalize(cut, "max_duration")
        if any(isinstance(e, LanguageSwitched) for e in events):  # the final's scan split it
            language = self.language
        self._open(cut, language or self.language, fixed=language is not None)
        return events

    @staticmethod
    def _draft_key(seg: _Segment, end: int, language: str | None) -> _DraftKey:
        return _DraftKey(seg.start, end, None if language else len(seg.votes), language, seg.pending_switch)

    def _draft_final(self, seg: _Segment, end: int, language: str | None) -> "_Draft | None":
        """A segment's final (no state changes): the one decoded ahead if nothing changed since
        (waiting for it if it is still being decoded on another thread), else decoded now."""
        key = self._draft_key(seg, end, language)
        audio = (key.start, key.end)
        with self._draft_done:  # (one decoding the same audio: its encoder output is reused)
            self._draft_done.wait_for(lambda: not any((k.start, k.end) == audio for k in self._drafting))
        draft = seg.draft
        if draft is not None and draft.key == key:
            return draft
        if draft is not None and language is not None and (draft.key.start, draft.key.end) == audio and \
                draft.key.language is None and draft.split is None and draft.language == language:
            # a pause's final decoded in the language a switch's head is forced to: the same decode
            return dataclasses.replace(draft, key=key, commit=True, forced=True)
        return self._decode_final(seg, key, self._window(seg.start, end))

    def _decode_final(self, seg: _Segment, key: _DraftKey, audio: np.ndarray,
                      wanted: Callable[[], bool] = lambda: True, priority: int = FINAL) -> "_Draft | None":
        """Decode a segment's final (`key` from `_draft_key`: its end and forced language) into
        `seg.draft`; a draft that is no longer `wanted` is dropped before its next model call (None)."""
        end, language = key.end, key.language
        self._set_priority(priority)
        if len(audio) < int(0.1 * SAMPLE_RATE):
            seg.draft = None
            return None
        o = self.options
        encoded = seg.encoded.get(end)
        if encoded is None:
            encoded = seg.encoded[end] = self._encode(audio, o.final_quantum_s)
            while len(seg.encoded) > 2:  # (the latest two pauses' are what a switch's cut snaps to)
                seg.encoded.pop(next(iter(seg.encoded)), None)
        if not wanted():
            return None
        probs = self._detect(encoded)
        forced = language or (seg.language if seg.opened_by_switch else None)
        if seg.pending_switch is not None and seg.start < seg.pending_switch[0] < end:
            split = seg.pending_switch  # confirmed by a window that ran in the background
        else:
            split = self._scan_for_switch(seg, encoded, forced or seg.language or best(probs)[0])  # heads included
        if split is not None:  # the final is decoded per part, when the cut is made (_finalize)
            return self._keep(seg, _Draft(key, split[1], "", 0.0, False, False, split), wanted)
        if forced:
            lang = forced
        elif seg.language_fixed and probs.get(seg.language, 0.0) >= o.keep_locked_above:
            lang = seg.language  # the whole segment does not clearly contradict the locked language
        else:
            lang = best(probs)[0]
        # LocalAgreement: optionally force what interim windows committed (if in this language).
        prefix = join_units(seg.agreement.committed) if lang == seg.language and o.commit_prefix else ""
        prefix = prefix.rstrip(".,!?;:。、，！？")  # an interim's closing punctuation must not stop the final
        if not wanted():
            return None
        text = self._guard(self._decode(encoded, lang, prefix, self._final_beam(encoded.duration_s)))
        commit = True
        if not forced and not seg.language_fixed and len(self.pair) > 1:
            hysteresis = o.hysteresis
            if not seg.votes and end - seg.start >= o.lock_after_s * SAMPLE_RATE:
                # Every interim window of this segment was dropped (catch-up, duty cycle): its
                # whole-segment detection is the only vote there is, and over this much speech it
                # is not a filler.
                hysteresis = dataclasses.replace(hysteresis, windows=1)
            decision = decide_final_language(best(probs), seg.votes, self.language, text, self.pair, hysteresis,
                                             o.short_text_chars)
            commit = decision.commit
            if decision.language != lang:
                lang = decision.language
                beam = self._final_beam(encoded.duration_s)
                text = self._guard(self._decode(encoded, lang, "", beam))  # same encoder output
        if not forced and len(self.pair) > 1 and o.short_text_chars:
            proven = script_contradiction(text, lang, self.pair)
            if proven is not None:  # e.g. English words decoded under ja: tagged (and translated) as English
                lang, commit = proven, self.language is None
        return self._keep(seg, _Draft(key, lang, text, float(probs.get(lang, 0.0)), commit, forced is not None), wanted)

    @staticmethod
    def _keep(seg: _Segment, draft: "_Draft", wanted: Callable[[], bool]) -> "_Draft":
        """`draft` as the segment's draft, unless it is no longer wanted (a switch's head decoded
        ahead must not replace the draft of the pause that closes the segment)."""
        if wanted():
            seg.draft = draft
        return draft

    def _finalize(self, end: int, reason: str, language: str | None = None) -> list[Event]:
        seg = self._segment
        assert seg is not None
        seg.closing_at = end
        draft = self._draft_final(seg, end, language)
        if draft is not None and draft.split is not None:  # a switch the live probes missed
            cut, old, new = draft.split
            seg.pending_switch = None
            return self._cut_at_switch(cut, old, new) + self._finalize(end, reason)
        self._segment = None
        self._last_segment_end = end
        events: list[Event] = []
        if draft is None or (not draft.text and seg.segment_id is None):
            return events
        lang, text = draft.language, draft.text
        if text and draft.commit and self.language is not None and lang != self.language and not draft.forced:
            events.append(LanguageSwitched(self.language, lang, seg.start / SAMPLE_RATE))
        if text and draft.commit:
            self.language = lang
        if text and self.options.prompt_chars:
            self._context[lang] = (self._context.get(lang, "") + " " + text).strip()[-self.options.prompt_chars:]
        events.append(Result(
            segment_id=self._segment_id(seg), revision=seg.revision, is_final=True, stability=1.0,
            start_s=seg.start / SAMPLE_RATE, end_s=end / SAMPLE_RATE, language=lang,
            confidence=draft.confidence, text=convert_script(text, lang), final_reason=reason,
        ))
        return events

    def _trim(self) -> None:
        keep_from = self._segment.start if self._segment else max(self._last_segment_end, self.total - SAMPLE_RATE)
        keep_from = min(keep_from, self.total - SAMPLE_RATE)
        if keep_from > self._audio_base + 5 * SAMPLE_RATE:
            drop = keep_from - self._audio_base
            self._audio = self._audio[drop:]
            self._audio_base = keep_from


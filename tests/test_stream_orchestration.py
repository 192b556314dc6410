"""RecognitionStream orchestration with a fake engine and a fake VAD (no model): which Whisper
windows run when, and with which mel padding."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

import services.asr.stream as stream_module
from services.asr.engine import Decoded
from services.asr.scheduler import FINAL, INTERIM, SWITCH_PROBE
from services.asr.stream import LanguageSwitched, RecognitionStream, Result, StreamOptions
from services.asr.vad import FRAME_SAMPLES

RATE = 16000


class LoudnessVad:
    """Speech probability 1 for frames louder than 0.05 RMS, else 0."""

    def new_state(self):
        return self

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)

    def process(self, audio):
        audio = np.concatenate([self._pending, audio])
        n = len(audio) // FRAME_SAMPLES
        self._pending = audio[n * FRAME_SAMPLES:]
        frames = audio[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
        return (np.sqrt((frames ** 2).mean(axis=1)) > 0.05).astype(np.float32)


@dataclasses.dataclass
class FakeEncoded:
    duration_s: float
    quantum_s: float | None
    padding: object = None


class FakeEngine:
    """Always hears English "hello world"; records every encode (seconds, quantum) and decode."""

    def __init__(self) -> None:
        self.encodes: list[tuple[float, float | None]] = []
        self.decodes: list[int] = []  # beam sizes

    def encode(self, audio, padding=None, quantum_s=None):
        self.encodes.append((round(len(audio) / RATE, 2), quantum_s))
        return FakeEncoded(len(audio) / RATE, quantum_s)

    def detect(self, encoded, pair, last_seconds=None, span=None):
        return {code: (0.95 if code == "en" else 0.05 / max(1, len(pair) - 1)) for code in pair}

    def decode(self, encoded, language, *, prompt="", prefix="", beam_size=1):
        self.decodes.append(beam_size)
        return Decoded("hello world", language, no_speech_prob=0.01, avg_logprob=-0.2, token_count=3)


def speech(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


def run(stream: RecognitionStream, audio: np.ndarray, chunk_s: float = 0.1, work: str = "text"):
    events = []
    step = int(chunk_s * RATE)
    for i in range(0, len(audio), step):
        events += stream.feed(audio[i:i + step])
        events += stream.step(work)
    return events + stream.finish()


def test_short_interim_windows_use_the_interim_quantum_and_long_ones_the_engine_default():
    engine = FakeEngine()
    stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(languages=("en", "ja"), padding=None))
    run(stream, np.concatenate([silence(0.5), speech(5.0), silence(1.5)]))
    interim = [e for e in engine.encodes[:-1]]  # the last encode is the final's
    assert interim, "no interim window ran"
    assert all(q == 2.0 for secs, q in interim if secs < 3.0)
    assert all(q is None for secs, q in interim if secs >= 3.0)
    assert engine.encodes[-1][1] is None  # the final always uses the engine's quantum


def test_probing_windows_use_the_probe_quantum_and_the_final_the_engine_default():
    engine = FakeEngine()
    stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(languages=("en", "ja"), padding=None,
                                                                    probe_quantum_s=5.0))
    run(stream, np.concatenate([silence(0.5), speech(5.0), silence(1.5)]))
    *interim, final = engine.encodes
    assert {q for secs, q in interim if secs >= 3.0} == {5.0} and {q for secs, q in interim if secs < 3.0} == {2.0}
    assert final[1] is None


def test_the_final_is_decoded_once_in_the_pause_and_reused_when_it_is_confirmed():
    engine = FakeEngine()
    options = StreamOptions(languages=("en", "ja"), padding=None, min_silence_s=0.8, speculate_after_s=0.3)
    stream = RecognitionStream(engine, LoudnessVad(), options)
    events = run(stream, np.concatenate([silence(0.3), speech(2.05), silence(2.0)]))
    finals = [e for e in events if isinstance(e, Result) and e.is_final]
    assert len(finals) == 1 and finals[0].final_reason == "end_of_speech"
    assert engine.decodes.count(options.beam_size) == 1  # drafted in the pause, reused at its confirmation
    final_windows = [secs for secs, q in engine.encodes if q is None]
    assert len(final_windows) == 1  # one encode: the window ends at speech end + pad (VAD frames are 32 ms)
    assert abs(final_windows[0] - (2.35 + options.speech_pad_s)) <= 0.05, final_windows


def test_interim_quantum_none_keeps_the_engine_default_everywhere():
    engine = FakeEngine()
    stream = RecognitionStream(engine, LoudnessVad(),
                               StreamOptions(languages=("en",), padding=None, interim_quantum_s=None))
    run(stream, np.concatenate([speech(2.5), silence(1.5)]))
    assert engine.encodes and all(q is None for _, q in engine.encodes)


def test_a_stream_behind_real_time_skips_interims_but_keeps_finals_and_the_forced_cut():
    engine = FakeEngine()
    options = StreamOptions(languages=("en", "ja"), padding=None, max_segment_s=4.0)
    stream = RecognitionStream(engine, LoudnessVad(), options)
    events = run(stream, np.concatenate([speech(9.0), silence(1.5)]), work="none")
    results = [e for e in events if isinstance(e, Result)]
    assert results and all(r.is_final for r in results)  # no interim result, no interim window
    assert [r.final_reason for r in results].count("max_duration") >= 2
    assert results[-1].final_reason == "end_of_speech"
    assert len(engine.encodes) == len(results) and set(engine.decodes) == {options.beam_size}


def test_a_final_longer_than_long_final_s_is_decoded_with_the_narrower_beam():
    for spoken, long_beam, beam in ((5.0, 2, 5), (7.0, 2, 2), (7.0, 0, 5)):
        engine = FakeEngine()
        options = StreamOptions(languages=("en", "ja"), padding=None, long_final_beam=long_beam)
        run(RecognitionStream(engine, LoudnessVad(), options), np.concatenate([speech(spoken), silence(1.5)]))
        assert engine.decodes[-1] == beam and engine.decodes.count(beam) == 1, (spoken, long_beam, engine.decodes)


def test_probe_only_windows_vote_and_probe_but_produce_no_interim_text():
    engine = FakeEngine()
    stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(languages=("en", "ja"), padding=None))
    events = run(stream, np.concatenate([speech(11.0), silence(1.5)]), work="probe")
    results = [e for e in events if isinstance(e, Result)]
    assert len(results) == 1 and results[0].is_final
    assert len(engine.encodes) > 2  # the interim windows ran (language votes, switch probe) ...
    assert engine.decodes == [StreamOptions.long_final_beam]  # ... but only the final (a long one) was decoded
    # ... on the segment's tail only: one 10 s mel each, however long the segment
    assert max(secs for secs, _ in engine.encodes[:-1]) <= StreamOptions.probe_window_s
    assert engine.encodes[-1][0] > 11.0  # the final covers the whole segment


def test_the_final_uses_the_final_quantum_when_one_is_set():
    engine = FakeEngine()
    stream = RecognitionStream(engine, LoudnessVad(),
                               StreamOptions(languages=("en", "ja"), padding=None, final_quantum_s=30.0))
    run(stream, np.concatenate([silence(0.5), speech(4.0), silence(1.5)]))
    assert engine.encodes[-1][1] == 30.0
    assert all(q != 30.0 for _, q in engine.encodes[:-1])  # interim windows keep theirs


def test_no_interim_window_runs_while_vad_hears_a_pause():
    audio = np.concatenate([speech(1.6), silence(0.8), speech(1.6), silence(1.5)])  # pause from 1.6 s to 2.4 s
    options = StreamOptions(languages=("en", "ja"), padding=None, min_silence_s=1.0, speculate_after_s=0.9)
    ends = {}
    for in_pauses in (False, True):
        engine = FakeEngine()
        run(RecognitionStream(engine, LoudnessVad(), dataclasses.replace(options, interim_in_pauses=in_pauses)), audio)
        ends[in_pauses] = [secs for secs, _ in engine.encodes[:-1]]
    assert not [t for t in ends[False] if 1.7 <= t <= 2.4], ends  # deferred to when speech resumes ...
    assert [t for t in ends[False] if 2.4 < t <= 2.6], ends
    assert [t for t in ends[True] if 1.7 <= t <= 2.4], ends  # ... where it would otherwise have run


class TailSaysJapanese(FakeEngine):
    """The whole window is English; its trailing seconds (the switch probe) sound Japanese."""

    def detect(self, encoded, pair, last_seconds=None, span=None):
        if last_seconds is None and span is None:
            return super().detect(encoded, pair)
        return {"ja": 0.95, "en": 0.05}


def test_a_switch_is_suspected_between_the_first_probe_vote_and_its_confirmation():
    stream = RecognitionStream(TailSaysJapanese(), LoudnessVad(),
                               StreamOptions(languages=("en", "ja"), initial_language="en", padding=None))
    suspected, switched = [], False
    for chunk in np.split(speech(8.0), 80):
        stream.feed(chunk)
        switched = switched or any(getattr(e, "to_language", None) == "ja" for e in stream.step())
        suspected.append(stream.switch_suspected)
    first = suspected.index(True)
    assert first >= 29  # the probe needs 3 s of segment (chunk 29 ends at 3.0 s)
    assert switched and not suspected[-1]  # confirmed by the next probe: a new segment, nothing pending


class SaysItInEachLanguage(FakeEngine):
    def decode(self, encoded, language, *, prompt="", prefix="", beam_size=1):
        super().decode(encoded, language, beam_size=beam_size)
        text = "hello world" if language == "en" else "こんにちは世界です"
        return Decoded(text, language, no_speech_prob=0.01, avg_logprob=-0.2, token_count=3)


def test_a_long_segment_without_interim_votes_takes_its_own_confident_language():
    """Every interim window dropped (a live stream far behind): the whole segment's detection
    (English, 0.95) is the only vote and decides; a short one keeps the committed language."""
    for seconds, expected in ((3.0, "en"), (1.0, "ja")):
        stream = RecognitionStream(SaysItInEachLanguage(), LoudnessVad(),
                                   StreamOptions(languages=("en", "ja"), initial_language="ja", padding=None))
        events = run(stream, np.concatenate([speech(seconds), silence(1.5)]), work="none")
        finals = [e for e in events if isinstance(e, Result) and e.is_final]
        assert [f.language for f in finals] == [expected], (seconds, finals)


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@dataclasses.dataclass
class HeardEncoded(FakeEncoded):
    audio: np.ndarray = None


class HearsPitch(SaysItInEachLanguage):
    """English is a 220 Hz tone, Japanese a 440 Hz one: every window, probe and slice is judged
    on the audio it covers (zero crossings), as Whisper judges the frames it is given."""

    def encode(self, audio, padding=None, quantum_s=None):
        super().encode(audio, padding, quantum_s)
        return HeardEncoded(len(audio) / RATE, quantum_s, None, audio)

    def detect(self, encoded, pair, last_seconds=None, span=None):
        if span is None:
            span = (0.0 if last_seconds is None else max(0.0, encoded.duration_s - last_seconds), encoded.duration_s)
        piece = encoded.audio[int(span[0] * RATE):int(span[1] * RATE)]
        if len(piece) < 2 or np.abs(piece).max() < 0.05:
            return {"en": 0.5, "ja": 0.5}
        hz = np.count_nonzero(np.diff(np.signbit(piece))) / 2 / (len(piece) / RATE)
        en = float(np.clip((440 - hz) / 220, 0.02, 0.98))
        return {"en": en, "ja": 1 - en}


def test_a_switch_the_dropped_probes_missed_splits_the_final_where_it_happened():
    """A live stream far behind (every interim window dropped) speaks 5 s of English, breathes,
    and goes on 5 s in Japanese: the final's scan finds the switch, locates it at the breath and
    sends two finals, each in its language, with the switch between them. Off, one final."""
    audio = np.concatenate([silence(0.3), tone(5.0, 220), silence(0.15), tone(5.0, 440), silence(1.5)])
    options = StreamOptions(languages=("en", "ja"), initial_language="en", padding=None)
    stream = RecognitionStream(HearsPitch(), LoudnessVad(), options)
    events = run(stream, audio, work="none")
    finals = [e for e in events if isinstance(e, Result) and e.is_final]
    switches = [e for e in events if isinstance(e, LanguageSwitched)]
    assert [(f.language, f.final_reason) for f in finals] == [("en", "language_switch"), ("ja", "end_of_speech")]
    assert [(s.from_language, s.to_language) for s in switches] == [("en", "ja")]
    assert abs(switches[0].offset_s - 5.37) <= 0.2, switches  # the breath, 5.30-5.45 s
    assert finals[0].end_s == finals[1].start_s == switches[0].offset_s
    assert finals[1].segment_id == finals[0].segment_id + 1

    off = RecognitionStream(HearsPitch(), LoudnessVad(), dataclasses.replace(options, final_switch_scan="off"))
    finals = [e for e in run(off, audio, work="none") if isinstance(e, Result) and e.is_final]
    assert len(finals) == 1


class LiveProbesHearOnlyEnglish(HearsPitch):
    """Live probes (trailing seconds of a window) always hear English; slices hear the audio."""

    def detect(self, encoded, pair, last_seconds=None, span=None):
        if last_seconds is not None:
            return {"en": 0.95, "ja": 0.05}
        return super().detect(encoded, pair, span=span)


def test_the_final_scan_leaves_one_language_segments_and_by_default_live_probed_ones_alone():
    options = StreamOptions(languages=("en", "ja"), initial_language="en", padding=None)
    engine = HearsPitch()
    events = run(RecognitionStream(engine, LoudnessVad(), options),
                 np.concatenate([tone(10.0, 220), silence(1.5)]), work="none")
    assert [e.language for e in events if isinstance(e, Result) and e.is_final] == ["en"]
    assert len(engine.encodes) == 1  # no split, no second encode

    # Every live probe ran (and heard no switch): "missed" trusts them, "always" scans anyway.
    # (No onset probes: live ones, but slices, which this fake answers truthfully.)
    audio = np.concatenate([tone(5.0, 220), silence(0.15), tone(5.0, 440), silence(1.5)])
    languages = {}
    for scan in ("missed", "always"):
        stream = RecognitionStream(LiveProbesHearOnlyEnglish(), LoudnessVad(),
                                   dataclasses.replace(options, final_switch_scan=scan, onset_probe_s=0))
        languages[scan] = [e.language for e in run(stream, audio, work="probe") if isinstance(e, Result) and e.is_final]
    assert languages == {"missed": ["en"], "always": ["en", "ja"]}


class SliceUnsure(HearsPitch):
    """English (220 Hz), then Japanese (440 Hz). A window's trailing 2 s slice that hears
    Japanese only leans to it (0.4); a clean encode of those 2 s (no padding, 2.0 s long) hears
    it clearly, as does everything else (judged on the audio it covers)."""

    def __init__(self) -> None:
        super().__init__()
        self.clean = 0  # probe re-checks (clean 2 s encodes)

    def encode(self, audio, padding=None, quantum_s=None):
        return dataclasses.replace(super().encode(audio, padding, quantum_s), padding=padding)

    def detect(self, encoded, pair, last_seconds=None, span=None):
        heard = super().detect(encoded, pair, last_seconds, span)
        if encoded.padding is None and encoded.duration_s == 2.0 and last_seconds is None and span is None:
            self.clean += 1
        elif last_seconds is not None and heard["ja"] > 0.75:
            return {"ja": 0.4, "en": 0.6}
        return heard


def test_an_unsure_probe_is_rechecked_on_its_own_encode_and_that_confirms_the_switch():
    from services.asr.engine import Padding

    padding = Padding(np.zeros(RATE, dtype=np.float32), "pad")  # windows under 3 s carry it
    options = StreamOptions(languages=("en", "ja"), initial_language="en", padding=padding)
    switched = {}
    for recheck in (0.2, 0.0):
        engine = SliceUnsure()
        events = run(RecognitionStream(engine, LoudnessVad(), dataclasses.replace(options, probe_recheck_above=recheck)),
                     np.concatenate([tone(4.0, 220), tone(4.0, 440), silence(1.5)]))
        switched[recheck] = [(e.from_language, e.to_language) for e in events if isinstance(e, LanguageSwitched)]
        assert (engine.clean > 0) == (recheck > 0)
    assert switched == {0.2: [("en", "ja")], 0.0: []}


def test_a_head_whose_language_was_voted_late_is_scanned_from_its_own_first_seconds():
    """The first 4.5 s of a segment get no window (a live stream far behind): it speaks English,
    then Japanese, then English again. Its language is voted late (Japanese, the committed one),
    the live probe finds the switch back to English and cuts the head there, in Japanese. The
    scan of that head, anchored on its first slice (English), splits off the English start."""
    audio = np.concatenate([silence(0.3), tone(3.0, 220), silence(0.15), tone(3.0, 440), silence(0.15),
                            tone(3.5, 220), silence(1.5)])
    # (the windows' own probes of the stretch they stepped over and of the speech after a breath,
    # and a suspected switch's sooner confirming window, which find it too, off: the scan's test)
    options = StreamOptions(languages=("en", "ja"), initial_language="ja", padding=None, probe_gaps=False,
                            onset_probe_s=0, confirm_after_s=0)
    stream, events, step = RecognitionStream(HearsPitch(), LoudnessVad(), options), [], int(0.1 * RATE)
    for i in range(0, len(audio), step):
        events += stream.feed(audio[i:i + step])
        events += stream.step("none" if i < 4.8 * RATE else "probe")
    events += stream.finish()
    finals = [(e.language, round(e.start_s, 1), round(e.end_s, 1)) for e in events if isinstance(e, Result)]
    switches = [(e.from_language, e.to_language) for e in events if isinstance(e, LanguageSwitched)]
    assert [f[0] for f in finals] == ["en", "ja", "en"], finals
    assert switches == [("en", "ja"), ("ja", "en")], switches
    assert abs(finals[1][1] - 3.4) <= 0.25 and abs(finals[2][1] - 6.5) <= 0.35, finals  # at the breaths

    stream = RecognitionStream(HearsPitch(), LoudnessVad(), dataclasses.replace(options, final_switch_scan="off"))
    events = []
    for i in range(0, len(audio), step):
        events += stream.feed(audio[i:i + step])
        events += stream.step("none" if i < 4.8 * RATE else "probe")
    events += stream.finish()
    assert len([e for e in events if isinstance(e, Result)]) < 3  # without the scan a turn is lost


class HeldJobs(FakeEngine):
    """`background` is the stream's background runner. Jobs of the held kind (interim windows,
    or with `drafts=True` finals decoded ahead) run on threads, kept in `threads`, whose encodes
    wait for `release`; the other kind runs at once, on the caller's thread."""

    def __init__(self, drafts: bool = False) -> None:
        super().__init__()
        self.hold_windows = not drafts
        self.held, self.release = threading.Event(), threading.Event()
        self.threads: list[threading.Thread] = []
        self.decoded_on: list[bool] = []  # per decode: on a held thread

    def background(self, job, window=True) -> None:
        if window != self.hold_windows:
            job()
            return
        self.threads.append(threading.Thread(target=job))
        self.threads[-1].start()

    def encode(self, audio, padding=None, quantum_s=None):
        if threading.current_thread() in self.threads:
            self.held.set()
            assert self.release.wait(10)
        return super().encode(audio, padding, quantum_s)

    def decode(self, encoded, language, *, prompt="", prefix="", beam_size=1):
        self.decoded_on.append(threading.current_thread() in self.threads)
        return super().decode(encoded, language, prompt=prompt, prefix=prefix, beam_size=beam_size)


def test_a_final_does_not_wait_for_a_window_running_in_the_background_and_supersedes_it():
    engine = HeldJobs()
    threads = engine.threads
    stream = RecognitionStream(engine, LoudnessVad(),
                               StreamOptions(languages=("en", "ja"), initial_language="en", padding=None))
    events = []
    for chunk in np.split(np.concatenate([speech(1.5), silence(1.0)]), 25):
        events += stream.feed(chunk)
        events += stream.step(background=engine.background)
    assert engine.held.is_set() and len(threads) == 1 and threads[0].is_alive()  # one window, still running
    assert [(e.is_final, e.final_reason) for e in events if isinstance(e, Result)] == [(True, "end_of_speech")]
    engine.release.set()
    threads[0].join(5)
    assert stream.step() == [] and stream.finish() == []  # the window's result died with its segment


def test_windows_run_in_the_background_give_the_finals_and_switches_of_inline_ones():
    """A window that ran on another thread hands its interim result and the switch it confirmed
    to the stream's own thread, which sends and cuts them at its next call: the same finals, cut
    at the same breath, as when every window runs inline (here each window is done before the
    next chunk arrives)."""
    audio = np.concatenate([silence(0.3), tone(5.0, 220), silence(0.15), tone(5.0, 440), silence(1.5)])
    options = StreamOptions(languages=("en", "ja"), initial_language="en", padding=None)
    outcomes, switched_at, queued, threads = {}, {}, [], []

    def later(job, window=True):  # run on another thread once step has returned, before the next feed
        queued.append(job)

    for background in (None, later):
        stream, events = RecognitionStream(HearsPitch(), LoudnessVad(), options), []
        for k, chunk in enumerate(np.array_split(audio, len(audio) // 1600)):
            events += stream.feed(chunk)
            events += stream.step(background=background)
            if any(isinstance(e, LanguageSwitched) for e in events):
                switched_at.setdefault(background is None, k)
            while queued:
                threads.append(threading.Thread(target=queued.pop()))
                threads[-1].start()
                threads[-1].join(5)
        events += stream.finish()
        outcomes[background is None] = (
            [(e.language, e.start_s, e.end_s, e.final_reason) for e in events if isinstance(e, Result) and e.is_final],
            [(e.from_language, e.to_language, e.offset_s) for e in events if isinstance(e, LanguageSwitched)],
            len([e for e in events if isinstance(e, Result) and not e.is_final]) > 3,
        )
    assert threads and outcomes[True] == outcomes[False], outcomes
    assert [f[0] for f in outcomes[True][0]] == ["en", "ja"] and outcomes[True][2]
    assert switched_at[True] < 90 and switched_at[False] == switched_at[True] + 1, switched_at  # live, one chunk on


def test_a_window_that_ends_after_the_final_was_drafted_leaves_the_draft_alone():
    """The final is drafted 0.3 s into a pause while a window (started at 1 s, before the pause
    or in its first 0.3 s) still runs; the window ends before the pause is confirmed. Its vote
    is not counted, so the final is not decoded a second time; its interim result comes first."""
    for spoken, release in ((1.5, 19), (0.8, 12)):  # drafted at 1.8 / 1.1 s, confirmed at 2.1 / 1.4 s
        engine = HeldJobs()
        stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(
            languages=("en", "ja"), initial_language="en", padding=None, speculate_after_s=0.3))
        events = []
        for k, chunk in enumerate(np.split(np.concatenate([speech(spoken), silence(2.5 - spoken)]), 25)):
            events += stream.feed(chunk)
            events += stream.step(background=engine.background)
            if k == release:
                assert engine.decodes == [5], spoken
                engine.release.set()
                engine.threads[0].join(5)
        assert engine.decodes == [5, 1], spoken  # the final, then the window's greedy decode; no second final
        assert [e.is_final for e in events if isinstance(e, Result)] == [False, True], spoken


def test_a_final_decoded_ahead_in_the_background_leaves_vad_going_and_is_waited_for():
    """Live, the final is decoded ahead on another thread 0.15 s into the pause: the stream's own
    calls go on meanwhile (VAD hears the rest of the pause), and the final made when VAD confirms
    the silence waits for that draft instead of decoding the segment a second time."""
    engine = HeldJobs(drafts=True)
    stream = RecognitionStream(engine, LoudnessVad(),
                               StreamOptions(languages=("en", "ja"), initial_language="en", padding=None))
    audio = np.concatenate([speech(1.5), silence(1.0)])
    events, chunks = [], np.split(audio, 25)
    for chunk in chunks[:20]:  # up to 2.0 s: 0.5 s into the pause, the draft held since about 1.7 s
        events += stream.feed(chunk)
        events += stream.step(background=engine.background)
    assert engine.held.is_set() and engine.threads[0].is_alive() and 5 not in engine.decodes
    assert not [e for e in events if isinstance(e, Result) and e.is_final]
    threading.Timer(0.2, engine.release.set).start()  # released while the final waits for it
    for chunk in chunks[20:]:
        events += stream.feed(chunk)
        events += stream.step(background=engine.background)
    events += stream.finish()
    assert [(e.is_final, e.final_reason) for e in events if isinstance(e, Result) and e.is_final] == \
        [(True, "end_of_speech")]
    finals_decoded_on = [d for beam, d in zip(engine.decodes, engine.decoded_on) if beam == StreamOptions.beam_size]
    assert finals_decoded_on == [True] and len(engine.threads) == 1  # once, by the draft


def test_a_final_decoded_ahead_in_a_breath_is_dropped_once_speech_resumes():
    """A breath of 0.4 s (shorter than the 0.6 s that ends a segment): the draft begun 0.15 s into
    it is dropped after its encode, as speech has resumed, without a decode; windows resume
    once it is gone, and the segment gets one final, decoded at its real end."""
    engine = HeldJobs(drafts=True)
    stream = RecognitionStream(engine, LoudnessVad(),
                               StreamOptions(languages=("en", "ja"), initial_language="en", padding=None))
    audio = np.concatenate([speech(1.5), silence(0.4), speech(2.0), silence(1.0)])
    events, windows = [], 0
    for k, chunk in enumerate(np.split(audio, 49)):
        events += stream.feed(chunk)
        events += stream.step(background=engine.background)
        if k == 21:  # 2.2 s: speech resumed at 1.9 s; the held draft ends now
            assert engine.held.is_set() and engine.decodes.count(StreamOptions.beam_size) == 0
            windows = len(engine.encodes)
            engine.release.set()
            engine.threads[0].join(5)
            assert engine.decodes.count(StreamOptions.beam_size) == 0  # dropped after its encode
    events += stream.finish()
    finals = [e for e in events if isinstance(e, Result) and e.is_final]
    assert len(finals) == 1 and finals[0].start_s == 0.0 and 3.9 < finals[0].end_s < 4.2, finals
    assert len(engine.encodes) > windows + 2  # windows went on after the dropped draft
    for thread in engine.threads:
        thread.join(5)


def test_after_a_background_text_window_interim_text_rests_an_interval_and_probes_go_on():
    """Interim text (whole segment re-encoded and decoded) rests an interval after its window
    finished; a window due before then (an interval after the audio the last one covered) is
    probe-only. Asked for probes only, every window keeps the interval."""
    for work, expected in (("text", [(9, True), (25, False), (35, True)]),
                           ("probe", [(9, False), (25, False), (35, False)])):
        engine, windows = HeldJobs(), []
        stream = RecognitionStream(engine, LoudnessVad(),
                                   StreamOptions(languages=("en", "ja"), initial_language="en", padding=None))
        run_window = stream._interim
        stream._interim = lambda seg, end, audio, text, *rest: (windows.append((k, text)), run_window(seg, end, audio, text, *rest))
        for k, chunk in enumerate(np.split(speech(6.0), 60)):
            stream.feed(chunk)
            stream.step(work, background=engine.background)
            if k == 24:  # the window started at 1.0 s (chunk 9) finishes at 2.5 s
                engine.release.set()
            for thread in engine.threads[1:] if k < 24 else engine.threads:
                thread.join(5)
        assert windows[:3] == expected, (work, windows)


class WholeWindowHearsItsEnd(HearsPitch):
    """Whole-window detection judged on the window's last 45 % (as Whisper's was, on a live
    ko/en stream: Korean 0.99 on a window 2 s Korean out of 5 s); probes and slices as heard."""

    def detect(self, encoded, pair, last_seconds=None, span=None):
        if last_seconds is None and span is None:
            span = (0.55 * encoded.duration_s, encoded.duration_s)
        return super().detect(encoded, pair, last_seconds, span)


def test_probe_only_windows_lock_the_language_their_votes_agree_on_so_a_switch_is_still_found():
    """A loaded live stream runs probe-only windows (no interim text, so nothing is committed):
    a confident English vote locks the segment's language, and the window that later leans
    Japanese does not re-anchor the switch probe on Japanese, which then confirms the switch."""
    audio = np.concatenate([silence(0.3), tone(3.0, 220), silence(0.15), tone(4.0, 440), silence(1.5)])
    options = StreamOptions(languages=("en", "ja"), initial_language="en", padding=None, final_switch_scan="off")
    events = run(RecognitionStream(WholeWindowHearsItsEnd(), LoudnessVad(), options), audio, work="probe")
    finals = [(e.language, e.final_reason) for e in events if isinstance(e, Result) and e.is_final]
    assert finals == [("en", "language_switch"), ("ja", "end_of_speech")], finals
    switches = [e.offset_s for e in events if isinstance(e, LanguageSwitched)]
    assert len(switches) == 1 and abs(switches[0] - 3.37) <= 0.2, switches  # the breath, 3.30-3.45 s


class BusyTailSaysJapanese(TailSaysJapanese):
    """Japanese from 3.9 s on: a probe or 2 s slice ending after it sounds Japanese (windows
    start at the segment's start here), whole windows English."""

    def load(self) -> float:  # a scheduler backed up: interim windows stretched to 4 s
        return 3.0

    def detect(self, encoded, pair, last_seconds=None, span=None):
        if span is not None and span[1] <= 3.9:
            return FakeEngine.detect(self, encoded, pair)
        return super().detect(encoded, pair, last_seconds, span)


def test_under_load_a_suspected_switchs_confirming_probe_is_not_stretched():
    """Windows 4 s apart under load; the one after the first vote comes `confirm_after_s` later
    (0.5 s), or with that off an unstretched interval (1 s) later."""
    for confirm_after, confirming in ((0.5, 44), (0.0, 49)):
        stream = RecognitionStream(BusyTailSaysJapanese(), LoudnessVad(), StreamOptions(
            languages=("en", "ja"), initial_language="en", padding=None, confirm_after_s=confirm_after))
        windows, switched = [], None
        for k, chunk in enumerate(np.split(speech(10.0), 100)):
            stream.feed(chunk)
            events = stream.step()
            windows += [k] * (stream.stats.windows - len(windows))
            if switched is None and any(isinstance(e, LanguageSwitched) for e in events):
                switched = k
        assert windows[:2] == [39, confirming] and switched == confirming, (confirm_after, windows, switched)


class BusyHearsPitch(HearsPitch):
    def load(self) -> float:  # a scheduler backed up: interim windows stretched to 2 s
        return 1.0


def test_probes_spaced_out_under_load_still_give_a_short_turn_its_two_votes_live():
    """Windows 2 s apart (a loaded stream) would probe a 2.5 s Japanese turn once, not the twice a
    switch needs: each window also probes, on slices of its encoder output, where the probes it
    stepped over would have ended. The turn is found live (the final's scan off), cut at its breaths."""
    audio = np.concatenate([silence(0.3), tone(3.7, 220), silence(0.15), tone(2.5, 440), silence(0.15),
                            tone(4.0, 220), silence(1.5)])
    # (onset probes, which confirm the turn at its breath on their own, and the sooner confirming
    # window, which gives it a second vote too, off: gap probes' test)
    options = StreamOptions(languages=("en", "ja"), initial_language="en", padding=None, final_switch_scan="off",
                            onset_probe_s=0, confirm_after_s=0)
    finals = {}
    for gaps in (True, False):
        events = run(RecognitionStream(BusyHearsPitch(), LoudnessVad(), dataclasses.replace(options, probe_gaps=gaps)),
                     audio, work="probe")
        finals[gaps] = [(e.language, round(e.start_s, 1)) for e in events if isinstance(e, Result) and e.is_final]
    assert [lang for lang, _ in finals[False]] == ["en"], finals  # the tails alone miss the turn
    assert [lang for lang, _ in finals[True]] == ["en", "ja", "en"], finals
    assert abs(finals[True][1][1] - 4.1) <= 0.25 and abs(finals[True][2][1] - 6.7) <= 0.25, finals


def test_a_stream_that_ends_in_a_pause_sends_the_final_decoded_ahead_in_it():
    """The client stops sending 0.5 s after the speech: the final drafted 0.3 s into that pause is
    the one sent (not decoded again on the whole stream), and it ends where the speech did."""
    engine = FakeEngine()
    options = StreamOptions(languages=("en", "ja"), padding=None, speculate_after_s=0.3)
    stream = RecognitionStream(engine, LoudnessVad(), options)
    events = run(stream, np.concatenate([silence(0.3), speech(2.05), silence(0.5)]))
    finals = [e for e in events if isinstance(e, Result) and e.is_final]
    assert len(finals) == 1 and finals[0].final_reason == "end_of_stream"
    assert engine.decodes.count(options.beam_size) == 1
    assert [secs for secs, q in engine.encodes if q is None][-1] < 2.6  # not the 2.85 s received
    assert abs(finals[0].end_s - (2.35 + options.speech_pad_s)) <= 0.05


def test_a_stream_that_ends_mid_speech_or_early_in_a_pause_is_finalized_to_its_end():
    for tail in (0.0, 0.1):  # no final decoded ahead yet: everything received is kept
        engine = FakeEngine()
        stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(languages=("en", "ja"), padding=None))
        events = run(stream, np.concatenate([silence(0.3), speech(2.0), silence(tail)]))
        finals = [e for e in events if isinstance(e, Result) and e.is_final]
        assert len(finals) == 1 and abs(finals[0].end_s - (2.3 + tail)) < 1e-6


class ShortWindowsSayEnglish(HearsPitch):
    """Whole-window detection on windows of 2 s or less says English, confidently, whatever they
    hold (Whisper base on the first 2 s of a Chinese turn: English 0.94-0.99)."""

    def detect(self, encoded, pair, last_seconds=None, span=None):
        if last_seconds is None and span is None and encoded.duration_s <= 2.05:
            return {"en": 0.95, "ja": 0.05}
        return super().detect(encoded, pair, last_seconds, span)


def test_a_confident_vote_on_a_turns_first_two_seconds_does_not_lock_its_language():
    """English, a pause, then Japanese: the probe-only windows on the Japanese turn's first 2 s
    say English; the 3 s one says Japanese. The turn is one Japanese final, not an English head
    cut off at a switch."""
    audio = np.concatenate([silence(0.3), tone(3.0, 220), silence(1.0), tone(5.0, 440), silence(1.5)])
    options = StreamOptions(languages=("en", "ja"), initial_language="en", padding=None)
    events = run(RecognitionStream(ShortWindowsSayEnglish(), LoudnessVad(), options), audio, work="probe")
    finals = [(e.language, e.final_reason) for e in events if isinstance(e, Result) and e.is_final]
    assert finals == [("en", "end_of_speech"), ("ja", "end_of_speech")], finals


class OthersKeepItBusy(FakeEngine):
    def __init__(self, busy: float) -> None:
        super().__init__()
        self.busy = busy

    def others_busy(self) -> float:  # share of the scheduler's last 2 s spent on other streams
        return self.busy


def test_the_final_is_decoded_ahead_in_a_pause_only_while_other_streams_leave_room():
    """Idle (or with other streams keeping the workers half busy), the final is decoded 0.15 s
    into the pause; with them keeping the workers busy beyond `speculate_below_busy` (0.75), when
    VAD confirms the silence (0.6 s), so a breath does not cost a wasted decode."""
    drafted_at = {}
    for busy in (0.0, 0.5, 0.9):
        engine = OthersKeepItBusy(busy)
        stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(languages=("en", "ja"), padding=None))
        audio = np.concatenate([silence(0.3), speech(2.0), silence(1.5)])
        for k, i in enumerate(range(0, len(audio), RATE // 10)):
            stream.feed(audio[i:i + RATE // 10])
            stream.step()
            if StreamOptions.beam_size in engine.decodes and busy not in drafted_at:
                drafted_at[busy] = (k + 1) / 10  # seconds of audio received
        assert engine.decodes.count(StreamOptions.beam_size) == 1
    assert 2.4 <= drafted_at[0.0] <= 2.6 and 2.4 <= drafted_at[0.5] <= 2.6 and 2.9 <= drafted_at[0.9] <= 3.1, drafted_at


class SlicesUnsure(TailSaysJapanese):
    """The trailing probe sounds Japanese; the slices before it are unsure (0.5)."""

    def detect(self, encoded, pair, last_seconds=None, span=None):
        if span is not None:
            return {"ja": 0.5, "en": 0.5}
        return super().detect(encoded, pair, last_seconds, span)


def test_an_unsure_gap_slice_does_not_delay_a_suspected_switchs_confirmation():
    switched_at = {}
    for gaps in (True, False):
        stream = RecognitionStream(SlicesUnsure(), LoudnessVad(), StreamOptions(
            languages=("en", "ja"), initial_language="en", padding=None, probe_gaps=gaps))
        for k, chunk in enumerate(np.split(speech(8.0), 80)):
            stream.feed(chunk)
            if any(isinstance(e, LanguageSwitched) for e in stream.step()) and gaps not in switched_at:
                switched_at[gaps] = k
    assert switched_at[True] == switched_at[False] == 34, switched_at  # first vote at 3 s, confirmed 0.5 s later


class RecordsThreads(HearsPitch):
    """Records, per decode, (language, beam, seconds decoded, the name of the thread it ran on)."""

    def __init__(self) -> None:
        super().__init__()
        self.decoded: list[tuple[str, int, float, str]] = []

    def decode(self, encoded, language, *, prompt="", prefix="", beam_size=1):
        self.decoded.append((language, beam_size, round(encoded.duration_s, 2), threading.current_thread().name))
        return super().decode(encoded, language, prompt=prompt, prefix=prefix, beam_size=beam_size)


def run_live(stream: RecognitionStream, audio: np.ndarray, draft_delay: int = 0):
    """Chunks of 0.1 s; each background job (named "window" or "draft") runs on a thread of its
    own once step has returned (a draft `draft_delay` chunks later), and ends before the next
    chunk. Returns the events and the chunk at which the switch came."""
    queued: list = []
    events, switched_at = [], None
    k = 0

    def background(job, window=True):
        queued.append((job, "window" if window else "draft", k + (0 if window else draft_delay)))

    for k, chunk in enumerate(np.array_split(audio, len(audio) // 1600)):
        events += stream.feed(chunk)
        events += stream.step(background=background)
        if switched_at is None and any(isinstance(e, LanguageSwitched) for e in events):
            switched_at = k
        for job, name, due in [q for q in queued if q[2] <= k]:
            queued.remove((job, name, due))
            thread = threading.Thread(target=job, name=name)
            thread.start()
            thread.join(5)
    return events + stream.finish(), switched_at


@pytest.mark.parametrize("moved_s", [0.0, 0.16])
def test_a_suspected_switchs_head_final_is_decoded_ahead_and_sent_when_the_switch_is_confirmed(moved_s):
    """English, a 0.15 s breath, Japanese, live: the first probe that hears Japanese starts the
    head's final (English, up to the cut that probe's window locates) on a thread of its own;
    the next probe confirms the switch and the final sent is that one, not decoded again, even
    where the confirming window locates the switch `moved_s` later (0.16 s: as measured on
    ja-en_B-A-B_immediate). Without head drafts the head is decoded at the confirmation, at the
    confirming window's cut."""
    audio = np.concatenate([silence(0.3), tone(5.0, 220), silence(0.15), tone(5.0, 440), silence(1.5)])
    # (onset probes, which confirm the switch at the breath before the head draft runs, off)
    options = StreamOptions(languages=("en", "ja"), initial_language="en", padding=None, onset_probe_s=0)
    outcomes = {}
    for head_drafts in (True, False):
        engine = RecordsThreads()
        stream = RecognitionStream(engine, LoudnessVad(), dataclasses.replace(options, head_drafts=head_drafts))
        located = []

        def locate(*args, stream=stream, located=located):
            located.append(RecognitionStream._locate_switch(stream, *args) + int(moved_s * RATE) * len(located))
            return located[-1]

        stream._locate_switch = locate
        events, switched_at = run_live(stream, audio)
        finals = [e for e in events if isinstance(e, Result) and e.is_final]
        assert [(f.language, f.final_reason) for f in finals] == [("en", "language_switch"), ("ja", "end_of_speech")]
        head = round(finals[0].end_s - finals[0].start_s, 2)
        heads = [(thread, seconds) for language, beam, seconds, thread in engine.decoded
                 if language == "en" and beam == StreamOptions.beam_size]
        assert [seconds for _, seconds in heads] == [head], heads  # the head's final: decoded once
        outcomes[head_drafts] = (heads[0][0], switched_at, finals[0].end_s * RATE, located)
    drafted, confirmed = outcomes[True], outcomes[False]
    assert drafted[0] == "draft" and confirmed[0] == "MainThread", outcomes
    assert drafted[1] == confirmed[1], outcomes  # the switch came at the same chunk
    assert len(drafted[3]) == 2 and drafted[2] == drafted[3][0]  # cut where the suspicion's window located it
    assert len(confirmed[3]) == 1 and confirmed[2] == confirmed[3][0]


class FirstProbeSaysJapanese:
    """Mixin for a fake engine: its first switch probe (a window's trailing seconds) hears Japanese."""

    probes = 0

    def detect(self, encoded, pair, last_seconds=None, span=None):
        if last_seconds is not None and span is None:
            self.probes += 1
            if self.probes == 1:
                return {"ja": 0.95, "en": 0.05}
        return super().detect(encoded, pair)


class OneProbeSaysJapanese(FirstProbeSaysJapanese, FakeEngine):
    """English throughout, but the first switch probe hears Japanese."""


def test_a_withdrawn_suspicion_leaves_no_trace_of_its_head_draft():
    """One probe hears Japanese, the next English again: the head decoded ahead for that
    suspicion is not sent; the segment gets its one English final, decoded at its end."""
    engine = OneProbeSaysJapanese()
    stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(
        languages=("en", "ja"), initial_language="en", padding=None, head_drafts=True))
    events, switched_at = run_live(stream, np.concatenate([speech(5.0), silence(1.5)]))
    finals = [e for e in events if isinstance(e, Result) and e.is_final]
    assert switched_at is None and [(f.language, f.start_s) for f in finals] == [("en", 0.0)]
    assert 4.9 <= finals[0].end_s <= 5.3
    assert engine.decodes.count(StreamOptions.beam_size) == 2  # the head decoded ahead, then the final


class HeldDraftsOneProbeSaysJapanese(FirstProbeSaysJapanese, HeldJobs):
    """Finals decoded ahead are held at their encode (HeldJobs); the first switch probe hears Japanese."""

    def __init__(self) -> None:
        super().__init__(drafts=True)


def test_a_pause_draft_runs_beside_a_suspected_switchs_head_draft_which_then_gives_way():
    """English ends 0.6 s after a probe that heard Japanese: the head's draft is still running
    (held) when the pause begins. The pause's draft starts beside it; once released, the head's
    is dropped after its encode and the final is the pause's draft, decoded once on its thread."""
    engine = HeldDraftsOneProbeSaysJapanese()
    stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(
        languages=("en", "ja"), initial_language="en", padding=None, head_drafts=True))
    events = []
    for k, chunk in enumerate(np.split(np.concatenate([speech(3.6), silence(1.4)]), 50)):
        events += stream.feed(chunk)
        events += stream.step(background=engine.background)
        if k == 38:  # 3.9 s: 0.3 s into the pause, before VAD confirms it (4.2 s)
            assert len(engine.threads) == 2 and all(t.is_alive() for t in engine.threads)  # head, then pause
            engine.release.set()
            for thread in engine.threads:
                thread.join(5)
    events += stream.finish()
    finals = [e for e in events if isinstance(e, Result) and e.is_final]
    assert [(f.language, f.final_reason) for f in finals] == [("en", "end_of_speech")]
    beams = [(beam, on_draft) for beam, on_draft in zip(engine.decodes, engine.decoded_on) if beam > 1]
    assert beams == [(StreamOptions.beam_size, True)], beams  # the pause's draft only: the head's was dropped


@pytest.mark.parametrize("draft_delay", [0, 3])
def test_a_switchs_cut_snaps_to_the_turns_gap_whose_final_was_decoded_ahead(draft_delay):
    """English, a 0.3 s gap, Japanese, live: VAD hears the gap and the English final is decoded
    ahead there (with `draft_delay` 3, only once speech has resumed: dropped after its encode).
    The switch confirmed later is cut at that draft's end, not at the quietest frame the probes
    located, so the head's audio is encoded once, and decoded once (the draft itself, or from
    its kept encoder output). With `snap_cut_s=0` the head is encoded and decoded again."""
    audio = np.concatenate([silence(0.3), tone(5.0, 220), silence(0.3), tone(5.0, 440), silence(1.5)])
    gap_draft_end = 5.3 + StreamOptions.speech_pad_s
    outcomes = {}
    for snap in (0.25, 0.0):
        engine = RecordsThreads()
        stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(  # (onset probes cut at the gap themselves)
            languages=("en", "ja"), initial_language="en", padding=None, snap_cut_s=snap, onset_probe_s=0))
        events, switched_at = run_live(stream, audio, draft_delay)
        finals = [e for e in events if isinstance(e, Result) and e.is_final]
        assert [(f.language, f.final_reason) for f in finals] == [("en", "language_switch"), ("ja", "end_of_speech")]
        assert switched_at is not None and switched_at > 56  # confirmed by probes well after the gap
        head = finals[0].end_s
        finals_encoded = [secs for secs, quantum in engine.encodes if quantum is None and 5.4 < secs < 5.6]
        head_decodes = [thread for language, beam, secs, thread in engine.decoded
                        if language == "en" and beam == StreamOptions.beam_size]
        outcomes[snap] = (head, finals_encoded, head_decodes)
    head, encoded, decodes = outcomes[0.25]
    assert abs(head - gap_draft_end) <= 0.04, outcomes  # (VAD frames are 32 ms)
    assert encoded == [round(head, 2)], outcomes  # the gap's draft's encode, reused (no window's that long)
    assert decodes == (["draft"] if draft_delay == 0 else ["MainThread"]), outcomes
    head, encoded, decodes = outcomes[0.0]
    assert head != outcomes[0.25][0], outcomes  # the probes located it elsewhere in the gap ...
    assert len(encoded) == 2 and len(decodes) == 1 + (draft_delay == 0), outcomes  # ... so encoded again


def test_a_finals_only_stream_probes_for_switches_live_without_decoding_interim_text():
    """A client that asked for no interim results: English, a 0.15 s breath (no VAD pause), then
    Japanese, live. Its windows vote and probe (the switch is cut live, at the breath) but decode
    no text: the only decodes are the finals'."""
    audio = np.concatenate([silence(0.3), tone(5.0, 220), silence(0.15), tone(5.0, 440), silence(1.5)])
    for interim in (False, True):
        engine = RecordsThreads()
        stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(
            languages=("en", "ja"), initial_language="en", padding=None, interim_results=interim))
        events, switched_at = run_live(stream, audio)
        finals = [e for e in events if isinstance(e, Result) and e.is_final]
        assert [(f.language, f.final_reason) for f in finals] == [("en", "language_switch"), ("ja", "end_of_speech")]
        assert abs(finals[1].start_s - 5.35) <= 0.25 and switched_at is not None and switched_at < 100
        interims = [e for e in events if isinstance(e, Result) and not e.is_final]
        greedy = [d for d in engine.decoded if d[1] == 1]
        assert (interims and greedy) if interim else not (interims or greedy), (interim, len(interims), greedy)
        assert len(engine.encodes) > 8  # a window a second either way


@pytest.mark.parametrize("resumed", [False, True])
@pytest.mark.parametrize("closing", ["none", "same end", "other end"])
def test_a_draft_gives_way_while_its_segments_final_is_made_at_another_end(closing, resumed):
    """The stream's thread is inside a final (a switch's head, say) while a final decoded ahead in
    a pause of the same segment runs: that draft goes on if it is that final (same end), even
    once speech has resumed; at another end it stops after its encode, even while VAD (not fed
    meanwhile) still hears the pause. With no final being made, VAD decides, as before."""
    engine = FakeEngine()
    stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(languages=("en", "ja"), padding=None))
    drafts = []
    audio = np.concatenate([silence(0.3), speech(3.0), silence(0.3)])
    for chunk in np.array_split(audio, 36):
        stream.feed(chunk)
        stream.step(background=lambda job, window=True: None if window else drafts.append(job))
    assert len(drafts) == 1  # the pause's draft, not run yet
    if resumed:
        stream.feed(speech(0.2))
    end = next(iter(stream._drafting)).end
    stream._segment.closing_at = {"none": None, "same end": end, "other end": end - RATE // 4}[closing]
    drafts[0]()
    decoded = closing == "same end" or (closing == "none" and not resumed)
    assert engine.decodes.count(StreamOptions.beam_size) == decoded


def switch_chunk(stream: RecognitionStream, audio: np.ndarray) -> tuple[int | None, list]:
    """Inline windows, 0.1 s chunks: the chunk whose step gave the first switch, and all events."""
    events, at = [], None
    for k, chunk in enumerate(np.array_split(audio, len(audio) // 1600)):
        new = stream.feed(chunk) + stream.step()
        if at is None and any(isinstance(e, LanguageSwitched) for e in new):
            at = k
        events += new
    return at, events + stream.finish()


class ShortSlicesSayJapanese(FakeEngine):
    """English throughout, except that in a window any slice shorter than the 2 s probe (an
    onset probe's) hears Japanese; those seconds encoded on their own are English."""

    def detect(self, encoded, pair, last_seconds=None, span=None):
        if span is not None and span[1] - span[0] < 1.9:
            return {"ja": 0.95, "en": 0.05}
        return super().detect(encoded, pair)


def test_an_onset_slice_heard_in_the_other_language_only_in_its_window_changes_nothing():
    """English speech with breaths, whose onset slices all hear Japanese in their windows but
    English on their own encodes: no switch, not even a suspected one; each costs one encode."""
    audio = np.concatenate([silence(0.3), *[np.concatenate([speech(1.4), silence(0.15)]) for _ in range(5)],
                            silence(1.5)])
    engine = ShortSlicesSayJapanese()
    stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(
        languages=("en", "ja"), initial_language="en", padding=None, speculate_after_s=0.5))
    suspected, events = False, []
    for chunk in np.array_split(audio, len(audio) // 1600):
        events += stream.feed(chunk) + stream.step()
        suspected = suspected or stream.switch_suspected
    events += stream.finish()
    assert not suspected and not any(isinstance(e, LanguageSwitched) for e in events)
    assert {e.language for e in events if isinstance(e, Result) and e.is_final} == {"en"}
    assert any(secs < 2.0 and quantum == 2.0 for secs, quantum in engine.encodes[3:]), engine.encodes  # checked alone


class AloneHearsEnglish(HearsPitch):
    """As HearsPitch, except that audio encoded on its own for a probe (no padding, under 2 s:
    an onset slice's separate encode) is heard as English."""

    def detect(self, encoded, pair, last_seconds=None, span=None):
        if span is None and last_seconds is None and encoded.duration_s < 2.0 and encoded.quantum_s == 2.0:
            return {"en": 0.95, "ja": 0.05}
        return super().detect(encoded, pair, last_seconds, span)


def test_an_onset_slice_heard_twice_confirms_the_switch_at_its_dip_one_second_after_it():
    """English, a 0.15 s breath, Japanese. A window comes 1 s after the breath (whatever the
    interval), its onset slice hears Japanese, so does a separate encode of that second: the
    switch is confirmed there, at the breath, seconds before the 2 s probes would have. If the
    separate encode disagrees (or onset probes are off), the switch waits for the 2 s probes."""
    audio = np.concatenate([silence(0.3), tone(4.0, 220), silence(0.15), tone(4.0, 440), silence(1.5)])
    outcomes = {}
    for name, engine, confirm in (("confirm", HearsPitch(), 1.0), ("off", HearsPitch(), 0.0),
                                  ("disagree", AloneHearsEnglish(), 1.0)):
        stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(
            languages=("en", "ja"), initial_language="en", padding=None, onset_probe_s=confirm))
        at, events = switch_chunk(stream, audio)
        finals = [(f.language, round(f.start_s, 2), round(f.end_s, 2)) for f in events
                  if isinstance(f, Result) and f.is_final]
        outcomes[name] = (at, finals)
    at, finals = outcomes["confirm"]
    assert [f[0] for f in finals] == ["en", "ja"] and 4.3 <= finals[1][1] <= 4.45, outcomes  # at the breath
    assert 52 <= at <= 55, outcomes  # 1.0 s of Japanese (from 4.45 s), and the chunk's window
    assert outcomes["off"][0] - at >= 9 and outcomes["disagree"][0] - at >= 5, outcomes
    assert [f[0] for f in outcomes["disagree"][1]] == ["en", "ja"], outcomes


class AloneWaitsForALocate(HearsPitch):
    """As HearsPitch; the first encode under 2 s (quantum 2 s) after a probing window (3 s or
    more), an onset slice's own, waits up to 2 s for a span detection on another thread (the
    switch's cut being located) and records if it came."""

    def __init__(self) -> None:
        super().__init__()
        self.beside, self.probing, self.waited = threading.Event(), False, []

    def detect(self, encoded, pair, last_seconds=None, span=None):
        if span is not None and threading.current_thread() is not threading.main_thread():
            self.beside.set()
        return super().detect(encoded, pair, last_seconds, span)

    def encode(self, audio, padding=None, quantum_s=None):
        encoded = super().encode(audio, padding, quantum_s)
        self.probing = self.probing or encoded.duration_s >= 3.0
        if self.probing and not self.waited and encoded.duration_s < 2.0 and encoded.quantum_s == 2.0:
            self.waited.append(self.beside.wait(2.0))
        return encoded


def test_an_onset_switchs_cut_is_located_while_its_confirming_encode_runs():
    """The switch of the test above: the cut is located on another thread while the onset slice
    is encoded on its own (under load each took 0.02-0.2 s one after the other), and the
    outcome is the same: the switch 1 s after the breath, cut at the breath."""
    audio = np.concatenate([silence(0.3), tone(4.0, 220), silence(0.15), tone(4.0, 440), silence(1.5)])
    engine = AloneWaitsForALocate()
    at, events = switch_chunk(RecognitionStream(engine, LoudnessVad(), StreamOptions(
        languages=("en", "ja"), initial_language="en", padding=None)), audio)
    finals = [(f.language, round(f.start_s, 2)) for f in events if isinstance(f, Result) and f.is_final]
    assert engine.waited == [True], engine.waited
    assert [f[0] for f in finals] == ["en", "ja"] and 4.3 <= finals[1][1] <= 4.45 and 52 <= at <= 55, (at, finals)


class RecordsPriorities(TailSaysJapanese):
    """As TailSaysJapanese (probes vote for Japanese unless `tail_japanese` is off), with the
    scheduler's `priority` attribute (as on its per-stream facade): each model call is recorded
    with the chunk it ran in and the priority it was asked at."""

    def __init__(self, tail_japanese: bool) -> None:
        super().__init__()
        self.priority, self.chunk, self.tail_japanese, self.calls = INTERIM, -1, tail_japanese, []

    def encode(self, audio, padding=None, quantum_s=None):
        self.calls.append((self.chunk, "encode", self.priority))
        return super().encode(audio, padding, quantum_s)

    def decode(self, encoded, language, *, prompt="", prefix="", beam_size=1):
        self.calls.append((self.chunk, "decode", self.priority))
        return super().decode(encoded, language, prompt=prompt, prefix=prefix, beam_size=beam_size)

    def detect(self, encoded, pair, last_seconds=None, span=None):
        return super().detect(encoded, pair, last_seconds, span) if self.tail_japanese else \
            FakeEngine.detect(self, encoded, pair)

    def run(self, stream: RecognitionStream, audio: np.ndarray) -> list[bool]:
        """Inline windows, 0.1 s chunks, then finish; whether a switch was suspected before each
        chunk's step."""
        suspected = []
        for k, chunk in enumerate(np.array_split(audio, len(audio) // 1600)):
            self.chunk = k
            stream.feed(chunk)
            suspected.append(stream.switch_suspected)
            stream.step()
        self.chunk = len(suspected)
        stream.finish()
        return suspected


def test_windows_that_can_confirm_a_switch_ask_the_scheduler_for_priority_and_their_text_does_not():
    """A window due 1 s after a breath (its onset probe) or while a switch is suspected (its
    confirming probe) encodes at SWITCH_PROBE, ahead of other streams' interim windows; the
    other windows and every interim text decode stay at INTERIM; finals at FINAL."""
    audio = np.concatenate([silence(0.3), speech(4.0), silence(0.15), speech(2.5), silence(1.5)])
    for tail_japanese in (False, True):
        engine = RecordsPriorities(tail_japanese)
        stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(
            languages=("en", "ja"), initial_language="en", padding=None))
        suspected = engine.run(stream, audio)
        window_encodes = {k: p for k, kind, p in engine.calls if kind == "encode" and p != FINAL}
        urgent = {k for k, p in window_encodes.items() if p == SWITCH_PROBE}
        # the window 1 s after the breath's first quiet frame (4.3 s), and each suspected switch's
        # confirming window (none without Japanese probes; the first, 0.5 s after the vote at 3 s)
        assert urgent == {53} | {k for k in window_encodes if suspected[k]}, engine.calls
        assert (34 in urgent) == tail_japanese, engine.calls
        assert len(window_encodes) - len(urgent) >= 3, engine.calls  # the other windows: INTERIM
        assert set(window_encodes.values()) <= {SWITCH_PROBE, INTERIM}
        assert {p for _, kind, p in engine.calls if kind == "decode"} <= {INTERIM, FINAL}, engine.calls
        assert engine.calls[-1][2] == FINAL, engine.calls


def test_an_onset_probe_takes_the_dip_after_which_the_other_language_is_heard_not_the_quietest():
    """English, a breath, 0.35 s more English, a second breath, Japanese. The window 1 s after the
    second breath probes from both breaths; only the slice after the second is all Japanese, and
    that one is confirmed (the first breath is as quiet, and its slice is half English)."""
    audio = np.concatenate([silence(0.3), tone(4.0, 220), silence(0.15), tone(0.35, 220), silence(0.15),
                            tone(3.0, 440), silence(1.5)])
    stream = RecognitionStream(HearsPitch(), LoudnessVad(), StreamOptions(
        languages=("en", "ja"), initial_language="en", padding=None))
    at, events = switch_chunk(stream, audio)
    finals = [(f.language, round(f.start_s, 2), round(f.end_s, 2))
              for f in events if isinstance(f, Result) and f.is_final]
    assert [f[0] for f in finals] == ["en", "ja"] and 4.75 <= finals[1][1] <= 4.95, finals  # at the second breath
    assert 56 <= at <= 58, (at, finals)  # 1 s after the second breath (4.8-4.95 s)


def test_a_window_due_by_the_interval_just_before_an_onset_probe_waits_for_it_and_is_not_run_twice(monkeypatch):
    """A breath at 4.1 s puts an onset probe's window at 5.2 s (chunk 51), 0.2 s after the
    interval's: the interval's window waits for it (one window, with the interim text) instead of
    running just before it, as it does with the wait off."""
    audio = np.concatenate([silence(0.3), speech(3.8), silence(0.15), speech(2.5), silence(1.5)])
    windows = {}
    for wait in (stream_module.ONSET_WAIT_S, 0.0):
        monkeypatch.setattr(stream_module, "ONSET_WAIT_S", wait)
        engine = RecordsPriorities(tail_japanese=False)
        stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(
            languages=("en", "ja"), initial_language="en", padding=None))
        engine.run(stream, audio)
        windows[wait] = sorted({(k, kind, p) for k, kind, p in engine.calls if p != FINAL})
    assert len(windows) == 2
    waited = next(v for w, v in windows.items() if w > 0)
    assert (49, "encode", INTERIM) in windows[0.0] and (51, "encode", SWITCH_PROBE) in windows[0.0], windows
    assert not any(k == 49 for k, _, _ in waited) and (51, "encode", SWITCH_PROBE) in waited, windows
    assert (51, "decode", INTERIM) in waited, windows  # the interim text the interval's window would have had


def test_a_window_that_another_onset_probe_follows_within_half_a_second_leaves_its_text_to_it(monkeypatch):
    """Breaths at 4.1 s and 4.6 s: onset probes' windows at 5.2 s (chunk 51) and 5.7 s (chunk 56).
    The first is probe-only (its text decode, 0.4-0.8 s under load, would hold the second back:
    one window at a time); the second decodes the interim text. With the rule off, both do."""
    audio = np.concatenate([silence(0.3), speech(3.8), silence(0.15), speech(0.35), silence(0.15), speech(2.5),
                            silence(1.5)])
    texts, default = {}, stream_module.ONSET_TEXT_AHEAD_S
    for ahead in (default, 0.0):
        monkeypatch.setattr(stream_module, "ONSET_TEXT_AHEAD_S", ahead)
        engine = RecordsPriorities(tail_japanese=False)
        engine.run(RecognitionStream(engine, LoudnessVad(), StreamOptions(
            languages=("en", "ja"), initial_language="en", padding=None)), audio)
        assert {(k, p) for k, kind, p in engine.calls if kind == "encode" and 50 <= k <= 57} == \
            {(51, SWITCH_PROBE), (56, SWITCH_PROBE)}, engine.calls
        texts[ahead] = sorted(k for k, kind, p in engine.calls if kind == "decode" and p == INTERIM and 50 <= k <= 57)
    assert texts == {default: [56], 0.0: [51, 56]}, texts


class UnsureWholeWindows(HearsPitch):
    """Whole-window detection judged on the window's last quarter and only 0.66 sure (below the
    hysteresis threshold: a vote sets the segment's language without locking it); probes,
    slices and audio encoded on its own for a probe (under 2 s, quantum 2 s) as heard."""

    def detect(self, encoded, pair, last_seconds=None, span=None):
        alone = encoded.duration_s < 2.0 and encoded.quantum_s == 2.0
        if last_seconds is None and span is None and not alone:
            probs = super().detect(encoded, pair, span=(0.75 * encoded.duration_s, encoded.duration_s))
            return {code: 0.5 + (p - 0.5) / 3 for code, p in probs.items()}
        return super().detect(encoded, pair, last_seconds, span)


def test_the_window_that_confirms_an_onset_switch_does_not_first_relabel_the_segment_with_its_vote():
    """No committed language yet (the stream's first turn), probe-only windows whose votes do not
    lock: the window 1 s after the breath hears Japanese over its whole (it judges its end) and
    in its onset slice. The switch is made at the breath, not lost to a Japanese vote on the
    English turn (one Japanese final from 0.3 s)."""
    audio = np.concatenate([silence(0.3), tone(3.0, 220), silence(0.15), tone(4.0, 440), silence(1.5)])
    options = StreamOptions(languages=("en", "ja"), padding=None, final_switch_scan="off")
    events = run(RecognitionStream(UnsureWholeWindows(), LoudnessVad(), options), audio, work="probe")
    finals = [(e.language, round(e.start_s, 2), round(e.end_s, 2)) for e in events if isinstance(e, Result) and e.is_final]
    assert [f[0] for f in finals] == ["en", "ja"] and 3.25 <= finals[1][1] <= 3.5, finals  # the breath, 3.30-3.45 s


class RecordsHeardWindows(HearsPitch):
    """HearsPitch, recording the chunk and the scheduler priority of every encode."""

    def __init__(self) -> None:
        super().__init__()
        self.priority, self.chunk, self.calls = INTERIM, -1, []

    def encode(self, audio, padding=None, quantum_s=None):
        self.calls.append((self.chunk, self.priority))
        return super().encode(audio, padding, quantum_s)


def test_an_onset_probe_due_just_before_a_later_dips_waits_for_that_ones_window(monkeypatch):
    """English, a breath at 4.3 s, 0.15 s more English, a second breath at 4.6 s, Japanese. The
    onset probe due 1 s after the first breath (chunk 53) waits for the one due 1 s after the
    second (chunk 56), which probes from both breaths: one window instead of two back to back (one
    window at a time: under load the first held the second back by its run time), and the switch
    is confirmed as soon, cut at the second breath. With the wait off both windows run."""
    audio = np.concatenate([silence(0.3), tone(4.0, 220), silence(0.15), tone(0.15, 220), silence(0.15),
                            tone(3.0, 440), silence(1.5)])
    outcome = {}
    for wait in (stream_module.ONSET_WAIT_S, 0.0):
        monkeypatch.setattr(stream_module, "ONSET_WAIT_S", wait)
        engine = RecordsHeardWindows()
        stream = RecognitionStream(engine, LoudnessVad(), StreamOptions(
            languages=("en", "ja"), initial_language="en", padding=None))
        chunks = np.array_split(audio, len(audio) // 1600)
        at, events = None, []
        for k, chunk in enumerate(chunks):
            engine.chunk = k
            new = stream.feed(chunk) + stream.step()
            at = k if at is None and any(isinstance(e, LanguageSwitched) for e in new) else at
            events += new
        events += stream.finish()
        finals = [(f.language, round(f.start_s, 2)) for f in events if isinstance(f, Result) and f.is_final]
        urgent = sorted({k for k, p in engine.calls if p == SWITCH_PROBE and 50 <= k <= 58})
        outcome[wait] = (urgent, at, finals)
    waited = next(v for w, v in outcome.items() if w > 0)
    assert waited[0] == [56] and outcome[0.0][0] == [53, 56], outcome
    for urgent, at, finals in outcome.values():  # the switch as soon, at the second breath
        assert at == 56 and [f[0] for f in finals] == ["en", "ja"] and 4.55 <= finals[1][1] <= 4.75, outcome


class InContextUnsure(HearsPitch):
    """As HearsPitch, except that a slice running to its window's end hears Japanese at most 0.62
    in that window's context (live, Whisper's in-context judgement of an onset slice wavered
    between 0.17 and 0.73 where the seconds alone gave 0.92-0.99), and audio encoded on its own
    for a probe (under 2 s, quantum 2 s) hears Japanese at most `alone_cap`."""

    def __init__(self, alone_cap: float = 1.0) -> None:
        super().__init__()
        self.alone_cap = alone_cap

    def detect(self, encoded, pair, last_seconds=None, span=None):
        probs = super().detect(encoded, pair, last_seconds, span)
        if span is not None and span[1] >= encoded.duration_s - 1e-6:
            cap = 0.62
        elif span is None and last_seconds is None and encoded.duration_s < 2.0 and encoded.quantum_s == 2.0:
            cap = self.alone_cap
        else:
            return probs
        ja = min(probs["ja"], cap)
        return {"en": 1 - ja, "ja": ja}


def test_an_onset_slice_that_leans_to_the_other_language_in_its_window_is_confirmed_by_its_own_encode(monkeypatch):
    """English, a breath, Japanese; the onset slice gives Japanese only 0.62 in its window's
    context. Its own encode hearing Japanese (0.98) confirms the switch 1 s after the breath, cut
    there; heard alone at 0.7 it does not, nor does it with the old in-context bar of 0.8 (the
    2 s probes then find the switch later)."""
    audio = np.concatenate([silence(0.3), tone(4.0, 220), silence(0.15), tone(4.0, 440), silence(1.5)])
    outcomes = {}
    for name, alone_cap, heard in (("default", 1.0, stream_module.ONSET_HEARD), ("alone unsure", 0.7, stream_module.ONSET_HEARD),
                                   ("bar 0.8", 1.0, 0.8)):
        monkeypatch.setattr(stream_module, "ONSET_HEARD", heard)
        stream = RecognitionStream(InContextUnsure(alone_cap), LoudnessVad(), StreamOptions(
            languages=("en", "ja"), initial_language="en", padding=None))
        at, events = switch_chunk(stream, audio)
        outcomes[name] = (at, [(f.language, round(f.start_s, 2)) for f in events if isinstance(f, Result) and f.is_final])
    at, finals = outcomes["default"]
    assert [f[0] for f in finals] == ["en", "ja"] and 4.3 <= finals[1][1] <= 4.45 and 52 <= at <= 55, outcomes
    for name in ("alone unsure", "bar 0.8"):
        assert outcomes[name][0] - at >= 5 and [f[0] for f in outcomes[name][1]] == ["en", "ja"], outcomes

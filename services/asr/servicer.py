"""AsrService protocol: config validation, admission, request pumping, proto conversion.

The servicer only speaks gRPC; what to emit and when is decided by `RecognitionStream`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from typing import Iterator

import grpc
import numpy as np
from google.protobuf.duration_pb2 import Duration
from prometheus_client import Counter, Gauge, Histogram

from services.asr.admission import OverCapacity
from services.asr.language import UnsupportedLanguage, canonical_code, whisper_code
from services.asr.pacing import LivePacing
from services.asr.runtime import AsrRuntime
from services.asr.scheduler import SchedulerFull
from services.asr.stream import Event, LanguageSwitched, Result, SpeechBoundary, StreamOptions
from tandem.asr.v1 import asr_pb2, asr_pb2_grpc

log = logging.getLogger("tandem.asr")

ACTIVE_STREAMS = Gauge("asr_active_streams", "Recognition streams open now.")
FINAL_LATENCY = Histogram(
    "asr_final_latency_seconds",
    "From receipt of the audio that closed a segment to the final result being sent.",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2, 3, 5, 10),
)
SWITCHES = Counter("asr_language_switches_total", "Committed language switches.")
RESULTS = Counter("asr_results_total", "Results sent.", ("kind",))
AUDIO_SECONDS = Counter("asr_audio_seconds_total", "Audio received, in seconds.")
CATCH_UP = Counter("asr_catch_up_steps_total",
                   "Audio slices of a live client with reduced interim work: 'probe' or 'none' while it is "
                   "ahead of the server, 'rest' between windows (duty cycle).", ("work",))

_FINAL_REASONS = {
    "end_of_speech": asr_pb2.FINAL_REASON_END_OF_SPEECH,
    "language_switch": asr_pb2.FINAL_REASON_LANGUAGE_SWITCH,
    "max_duration": asr_pb2.FINAL_REASON_MAX_DURATION,
    "end_of_stream": asr_pb2.FINAL_REASON_END_OF_STREAM,
}
_MAX_CHUNK_BYTES = 16000 * 2 * 10  # 10 s of audio per message at most
_WINDOW_DONE = object()  # an interim window that ran in the background has finished


class ConfigError(ValueError):
    pass


def _seconds(d: Duration) -> float:
    return d.seconds + d.nanos / 1e9


def duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(round(seconds * 1e9)))
    return d


def stream_options(config: asr_pb2.RecognitionConfig, defaults: StreamOptions) -> StreamOptions:
    """Validate a RecognitionConfig and turn it into StreamOptions (ConfigError if bad)."""
    if config.encoding not in (asr_pb2.AUDIO_ENCODING_UNSPECIFIED, asr_pb2.AUDIO_ENCODING_LINEAR16):
        raise ConfigError("encoding must be AUDIO_ENCODING_LINEAR16 (16-bit signed little-endian PCM)")
    if config.sample_rate_hertz not in (0, 16000):
        raise ConfigError(f"sample_rate_hertz must be 16000, got {config.sample_rate_hertz}; resample on the client")
    if config.audio_channel_count not in (0, 1):
        raise ConfigError(f"audio_channel_count must be 1, got {config.audio_channel_count}; downmix on the client")
    codes = [canonical_code(c) for c in config.language_codes]
    if not 1 <= len(codes) <= 2:
        raise ConfigError(f"language_codes must hold one or two BCP-47 codes, got {len(codes)}")
    try:
        bases = [whisper_code(c) for c in codes]
    except UnsupportedLanguage as exc:
        raise ConfigError(str(exc)) from None
    if len(set(bases)) != len(bases):
        raise ConfigError(f"language_codes must be two different languages, got {codes}")
    initial = canonical_code(config.initial_language_code) if config.initial_language_code else None
    if initial is not None and initial not in codes:
        raise ConfigError(f"initial_language_code {initial!r} is not one of language_codes {codes}")
    phrases: dict[str, tuple[str, ...]] = {}
    for phrase_list in config.phrase_lists:
        code = canonical_code(phrase_list.language_code)
        if code not in codes:
            raise ConfigError(f"phrase_lists language_code {code!r} is not one of language_codes {codes}")
        items = tuple(p.strip() for p in phrase_list.phrases if p.strip())
        if len(items) > 50 or any(len(p) > 100 for p in items):
            raise ConfigError("phrase_lists: at most 50 phrases of at most 100 characters per language")
        phrases[code] = phrases.get(code, ()) + items
    opts = config.options
    changes: dict[str, object] = {"languages": tuple(codes), "initial_language": initial,
                                  "interim_results": config.interim_results, "phrases": phrases}
    if opts.beam_size:
        if not 1 <= opts.beam_size <= 10:
            raise ConfigError("options.beam_size must be between 1 and 10")
        changes["beam_size"] = opts.beam_size
    for field, name, lo, hi in (
        ("partial_interval", "partial_interval_s", 0.2, 5.0),
        ("max_segment_duration", "max_segment_s", 3.0, 28.0),
        ("min_silence_duration", "min_silence_s", 0.1, 3.0),
    ):
        if opts.HasField(field):
            value = _seconds(getattr(opts, field))
            if not lo <= value <= hi:
                raise ConfigError(f"options.{field} must be between {lo} and {hi} s, got {value}")
            changes[name] = value
    return dataclasses.replace(defaults, **changes)


def to_proto(event: Event) -> asr_pb2.StreamingRecognizeResponse:
    if isinstance(event, Result):
        return asr_pb2.StreamingRecognizeResponse(result=asr_pb2.RecognitionResult(
            segment_id=event.segment_id, revision=event.revision, is_final=event.is_final,
            stability=event.stability, start_offset=duration(event.start_s), end_offset=duration(event.end_s),
            language_code=event.language, language_confidence=event.confidence, text=event.text,
            final_reason=_FINAL_REASONS.get(event.final_reason, asr_pb2.FINAL_REASON_UNSPECIFIED),
        ))
    if isinstance(event, SpeechBoundary):
        kind = asr_pb2.SPEECH_EVENT_TYPE_SPEECH_START if event.kind == "start" else asr_pb2.SPEECH_EVENT_TYPE_SPEECH_END
        return asr_pb2.StreamingRecognizeResponse(speech_event=asr_pb2.SpeechEvent(
            type=kind, offset=duration(event.offset_s)))
    if isinstance(event, LanguageSwitched):
        return asr_pb2.StreamingRecognizeResponse(language_switch=asr_pb2.LanguageSwitch(
            from_language_code=event.from_language, to_language_code=event.to_language,
            offset=duration(event.offset_s)))
    raise TypeError(event)


class AsrServicer(asr_pb2_grpc.AsrServiceServicer):
    def __init__(self, runtime: AsrRuntime) -> None:
        self.runtime = runtime

    def StreamingRecognize(self, request_iterator, context: grpc.ServicerContext):
        first = next(request_iterator, None)
        if first is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty stream: the first message must carry config")
        if first.WhichOneof("streaming_request") != "config":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must carry config, not audio")
        try:
            options = stream_options(first.config, self.runtime.stream_defaults)
        except ConfigError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not self.runtime.ready:
            context.abort(grpc.StatusCode.UNAVAILABLE, "models are loading or the server is draining; retry")
        admission = self.runtime.admission
        try:
            slot = admission.admit()
        except OverCapacity as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        with contextlib.ExitStack() as stack:
            stack.callback(admission.release, slot)
            ACTIVE_STREAMS.inc()
            stack.callback(ACTIVE_STREAMS.dec)
            stream = self.runtime.new_stream(options, slot)
            stack.callback(stream.engine.close)
            try:
                yield from self._run(stream, request_iterator, context, options)
            except SchedulerFull as exc:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"over capacity: {exc}; retry later")

    def _run(self, stream, request_iterator, context: grpc.ServicerContext, options: StreamOptions):
        """Feed audio in slices of at most one interim interval, stepping after each slice, so
        results do not depend on how the client chunks its audio. Requests are read by a thread
        as they arrive; while a live client is ahead of the server, interim work is dropped
        (`LivePacing`) so latency stays bounded and every sample still reaches VAD and finals.
        A live client's interim windows run on a thread of their own (`background_windows`):
        VAD and finals go on meanwhile, and a final does not wait behind its stream's window."""
        pacing = LivePacing(self.runtime.pacing)
        arrivals: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_read_requests, args=(request_iterator, arrivals, pacing),
                                  name="asr-reader", daemon=True)
        reader.start()
        try:
            yield from self._process(stream, pacing, arrivals, context, options)
        finally:
            pacing.close()

    def _process(self, stream, pacing: LivePacing, arrivals: queue.Queue, context, options: StreamOptions):
        def in_background(job, window: bool = True) -> None:  # an interim window, or a final decoded ahead
            def run() -> None:
                started = time.perf_counter()
                try:
                    job()
                finally:
                    if window:
                        pacing.window_took(time.perf_counter() - started)  # a slow one: the next one probes only
                    arrivals.put(_WINDOW_DONE)  # wakes this loop to send what it left
            threading.Thread(target=run, name="asr-window" if window else "asr-draft", daemon=True).start()

        def background():
            return in_background if self.runtime.settings.background_windows and pacing.live else None

        def step():
            work = pacing.interim_work(urgent=stream.switch_suspected)
            if work != "text":
                CATCH_UP.labels("rest" if work == "none" and pacing.resting else work).inc()
            windows, started = stream.stats.windows, time.perf_counter()
            events = stream.step(work, background())
            if stream.stats.windows != windows:
                pacing.worked(time.perf_counter() - started)
            return events

        max_samples = int(self.runtime.settings.max_stream_seconds * 16000)
        slice_samples = max(1600, int(options.partial_interval_s * 16000))
        leftover = b""
        arrived = None
        while True:
            item = arrivals.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            if item is _WINDOW_DONE:
                yield from self._emit(stream.step("none", background()), arrived)  # what it left, nothing new
                continue
            request, arrived = item
            if request.WhichOneof("streaming_request") != "audio_content":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "config may only be sent once, first")
            data = request.audio_content
            if len(data) > _MAX_CHUNK_BYTES:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"audio_content of {len(data)} bytes; send at most {_MAX_CHUNK_BYTES} per message")
            data = leftover + data
            usable = len(data) - len(data) % 2
            leftover = data[usable:]
            if stream.total + usable // 2 > max_samples:
                context.abort(grpc.StatusCode.OUT_OF_RANGE,
                              f"stream longer than {self.runtime.settings.max_stream_seconds:.0f} s; open a new one")
            pcm = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
            AUDIO_SECONDS.inc(len(pcm) / 16000)
            for i in range(0, len(pcm), slice_samples):
                piece = pcm[i : i + slice_samples]
                yield from self._emit(stream.feed(piece), arrived)
                pacing.processed(len(piece) / 16000)
                yield from self._emit(step(), arrived)
        if leftover:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "audio ended on an odd byte: LINEAR16 audio has 2 bytes per sample")
        yield from self._emit(stream.finish(), arrived)

    def _emit(self, events: list[Event], arrived: float | None):
        for event in events:
            if isinstance(event, Result):
                RESULTS.labels("final" if event.is_final else "interim").inc()
                if event.is_final and arrived is not None:
                    FINAL_LATENCY.observe(time.perf_counter() - arrived)
            elif isinstance(event, LanguageSwitched):
                SWITCHES.inc()
            yield to_proto(event)


def _read_requests(request_iterator, arrivals: queue.Queue, pacing: LivePacing) -> None:
    """Reader thread: each request with its arrival time, then None (or the iterator's error)."""
    try:
        for request in request_iterator:
            pacing.received(len(request.audio_content) / 32000)
            arrivals.put((request, time.perf_counter()))
            if not pacing.wait_for_room():
                return
        arrivals.put(None)
    except BaseException as exc:  # noqa: BLE001 - a cancelled call ends the processing loop
        arrivals.put(exc)

"""SessionService protocol: one ASR stream per session, finals routed to translation.

Responses of a session come from one queue fed by the ASR reader and by translation
callbacks, so a final is always sent before its translation, and a failed translation is
reported on its segment while the session goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import uuid

import grpc
from google.rpc import code_pb2, status_pb2
from prometheus_client import Counter, Gauge, Histogram

from services.session.routing import LeastLoaded, SegmentIds, TranscriptStore, translation_target
from tandem.asr.v1 import asr_pb2, asr_pb2_grpc
from tandem.session.v1 import session_pb2, session_pb2_grpc
from tandem.translate.v1 import translate_pb2, translate_pb2_grpc

log = logging.getLogger("tandem.session")

ACTIVE = Gauge("session_active_sessions", "Sessions open now.")
TRANSLATION_SECONDS = Histogram(
    "session_translation_seconds", "From a final segment's arrival to its translation.",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5),
)
TRANSLATION_FAILURES = Counter("session_translation_failures_total", "Segments whose translation failed.", ("code",))

# ASR errors the caller should see as they are; anything else is UNAVAILABLE or INTERNAL.
_PASS_THROUGH = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
}


@dataclasses.dataclass
class Transcript:
    session_id: str
    state: int = session_pb2.SESSION_STATE_ACTIVE
    segments: list = dataclasses.field(default_factory=list)
    translations: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class SessionSettings:
    """Read from TANDEM_SESSION_* (see README, Configuration)."""

    asr_target: str = "127.0.0.1:50051"  # one or more ASR workers, comma-separated (least-loaded routing)
    translate_target: str = "127.0.0.1:50052"
    max_sessions: int = 64
    translate_timeout_s: float = 10.0
    transcripts_kept: int = 1000
    startup_timeout_s: float = 600.0


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, settings: SessionSettings, asr: list[asr_pb2_grpc.AsrServiceStub],
                 translate: translate_pb2_grpc.TranslateServiceStub) -> None:
        self.settings = settings
        self.asr = LeastLoaded(asr)
        self.translate = translate
        self.transcripts: TranscriptStore[Transcript] = TranscriptStore(settings.transcripts_kept)
        self.ready = False
        self._open = 0
        self._lock = threading.Lock()

    # ---- StreamSession -----------------------------------------------------------------
    def StreamSession(self, request_iterator, context: grpc.ServicerContext):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("streaming_request") != "config":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must carry config")
        config = first.config
        if not config.HasField("recognition"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "config.recognition is required")
        pair = tuple(config.recognition.language_codes)
        translate = config.translation.enabled
        if translate and len(pair) != 2:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "translation needs two language_codes (finals are translated into the other one)")
        if not self.ready:
            context.abort(grpc.StatusCode.UNAVAILABLE, "speech recognition is not ready yet; retry")
        with self._lock:
            if self._open >= self.settings.max_sessions:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"over capacity: {self.settings.max_sessions} sessions are open; retry later")
            self._open += 1
        ACTIVE.inc()
        try:
            yield from self._session(request_iterator, context, config, pair, translate)
        finally:
            ACTIVE.dec()
            with self._lock:
                self._open -= 1

    def _session(self, request_iterator, context, config, pair, translate):
        session_id = uuid.uuid4().hex
        transcript = Transcript(session_id)
        self.transcripts.put(session_id, transcript)
        out: queue.Queue = queue.Queue()
        pending = _Pending()

        def upstream():
            yield asr_pb2.StreamingRecognizeRequest(config=config.recognition)
            for request in request_iterator:
                if request.WhichOneof("streaming_request") != "audio_content":
                    out.put(("error", grpc.StatusCode.INVALID_ARGUMENT, "config may only be sent once, first"))
                    return
                yield asr_pb2.StreamingRecognizeRequest(audio_content=request.audio_content)

        worker, asr = self.asr.acquire()
        call = asr.StreamingRecognize(upstream())
        context.add_callback(call.cancel)
        context.add_callback(lambda: self.asr.release(worker))
        ids = SegmentIds()

        def read_asr() -> None:
            try:
                for response in call:
                    kind = response.WhichOneof("response")
                    if kind == "result":
                        segment = _segment(response.result, ids)
                        if segment.is_final:
                            transcript.segments.append(segment)
                        out.put(("event", session_pb2.StreamSessionResponse(session_id=session_id, segment=segment)))
                        target = translation_target(segment.language_code, pair) if translate else None
                        if segment.is_final and segment.text and target:
                            self._translate(segment, target, out, pending, transcript)
                    elif kind == "speech_event":
                        out.put(("event", session_pb2.StreamSessionResponse(
                            session_id=session_id, speech_event=response.speech_event)))
                    elif kind == "language_switch":
                        out.put(("event", session_pb2.StreamSessionResponse(
                            session_id=session_id, language_switch=response.language_switch)))
                out.put(("asr_done",))
            except grpc.RpcError as err:
                out.put(("asr_error", err.code(), err.details()))

        yield session_pb2.StreamSessionResponse(session_id=session_id, session_started=session_pb2.SessionStarted(
            session_id=session_id, language_codes=list(pair), translation_enabled=translate))
        threading.Thread(target=read_asr, daemon=True, name=f"session-{session_id[:8]}").start()
        asr_done = False
        while True:
            if asr_done and pending.count == 0 and out.empty():
                break
            item = out.get()
            if item[0] == "event":
                yield item[1]
            elif item[0] == "asr_done":
                asr_done = True  # keep draining until in-flight translations (bounded by their timeout) are in
            elif item[0] == "translation_done":
                continue
            elif item[0] in ("asr_error", "error"):
                code, details = item[1], item[2]
                transcript.state = session_pb2.SESSION_STATE_FAILED
                call.cancel()
                if item[0] == "asr_error" and code not in _PASS_THROUGH:
                    log.error("asr stream failed: %s %s", code, details)
                    context.abort(grpc.StatusCode.INTERNAL, "speech recognition failed")
                if code == grpc.StatusCode.CANCELLED and not context.is_active():
                    return
                context.abort(code, details or "speech recognition failed")
        transcript.state = session_pb2.SESSION_STATE_COMPLETED

    def _translate(self, segment, target, out, pending, transcript) -> None:
        started = time.perf_counter()
        request = translate_pb2.TranslateRequest(
            texts=[segment.text], source_language_code=segment.language_code, target_language_code=target)
        pending.add()
        future = self.translate.Translate.future(request, timeout=self.settings.translate_timeout_s)

        def done(f) -> None:
            elapsed = time.perf_counter() - started
            translation = session_pb2.Translation(
                segment_id=segment.segment_id, source_language_code=segment.language_code,
                target_language_code=target)
            translation.latency.FromNanoseconds(int(elapsed * 1e9))
            try:
                translation.text = f.result().translations[0]
                TRANSLATION_SECONDS.observe(elapsed)
            except grpc.RpcError as err:
                code = err.code()
                TRANSLATION_FAILURES.labels(code.name).inc()
                translation.error.CopyFrom(status_pb2.Status(
                    code=getattr(code_pb2, code.name, code_pb2.UNKNOWN), message=err.details() or code.name))
            except Exception as exc:  # noqa: BLE001 - reported on the segment, session goes on
                log.exception("translation of segment %d failed", segment.segment_id)
                TRANSLATION_FAILURES.labels("INTERNAL").inc()
                translation.error.CopyFrom(status_pb2.Status(code=code_pb2.INTERNAL, message=f"translation failed: {exc}"))
            transcript.translations.append(translation)
            out.put(("event", session_pb2.StreamSessionResponse(session_id=transcript.session_id,
                                                                translation=translation)))
            pending.done()
            out.put(("translation_done",))

        future.add_done_callback(done)

    # ---- GetTranscript -----------------------------------------------------------------
    def GetTranscript(self, request, context: grpc.ServicerContext):
        if not request.session_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "session_id is required")
        transcript = self.transcripts.get(request.session_id)
        if transcript is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no session {request.session_id!r} (unknown or expired)")
        return session_pb2.GetTranscriptResponse(
            session_id=transcript.session_id, state=transcript.state,
            segments=list(transcript.segments), translations=list(transcript.translations))


class _Pending:
    """Counts translations in flight."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.count += 1

    def done(self) -> None:
        with self._lock:
            self.count -= 1


def _segment(result: asr_pb2.RecognitionResult, ids: SegmentIds) -> session_pb2.Segment:
    return session_pb2.Segment(
        segment_id=ids.session_id_for(result.segment_id), revision=result.revision, is_final=result.is_final,
        stability=result.stability, start_offset=result.start_offset, end_offset=result.end_offset,
        language_code=result.language_code, language_confidence=result.language_confidence, text=result.text,
        words=list(result.words), final_reason=result.final_reason,
    )

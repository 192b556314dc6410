"""A Python client for Tandem's SessionService: stream audio, receive captions and translations.

    client = TandemClient("127.0.0.1:50050")
    client.wait_for_ready(timeout=60)
    for response in client.stream_session(chunk_pcm(read_wav("talk.wav")), ["zh", "en"]):
        ...

gRPC failures surface as `TandemError` with the status code and a readable message.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Iterator, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import clients  # noqa: F401 - puts gen/ on sys.path when needed
from clients.audio import SAMPLE_RATE, paced
from tandem.asr.v1 import asr_pb2
from tandem.session.v1 import session_pb2, session_pb2_grpc

SESSION_SERVICE = "tandem.session.v1.SessionService"


class TandemError(RuntimeError):
    """A failed RPC: `code` is the grpc.StatusCode, `details` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str, target: str = "", what: str = "") -> None:
        self.code = code
        self.details = details
        where = f"{what} at {target}" if what and target else (what or target)
        super().__init__(f"{where + ': ' if where else ''}{code.name}: {details or '(no details)'}")

    @classmethod
    def from_rpc_error(cls, exc: grpc.RpcError, target: str = "", what: str = "") -> "TandemError":
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = exc.details() if hasattr(exc, "details") else str(exc)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "", target, what)


def session_config(languages: Sequence[str], translate: bool = True, interim_results: bool = True,
                   initial_language: str = "", phrases: dict[str, Sequence[str]] | None = None,
                   ) -> session_pb2.SessionConfig:
    """A SessionConfig; `phrases` maps a language code to phrases that bias its decoding."""
    return session_pb2.SessionConfig(
        recognition=asr_pb2.RecognitionConfig(
            encoding=asr_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=SAMPLE_RATE,
            audio_channel_count=1,
            language_codes=list(languages),
            initial_language_code=initial_language,
            interim_results=interim_results,
            phrase_lists=[asr_pb2.PhraseList(language_code=code, phrases=list(items))
                          for code, items in (phrases or {}).items()],
        ),
        translation=session_pb2.TranslationConfig(enabled=translate),
    )


def session_requests(config: session_pb2.SessionConfig, pcm_chunks: Iterable[bytes], realtime: bool = True,
                     stop: threading.Event | None = None) -> Iterator[session_pb2.StreamSessionRequest]:
    """The request stream: config first, then the audio chunks (paced in real time or not)."""
    yield session_pb2.StreamSessionRequest(config=config)
    for chunk in paced(pcm_chunks, realtime=realtime):
        if stop is not None and stop.is_set():
            return
        yield session_pb2.StreamSessionRequest(audio_content=bytes(chunk))


class TandemClient:
    """SessionService client over one insecure channel (use as a context manager or close())."""

    def __init__(self, target: str = "127.0.0.1:50050", channel: grpc.Channel | None = None) -> None:
        self.target = target
        self.channel = channel or grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)]
        )
        self._session = session_pb2_grpc.SessionServiceStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> "TandemClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    # -- health -------------------------------------------------------------------------
    def health(self, service: str = "", timeout: float = 5.0) -> str:
        """The health status name (SERVING, NOT_SERVING, ...) of `service` ("" = the server)."""
        try:
            reply = self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            raise TandemError.from_rpc_error(exc, self.target, "health check") from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def wait_for_ready(self, timeout: float = 60.0, service: str = "", poll: float = 0.5,
                       on_wait: Callable[[str, float], None] | None = None) -> None:
        """Block until the server reports SERVING; TimeoutError with the last state otherwise.

        `on_wait(state, elapsed_s)` is called after each unsuccessful poll (for progress).
        """
        start = time.monotonic()
        while True:
            try:
                state = self.health(service, timeout=max(0.5, min(5.0, timeout)))
            except TandemError as exc:
                if exc.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                state = f"unreachable ({exc.code.name})"
            if state == "SERVING":
                return
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                raise TimeoutError(f"{self.target} not SERVING after {timeout:g} s (last: {state})")
            if on_wait:
                on_wait(state, elapsed)
            time.sleep(poll)

    # -- sessions -----------------------------------------------------------------------
    def stream_session(self, pcm_chunks: Iterable[bytes], languages: Sequence[str], translate: bool = True,
                       realtime: bool = True, interim_results: bool = True, initial_language: str = "",
                       timeout: float | None = None) -> Iterator[session_pb2.StreamSessionResponse]:
        """Stream 16 kHz mono int16 chunks; yield every response. Raises TandemError on failure.

        Audio is sent in real time (each chunk once it would have been captured live) or,
        with realtime=False, as fast as flow control allows. Stopping the iteration early
        cancels the call.
        """
        stop = threading.Event()
        config = session_config(languages, translate, interim_results, initial_language)
        call = self._session.StreamSession(session_requests(config, pcm_chunks, realtime, stop), timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise TandemError.from_rpc_error(exc, self.target, "session") from None
        finally:
            stop.set()
            call.cancel()

    def get_transcript(self, session_id: str, timeout: float = 10.0) -> session_pb2.GetTranscriptResponse:
        try:
            return self._session.GetTranscript(session_pb2.GetTranscriptRequest(session_id=session_id),
                                               timeout=timeout)
        except grpc.RpcError as exc:
            raise TandemError.from_rpc_error(exc, self.target, "get transcript") from None

"""gRPC protocol of tandem.translate.v1.TranslateService on top of `engine.TranslateEngine`.

Engine errors map onto status codes (InvalidArgument -> INVALID_ARGUMENT, NotFound ->
NOT_FOUND, Unavailable -> UNAVAILABLE). In StreamingTranslate a failed item is answered
with its `error` set and the stream goes on; answers are sent as items complete.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable, Iterator

import grpc
from google.rpc import code_pb2, status_pb2
from tandem.translate.v1 import translate_pb2, translate_pb2_grpc

from services.translate.engine import (
    InvalidArgument,
    NotFound,
    TranslateEngine,
    TranslateError,
    Unavailable,
)

log = logging.getLogger("tandem.translate.rpc")

_GRPC_CODES = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}
_RPC_CODES = {InvalidArgument: code_pb2.INVALID_ARGUMENT, NotFound: code_pb2.NOT_FOUND, Unavailable: code_pb2.UNAVAILABLE}

# observe(source_code, target_code, outcome, seconds); outcome is "ok" or a status name.
Observer = Callable[[str, str, str, float], None]


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    return _GRPC_CODES.get(type(exc), grpc.StatusCode.INTERNAL).name.lower()


def _status(exc: BaseException) -> status_pb2.Status:
    if isinstance(exc, TranslateError):
        return status_pb2.Status(code=_RPC_CODES.get(type(exc), code_pb2.INTERNAL), message=str(exc))
    return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


def _timeout(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()  # huge (not None) when the client set no deadline
    return None if remaining is None or remaining > 3600 else remaining


class TranslateServiceServicer(translate_pb2_grpc.TranslateServiceServicer):
    def __init__(self, engine: TranslateEngine, observe: Observer = lambda *args: None) -> None:
        self.engine = engine
        self.observe = observe

    def Translate(self, request: translate_pb2.TranslateRequest, context: grpc.ServicerContext):
        start = time.perf_counter()
        try:
            direction = self.engine.resolve(request.source_language_code, request.target_language_code)
            translations = self.engine.translate(direction, list(request.texts), timeout=_timeout(context))
        except TimeoutError:
            self.observe(request.source_language_code, request.target_language_code, "deadline_exceeded", time.perf_counter() - start)
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "translation did not finish before the deadline")
        except TranslateError as exc:
            self.observe(request.source_language_code, request.target_language_code, _outcome(exc), time.perf_counter() - start)
            context.abort(_GRPC_CODES[type(exc)], str(exc))
        except Exception as exc:
            self.observe(request.source_language_code, request.target_language_code, _outcome(exc), time.perf_counter() - start)
            raise  # the interceptor turns it into INTERNAL
        self.observe(request.source_language_code, request.target_language_code, "ok", time.perf_counter() - start)
        return translate_pb2.TranslateResponse(translations=translations, model=direction.model_name)

    def StreamingTranslate(self, request_iterator, context: grpc.ServicerContext) -> Iterator[translate_pb2.StreamingTranslateResponse]:
        out: queue.Queue = queue.Queue()
        done = object()
        state = {"pending": 0, "input_done": False}
        lock = threading.Lock()

        def finish_one(response: translate_pb2.StreamingTranslateResponse) -> None:
            out.put(response)
            with lock:
                state["pending"] -= 1
                last = state["input_done"] and state["pending"] == 0
            if last:
                out.put(done)

        def answer(req: translate_pb2.StreamingTranslateRequest, start: float, model: str, future: Future | None, exc: BaseException | None) -> None:
            text = ""
            if future is not None:
                try:
                    text = future.result()
                except Exception as err:  # noqa: BLE001 - reported in this item's error
                    exc = err
            if exc is not None and not isinstance(exc, TranslateError):
                log.error("segment %d failed", req.segment_id, exc_info=exc)
            seconds = time.perf_counter() - start
            self.observe(req.source_language_code, req.target_language_code, _outcome(exc), seconds)
            response = translate_pb2.StreamingTranslateResponse(
                segment_id=req.segment_id,
                text=text if exc is None else "",
                source_language_code=req.source_language_code,
                target_language_code=req.target_language_code,
                model=model,
            )
            response.latency.FromNanoseconds(int(seconds * 1e9))
            if exc is not None:
                response.error.CopyFrom(_status(exc))
            finish_one(response)

        def read() -> None:
            try:
                for req in request_iterator:
                    start = time.perf_counter()
                    with lock:
                        state["pending"] += 1
                    try:
                        direction = self.engine.resolve(req.source_language_code, req.target_language_code)
                        self.engine.check_texts([req.text])
                        future = self.engine.submit(direction, req.text)
                    except Exception as exc:  # noqa: BLE001 - this item fails, the stream goes on
                        answer(req, start, "", None, exc)
                        continue
                    future.add_done_callback(
                        lambda f, req=req, start=start, model=direction.model_name: answer(req, start, model, f, None)
                    )
            except Exception:  # noqa: BLE001 - client went away / cancelled
                log.debug("request stream ended with an error", exc_info=True)
            finally:
                with lock:
                    state["input_done"] = True
                    last = state["pending"] == 0
                if last:
                    out.put(done)

        threading.Thread(target=read, name="translate-stream-reader", daemon=True).start()
        while True:
            try:
                item = out.get(timeout=0.5)
            except queue.Empty:
                if not context.is_active():
                    return
                continue
            if item is done:
                return
            yield item

    def ListLanguagePairs(self, request: translate_pb2.ListLanguagePairsRequest, context: grpc.ServicerContext):
        return translate_pb2.ListLanguagePairsResponse(
            language_pairs=[
                translate_pb2.LanguagePair(
                    source_language_code=route.pair.source,
                    target_language_code=route.pair.target,
                    model=route.manifest.name,
                )
                for route in self.engine.pairs()
            ]
        )


def register(server: grpc.Server, servicer: TranslateServiceServicer) -> None:
    translate_pb2_grpc.add_TranslateServiceServicer_to_server(servicer, server)

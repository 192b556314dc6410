"""Server interceptors: Prometheus RPC metrics and the error boundary.

- `grpc_server_started_total`, `grpc_server_handled_total{grpc_code}` and
  `grpc_server_handling_seconds`, recorded for every RPC type; for streaming responses at
  the end of the stream.
- Any exception that is not a deliberate `context.abort` becomes INTERNAL with a generic
  message (the details go to the log, never to the caller).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator

import grpc
from prometheus_client import Counter, Histogram

log = logging.getLogger("tandem.rpc")

_LABELS = ("grpc_service", "grpc_method", "grpc_type")
STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", _LABELS)
HANDLED = Counter("grpc_server_handled_total", "RPCs completed on the server.", (*_LABELS, "grpc_code"))
HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Time from RPC start to completion (stream end for streaming RPCs).",
    _LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)


def _code_of(context: grpc.ServicerContext) -> grpc.StatusCode:
    code = context.code()
    if code is None:
        return grpc.StatusCode.OK
    if isinstance(code, grpc.StatusCode):
        return code
    for candidate in grpc.StatusCode:  # an int code set by some grpc versions
        if candidate.value[0] == code:
            return candidate
    return grpc.StatusCode.UNKNOWN


def _internal(context: grpc.ServicerContext, method: str, exc: BaseException) -> None:
    if context.code() not in (None, grpc.StatusCode.OK):
        return  # a deliberate abort(); let it through
    log.exception("unhandled error in %s", method, exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, "internal error")


class ServerInterceptor(grpc.ServerInterceptor):
    """Metrics + error boundary around every handler of the server."""

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        full = handler_call_details.method  # "/pkg.Service/Method"
        service, _, method = full.lstrip("/").rpartition("/")
        if handler.request_streaming and handler.response_streaming:
            kind, inner, factory = "bidi_stream", handler.stream_stream, grpc.stream_stream_rpc_method_handler
        elif handler.request_streaming:
            kind, inner, factory = "client_stream", handler.stream_unary, grpc.stream_unary_rpc_method_handler
        elif handler.response_streaming:
            kind, inner, factory = "server_stream", handler.unary_stream, grpc.unary_stream_rpc_method_handler
        else:
            kind, inner, factory = "unary", handler.unary_unary, grpc.unary_unary_rpc_method_handler
        labels = (service, method, kind)

        def finish(context: grpc.ServicerContext, start: float) -> None:
            HANDLED.labels(*labels, _code_of(context).name).inc()
            HANDLING.labels(*labels).observe(time.perf_counter() - start)

        if handler.response_streaming:

            def stream_behavior(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                STARTED.labels(*labels).inc()
                start = time.perf_counter()
                try:
                    yield from inner(request, context)
                except Exception as exc:  # noqa: BLE001 - the error boundary
                    _internal(context, full, exc)
                    raise
                finally:
                    finish(context, start)

            behavior = stream_behavior
        else:

            def unary_behavior(request: Any, context: grpc.ServicerContext) -> Any:
                STARTED.labels(*labels).inc()
                start = time.perf_counter()
                try:
                    return inner(request, context)
                except Exception as exc:  # noqa: BLE001 - the error boundary
                    _internal(context, full, exc)
                    raise
                finally:
                    finish(context, start)

            behavior = unary_behavior
        return factory(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

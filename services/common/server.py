"""One way to run a Tandem service: gRPC server wiring shared by asr, translate and session.

A service hands over a `ServiceSpec` (how to register its servicer, how to load/warm its
models, how to close). `start()` binds the port (127.0.0.1 and port 0 by default), adds
health checking (NOT_SERVING until the models are loaded and warm), reflection, the
interceptors and an optional Prometheus endpoint. `run_forever()` adds graceful drain on
SIGTERM/SIGINT: health goes NOT_SERVING, new RPCs are refused, open streams get
`grace_seconds` to finish.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from concurrent import futures
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from services.common.interceptors import ServerInterceptor
from services.common.settings import ServerSettings

log = logging.getLogger("tandem.server")


@dataclasses.dataclass
class ServiceSpec:
    """What a service contributes to the shared server."""

    name: str  # "asr", "translate", "session"
    service_names: tuple[str, ...]  # fully qualified, for health and reflection
    register: Callable[[grpc.Server], None]
    warm_up: Callable[[], None] = lambda: None  # load models; may take long
    close: Callable[[], None] = lambda: None
    drain: Callable[[], None] = lambda: None  # called when draining starts


class RunningServer:
    """A started server: its port, health state, and stop()."""

    def __init__(self, spec: ServiceSpec, settings: ServerSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.health = health.HealthServicer()
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix=f"{spec.name}-rpc"),
            interceptors=(ServerInterceptor(),),
            options=[
                ("grpc.max_receive_message_length", 8 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        spec.register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*spec.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self._set_serving(False)
        self.port = self.server.add_insecure_port(f"{_host_for_bind(settings.host)}:{settings.port}")
        if self.port == 0:
            raise RuntimeError(f"{spec.name}: could not bind {settings.host}:{settings.port}")
        self.metrics_port: int | None = None
        if settings.metrics_port >= 0:
            httpd, _thread = start_http_server(settings.metrics_port, addr=settings.host)
            self.metrics_port = httpd.server_port
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        host = self.settings.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def _set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.spec.service_names):
            self.health.set(name, status)

    def _warm(self) -> None:
        try:
            self.spec.warm_up()
        except BaseException as exc:  # noqa: BLE001 - reported through health and .failed
            log.exception("%s: warm-up failed", self.spec.name)
            self.failed = exc
            self.ready.set()  # wake wait_ready(), which re-raises the failure
            return
        if not self._stopped.is_set():
            self._set_serving(True)
            log.info("%s: serving on %s", self.spec.name, self.address)
        self.ready.set()

    def start(self, warm_in_background: bool = True) -> "RunningServer":
        self.server.start()
        if warm_in_background:
            threading.Thread(target=self._warm, name=f"{self.spec.name}-warmup", daemon=True).start()
        else:
            self._warm()
            if self.failed:
                raise self.failed
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        if not self.ready.wait(timeout):
            raise TimeoutError(f"{self.spec.name} not ready after {timeout} s")
        if self.failed:
            raise self.failed

    def stop(self, grace: float | None = None) -> None:
        """Drain: NOT_SERVING, refuse new RPCs, give open ones `grace` seconds, close models."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._set_serving(False)
        self.health.enter_graceful_shutdown()
        self.spec.drain()
        grace = self.settings.grace_seconds if grace is None else grace
        self.server.stop(grace).wait()
        self.spec.close()
        log.info("%s: stopped", self.spec.name)


def _host_for_bind(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def start(spec: ServiceSpec, settings: ServerSettings, warm_in_background: bool = True) -> RunningServer:
    return RunningServer(spec, settings).start(warm_in_background=warm_in_background)


def run_forever(spec: ServiceSpec, settings: ServerSettings) -> int:
    """Start, print the bound address, block until SIGTERM/SIGINT, drain, exit 0."""
    running = start(spec, settings)
    print(f"tandem-{spec.name} listening on {running.address}", flush=True)
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s: signal %d, draining", spec.name, signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not done.wait(0.5):
        if running.failed:
            running.stop(0)
            return 1
    running.stop()
    return 0

"""Wiring of the session service for the shared server (`python -m services session`).

Health turns SERVING once the ASR service it dials reports SERVING. The translation
service is optional at start: while it is away, finals carry an UNAVAILABLE translation error.
"""

from __future__ import annotations

import logging
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.server import ServiceSpec
from services.common.settings import from_env
from services.session.servicer import SessionServicer, SessionSettings
from tandem.asr.v1 import asr_pb2_grpc
from tandem.session.v1 import session_pb2, session_pb2_grpc
from tandem.translate.v1 import translate_pb2_grpc

SERVICE_NAME = session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
log = logging.getLogger("tandem.session")


def wait_serving(channel: grpc.Channel, timeout: float) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"upstream not SERVING after {timeout:.0f} s")
        time.sleep(0.5)


def build_spec(settings: SessionSettings | None = None) -> ServiceSpec:
    settings = settings or from_env(SessionSettings, "TANDEM_SESSION_")
    asr_channels = [grpc.insecure_channel(t.strip()) for t in settings.asr_target.split(",") if t.strip()]
    translate_channel = grpc.insecure_channel(settings.translate_target)
    servicer = SessionServicer(
        settings, [asr_pb2_grpc.AsrServiceStub(c) for c in asr_channels],
        translate_pb2_grpc.TranslateServiceStub(translate_channel))

    def warm_up() -> None:
        for channel in asr_channels:
            wait_serving(channel, settings.startup_timeout_s)
        servicer.ready = True

    def drain() -> None:
        servicer.ready = False

    def close() -> None:
        for channel in asr_channels:
            channel.close()
        translate_channel.close()

    spec = ServiceSpec(
        name="session",
        service_names=(SERVICE_NAME,),
        register=lambda server: session_pb2_grpc.add_SessionServiceServicer_to_server(servicer, server),
        warm_up=warm_up, drain=drain, close=close,
    )
    spec.servicer = servicer  # type: ignore[attr-defined]  # for tests
    return spec

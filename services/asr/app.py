"""Wiring of the ASR service for the shared server (`python -m services asr`)."""

from __future__ import annotations

from services.asr.runtime import AsrRuntime, AsrSettings
from services.asr.servicer import AsrServicer
from services.common.server import ServiceSpec
from services.common.settings import from_env
from tandem.asr.v1 import asr_pb2, asr_pb2_grpc

SERVICE_NAME = asr_pb2.DESCRIPTOR.services_by_name["AsrService"].full_name


def build_spec(settings: AsrSettings | None = None) -> ServiceSpec:
    runtime = AsrRuntime(settings or from_env(AsrSettings, "TANDEM_ASR_"))

    def drain() -> None:
        runtime.ready = False  # new streams get UNAVAILABLE; open ones finish

    spec = ServiceSpec(
        name="asr",
        service_names=(SERVICE_NAME,),
        register=lambda server: asr_pb2_grpc.add_AsrServiceServicer_to_server(AsrServicer(runtime), server),
        warm_up=runtime.load,
        drain=drain,
        close=runtime.close,
    )
    spec.runtime = runtime  # type: ignore[attr-defined]  # for tests and benchmarks
    return spec

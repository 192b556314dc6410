"""Wiring of the translate service: settings, warm-up, Prometheus metrics, `build_spec()`.

Settings come from `TANDEM_TRANSLATE_*` (e.g. `TANDEM_TRANSLATE_BEAM_SIZE=2`) and the shared
`TANDEM_MODEL_DIR`; models live under `<model_dir>/translate/*/tandem.json`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prometheus_client import Counter, Histogram

from services.common.server import ServiceSpec
from services.common.settings import default_model_dir, from_env
from services.translate import engine as eng
from services.translate.servicer import TranslateServiceServicer, register

SERVICE_NAME = "tandem.translate.v1.TranslateService"

TRANSLATE_SECONDS = Histogram(
    "translate_seconds",
    "Time to translate one item or Translate call, queueing included.",
    ("source", "target"),
    buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10),
)
TRANSLATE_BATCH_SIZE = Histogram(
    "translate_batch_size", "Items per translate_batch model call.", buckets=(1, 2, 4, 8, 16, 32, 64)
)
TRANSLATE_REQUESTS = Counter(
    "translate_requests_total", "Translate calls and streamed items by outcome.", ("source", "target", "outcome")
)


@dataclasses.dataclass(frozen=True)
class TranslateSettings:
    """`TANDEM_TRANSLATE_<FIELD>` environment variables."""

    model_dir: Path = dataclasses.field(default_factory=default_model_dir)
    device: str = "cpu"
    compute_type: str = "int8"
    # One thread: on 2 cores shared with the ASR, a translation on both cores held back the other
    # streams' Whisper calls in bursts (`bench.load` N = 6, four alternating rounds, 2-core Xeon:
    # final p95 1.45 / 1.43 / 1.53 / 1.44 s against 1.57 / 1.57 / 1.62 / 1.45 s with 2; README,
    # Benchmarks). A machine whose translation runs apart from the ASR may want more.
    intra_threads: int = 1
    beam_size: int = 2
    max_decoding_length: int = 256
    max_batch_size: int = 16
    max_batch_wait_ms: float = 5.0
    max_texts: int = 64
    max_text_chars: int = 2000


def _label(code: str) -> str:
    """Metric label for a client's code: the model language, or "invalid" (bounded cardinality)."""
    try:
        return eng.normalize_language(code)
    except eng.InvalidArgument:
        return "invalid"


def observe(source: str, target: str, outcome: str, seconds: float) -> None:
    source, target = _label(source), _label(target)
    TRANSLATE_REQUESTS.labels(source, target, outcome).inc()
    if outcome == "ok":
        TRANSLATE_SECONDS.labels(source, target).observe(seconds)


def build_engine(settings: TranslateSettings) -> eng.TranslateEngine:
    return eng.TranslateEngine(
        eng.ModelRegistry.scan(settings.model_dir),
        model_options=eng.ModelOptions(
            device=settings.device,
            compute_type=settings.compute_type,
            intra_threads=settings.intra_threads,
            beam_size=settings.beam_size,
            max_decoding_length=settings.max_decoding_length,
        ),
        batch_options=eng.BatchOptions(settings.max_batch_size, settings.max_batch_wait_ms),
        limits=eng.Limits(settings.max_texts, settings.max_text_chars),
        on_batch=TRANSLATE_BATCH_SIZE.observe,
    )


def build_spec(settings: TranslateSettings | None = None) -> ServiceSpec:
    settings = settings or from_env(TranslateSettings, "TANDEM_TRANSLATE_")
    engine = build_engine(settings)
    servicer = TranslateServiceServicer(engine, observe=observe)
    return ServiceSpec(
        name="translate",
        service_names=(SERVICE_NAME,),
        register=lambda server: register(server, servicer),
        warm_up=engine.load,
        close=engine.close,
    )

"""Server settings read from the environment with a per-service prefix.

`TANDEM_ASR_PORT=50051`, `TANDEM_SESSION_ASR_TARGET=127.0.0.1:50051`, ... Every field of a
settings dataclass `F` is read from `<PREFIX>F` (upper case); unset fields keep defaults.
`TANDEM_MODEL_DIR` is shared by all services.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def default_model_dir() -> Path:
    return Path(os.environ.get("TANDEM_MODEL_DIR", Path(__file__).resolve().parents[2] / "models"))


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Transport settings every service has."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    metrics_port: int = -1  # -1 = no Prometheus HTTP endpoint; 0 = a free port
    max_workers: int = 64  # threads for concurrent RPCs (each bidi stream holds one)
    grace_seconds: float = 10.0  # drain time on SIGTERM


def _coerce(value: str, target: Any) -> Any:
    if target is bool or target == "bool":
        return value.strip().lower() in ("1", "true", "yes", "on")
    if target is int or target == "int":
        return int(value)
    if target is float or target == "float":
        return float(value)
    if target in (Path, "Path"):
        return Path(value)
    if target in ("tuple[str, ...]",):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return value


def from_env(cls: type[T], prefix: str, environ: dict[str, str] | None = None, **overrides: Any) -> T:
    """Build `cls` from `<prefix><FIELD>` variables; explicit overrides win."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = f"{prefix}{field.name}".upper()
        if key in env:
            try:
                values[field.name] = _coerce(env[key], field.type)
            except ValueError as exc:
                raise ValueError(f"{key}={env[key]!r}: {exc}") from None
    values.update(overrides)
    return cls(**values)

"""Shared fixtures: the model directory, ../shared/eval, and a real three-service stack.

Tests that need models or the shared eval set skip with a reason outside CI and fail in CI
(CI=true), where both must be present.
"""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path

import grpc
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = Path(os.environ.get("TANDEM_MODEL_DIR", ROOT / "models"))
    if not (path / "whisper-base-ct2" / "model.bin").exists():
        _missing(f"models in {path} (run `make models`)")
    return path


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    path = Path(os.environ.get("TANDEM_EVAL_DIR", ROOT.parent / "shared" / "eval"))
    if not (path / "streams.jsonl").exists():
        _missing(f"the shared eval set at {path}")
    return path


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Stack:
    """asr, translate and session servers on 127.0.0.1 free ports, in this process."""

    def __init__(self, model_dir: Path) -> None:
        from services.asr.app import build_spec as asr_spec
        from services.asr.runtime import AsrSettings
        from services.common import server
        from services.common.settings import ServerSettings
        from services.session.app import build_spec as session_spec
        from services.session.servicer import SessionSettings
        from services.translate.app import TranslateSettings
        from services.translate.app import build_spec as translate_spec

        local = ServerSettings(host="127.0.0.1", port=0, grace_seconds=2.0)
        # TANDEM_ASR_ENGINE=torch runs the same suite on the openai-whisper engine (make test does both).
        engine = os.environ.get("TANDEM_ASR_ENGINE", "ct2")
        self.asr = server.start(asr_spec(AsrSettings(model_dir=model_dir, engine=engine)), local)
        self.translate = server.start(translate_spec(TranslateSettings(model_dir=model_dir)), local)
        self.asr.wait_ready(300)
        self.translate.wait_ready(300)
        self.session = server.start(session_spec(SessionSettings(
            asr_target=self.asr.address, translate_target=self.translate.address)), local)
        self.session.wait_ready(60)
        self.channel = grpc.insecure_channel(self.session.address)

    def stop(self) -> None:
        self.channel.close()
        for running in (self.session, self.asr, self.translate):
            running.stop(1.0)


@pytest.fixture(scope="session")
def stack(model_dir: Path):
    s = Stack(model_dir)
    yield s
    s.stop()

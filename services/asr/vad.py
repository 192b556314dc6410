"""Voice activity: Silero VAD v6 (ONNX) probabilities and a pure speech/silence segmenter.

`SileroVad` turns 16 kHz audio into one speech probability per 512-sample frame (32 ms),
carrying the model state across calls so it can run on a live stream. `SpeechSegmenter`
turns those probabilities into speech-start / speech-end decisions (threshold with
hysteresis, minimum silence); it knows nothing about models and is unit-tested on fakes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

FRAME_SAMPLES = 512  # Silero's window at 16 kHz
_CONTEXT = 64


class SileroVad:
    """One ONNX session shared by all streams; per-stream state lives in `SileroVadState`."""

    def __init__(self, path: Path) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"], sess_options=opts)

    def new_state(self) -> "SileroVadState":
        return SileroVadState(self)

    def _run(self, frames: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probs, h, c = self._session.run(None, {"input": frames, "h": h, "c": c})
        return np.asarray(probs, dtype=np.float32).reshape(-1), h, c


class SileroVadState:
    """Streaming state: leftover samples, 64-sample context and the LSTM state."""

    def __init__(self, vad: SileroVad) -> None:
        self._vad = vad
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)

    def process(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of every complete 512-sample frame now available."""
        audio = np.concatenate([self._pending, audio.astype(np.float32, copy=False)])
        n = len(audio) // FRAME_SAMPLES
        self._pending = audio[n * FRAME_SAMPLES :]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        frames = audio[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
        contexts = np.concatenate([self._context[None, :], frames[:-1, -_CONTEXT:]], axis=0)
        self._context = frames[-1, -_CONTEXT:].copy()
        batch = np.concatenate([contexts, frames], axis=1)
        probs, self._h, self._c = self._vad._run(batch, self._h, self._c)
        return probs


@dataclasses.dataclass(frozen=True)
class SegmenterOptions:
    threshold: float = 0.5  # a frame above this is speech
    neg_threshold: float = 0.35  # inside speech, a frame must fall below this to count as silence
    min_silence_frames: int = 16  # ~0.5 s of silence ends speech
    min_speech_frames: int = 3  # ~0.1 s of speech starts it


@dataclasses.dataclass(frozen=True)
class VadEvent:
    kind: str  # "start" | "end"
    frame: int  # first speech frame (start) or first silence frame (end)


class SpeechSegmenter:
    """Pure state machine over per-frame speech probabilities."""

    def __init__(self, options: SegmenterOptions = SegmenterOptions()) -> None:
        self.options = options
        self.in_speech = False
        self._frame = 0
        self._run_start: int | None = None  # start of the current above-threshold run
        self._silence_start: int | None = None

    @property
    def frames_seen(self) -> int:
        return self._frame

    @property
    def silence_start(self) -> int | None:
        """Inside speech: the first frame of the silence run in progress (None if none)."""
        return self._silence_start if self.in_speech else None

    def push(self, probs: np.ndarray) -> list[VadEvent]:
        o = self.options
        events: list[VadEvent] = []
        for p in probs:
            i = self._frame
            self._frame += 1
            if not self.in_speech:
                if p >= o.threshold:
                    if self._run_start is None:
                        self._run_start = i
                    if i - self._run_start + 1 >= o.min_speech_frames:
                        self.in_speech = True
                        self._silence_start = None
                        events.append(VadEvent("start", self._run_start))
                else:
                    self._run_start = None
            else:
                if p < o.neg_threshold:
                    if self._silence_start is None:
                        self._silence_start = i
                    if i - self._silence_start + 1 >= o.min_silence_frames:
                        self.in_speech = False
                        self._run_start = None
                        events.append(VadEvent("end", self._silence_start))
                        self._silence_start = None
                elif p >= o.threshold:
                    self._silence_start = None
        return events

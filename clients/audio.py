"""Audio for the client: read a WAV file into 16 kHz mono int16, chunk it, pace it.

`read_wav` understands PCM 8/16/24/32-bit and IEEE float 32/64-bit WAVs (also in
WAVE_FORMAT_EXTENSIBLE), any sample rate and channel count; channels are averaged and
the rate converted with soxr. `chunk_pcm` cuts little-endian byte chunks (100 ms by
default) and `paced` releases them at real-time pace, or as fast as possible.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

SAMPLE_RATE = 16000
BYTES_PER_SAMPLE = 2

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE


class AudioError(ValueError):
    """A WAV file that cannot be read."""


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Parse a RIFF/WAVE byte string into (float32 samples [frames, channels] in [-1, 1], rate)."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise AudioError("not a RIFF/WAVE file")
    if data[:4] == b"RIFX":
        raise AudioError("big-endian RIFX WAV is not supported")
    fmt = None
    payload = None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]  # truncated/streamed files: take what is there
        if cid == b"fmt ":
            if len(body) < 16:
                raise AudioError("fmt chunk too short")
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack_from("<H", body, 24)[0]  # first two bytes of the sub-format GUID
            fmt = (tag, channels, rate, block_align, bits)
        elif cid == b"data":
            payload = body
            if fmt is not None:
                break
        pos += 8 + size + (size & 1)
    if fmt is None or payload is None:
        raise AudioError("missing fmt or data chunk")
    tag, channels, rate, block_align, bits = fmt
    if channels < 1 or rate < 1:
        raise AudioError(f"bad fmt: {channels} channels at {rate} Hz")
    width = block_align // channels if block_align else (bits + 7) // 8
    payload = payload[: len(payload) // (width * channels) * (width * channels)]
    raw = np.frombuffer(payload, dtype=np.uint8)
    if tag == _PCM and width == 1:
        samples = (raw.astype(np.float32) - 128.0) / 128.0
    elif tag == _PCM and width == 2:
        samples = np.frombuffer(payload, "<i2").astype(np.float32) / 32768.0
    elif tag == _PCM and width == 3:
        b = raw.reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = np.where(ints & 0x800000, ints - (1 << 24), ints)
        samples = ints.astype(np.float32) / float(1 << 23)
    elif tag == _PCM and width == 4:
        samples = (np.frombuffer(payload, "<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    elif tag == _FLOAT and width in (4, 8):
        samples = np.frombuffer(payload, "<f4" if width == 4 else "<f8").astype(np.float32)
    else:
        raise AudioError(f"unsupported WAV encoding: format tag {tag:#06x}, {bits}-bit")
    return samples.reshape(-1, channels), rate


def to_pcm16(samples: np.ndarray, rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Down-mix [frames, channels] (or [frames]) float audio and resample to int16 mono."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if rate != target_rate and len(x):
        import soxr

        x = soxr.resample(x, rate, target_rate, quality="HQ")
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def read_wav(path: str | Path, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read any supported WAV file as 16 kHz (target_rate) mono int16 samples."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AudioError(f"{path}: {exc.strerror or exc}") from None
    try:
        samples, rate = decode_wav(data)
    except AudioError as exc:
        raise AudioError(f"{path}: {exc}") from None
    if rate == target_rate and samples.shape[1] == 1 and _is_pcm16(data):
        return np.clip(np.round(samples[:, 0] * 32768.0), -32768, 32767).astype(np.int16)  # exact
    return to_pcm16(samples, rate, target_rate)


def _is_pcm16(data: bytes) -> bool:
    i = data.find(b"fmt ", 12)
    return i > 0 and struct.unpack_from("<HHIIHH", data, i + 8)[5] == 16


def write_wav(path: str | Path, pcm: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write int16 samples ([frames] or [frames, channels]) as a PCM WAV file."""
    import wave

    pcm = np.asarray(pcm, dtype="<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def chunk_pcm(pcm: np.ndarray, chunk_ms: int = 100, rate: int = SAMPLE_RATE) -> Iterator[bytes]:
    """Cut int16 mono samples into little-endian byte chunks of chunk_ms (the last may be shorter)."""
    if chunk_ms <= 0:
        raise ValueError("chunk_ms must be positive")
    step = max(1, rate * chunk_ms // 1000)
    data = np.asarray(pcm, dtype="<i2")
    for start in range(0, len(data), step):
        yield data[start : start + step].tobytes()


def chunk_seconds(chunk: bytes, rate: int = SAMPLE_RATE) -> float:
    return len(chunk) / (BYTES_PER_SAMPLE * rate)


def paced(chunks: Iterable[bytes], realtime: bool = True, rate: int = SAMPLE_RATE,
          clock=time.monotonic, sleep=time.sleep) -> Iterator[bytes]:
    """Yield each chunk once its audio would have been captured live (realtime), or at once.

    Like a microphone: a 100 ms chunk leaves 100 ms after the previous one, measured from
    the start so that sleeping jitter does not accumulate.
    """
    start = clock()
    captured = 0.0  # seconds of audio up to the end of the current chunk
    for chunk in chunks:
        captured += chunk_seconds(chunk, rate)
        if realtime:
            delay = start + captured - clock()
            if delay > 0:
                sleep(delay)
        yield chunk

"""Client audio: WAV decoding, resampling to 16 kHz mono, chunking, pacing, the demo clip."""

from __future__ import annotations

import hashlib
import json
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from clients import audio

DEMO_DIR = Path(__file__).resolve().parents[1] / "clients" / "demo"


def write_raw_wav(path: Path, payload: bytes, rate: int, channels: int, bits: int, tag: int = 1) -> None:
    """A minimal RIFF/WAVE file with an arbitrary format tag (1 = PCM, 3 = IEEE float)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(pcm: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def test_44k1_stereo_becomes_16k_mono_with_same_pitch(tmp_path):
    left, right = sine(440.0, 44100, 2.0), sine(440.0, 44100, 2.0, amp=0.3)
    stereo = (np.stack([left, right], axis=1) * 32767).astype("<i2")
    path = tmp_path / "stereo.wav"
    audio.write_wav(path, stereo, rate=44100)

    pcm = audio.read_wav(path)

    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) - 32000) <= 1
    assert abs(peak_hz(pcm) - 440.0) < 1.0
    rms = np.sqrt(np.mean((pcm[1000:-1000] / 32768.0) ** 2))
    assert rms == pytest.approx(0.4 / np.sqrt(2), rel=0.02)  # mean of the two channels


@pytest.mark.parametrize("bits,tag", [(8, 1), (16, 1), (24, 1), (32, 1), (32, 3), (64, 3)])
def test_sample_formats_decode_to_the_same_signal(tmp_path, bits, tag):
    x = sine(1000.0, 16000, 0.5)
    if tag == 3:
        payload = x.astype("<f4" if bits == 32 else "<f8").tobytes()
    elif bits == 8:
        payload = np.round(x * 127 + 128).astype(np.uint8).tobytes()
    elif bits == 24:
        ints = np.round(x * (2**23 - 1)).astype("<i4")
        payload = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        payload = np.round(x * (2 ** (bits - 1) - 1)).astype(f"<i{bits // 8}").tobytes()
    path = tmp_path / f"{bits}_{tag}.wav"
    write_raw_wav(path, payload, 16000, 1, bits, tag)

    pcm = audio.read_wav(path)

    assert len(pcm) == len(x)
    tolerance = 300 if bits == 8 else 2
    assert np.max(np.abs(pcm.astype(np.int32) - np.round(x * 32768).astype(np.int32))) <= tolerance


def test_16k_mono_pcm16_is_read_exactly(tmp_path):
    pcm = np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16)
    audio.write_wav(tmp_path / "a.wav", pcm)
    assert np.array_equal(audio.read_wav(tmp_path / "a.wav"), pcm)


def test_not_a_wav_is_a_clear_error(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"ID3 definitely an mp3")
    with pytest.raises(audio.AudioError, match="not a RIFF/WAVE"):
        audio.read_wav(tmp_path / "x.wav")
    with pytest.raises(audio.AudioError, match="missing.wav"):
        audio.read_wav(tmp_path / "missing.wav")


def test_chunking_100ms():
    pcm = np.arange(16000 + 800, dtype=np.int16)
    chunks = list(audio.chunk_pcm(pcm, chunk_ms=100))
    assert [len(c) for c in chunks] == [3200] * 10 + [1600]
    assert np.array_equal(np.frombuffer(b"".join(chunks), "<i2"), pcm)


def test_pacing_real_time_and_fast():
    now = [0.0]
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        now[0] += s

    chunks = [b"\0" * 3200] * 5  # 5 x 100 ms
    out = list(audio.paced(chunks, realtime=True, clock=lambda: now[0], sleep=sleep))
    assert len(out) == 5 and sum(sleeps) == pytest.approx(0.5)
    sleeps.clear()
    list(audio.paced(chunks, realtime=False, clock=lambda: now[0], sleep=sleep))
    assert not sleeps


def test_demo_clip_is_16k_mono_and_matches_its_segments():
    wav_path, meta_path = DEMO_DIR / "demo_zh_en.wav", DEMO_DIR / "demo_zh_en.json"
    assert wav_path.stat().st_size < 1.5 * 1024 * 1024
    with wave.open(str(wav_path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768.0
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    duration = len(pcm) / 16000
    assert 15.0 <= duration <= 25.0
    assert meta["duration_s"] == pytest.approx(duration, abs=1e-3)
    assert meta["wav_sha256"] == hashlib.sha256(wav_path.read_bytes()).hexdigest()

    segments = meta["segments"]
    languages = [s["language"] for s in segments]
    assert set(languages) == {"zh", "en"}
    assert all(a != b for a, b in zip(languages, languages[1:])), "languages should alternate"
    previous_end = 0.0
    for seg in segments:
        assert previous_end <= seg["start_s"] < seg["end_s"] <= duration
        assert seg["text"] and seg["source"] and seg["licence"]
        speech = pcm[int(seg["start_s"] * 16000): int(seg["end_s"] * 16000)]
        assert np.sqrt(np.mean(speech**2)) > 0.03, seg
        previous_end = seg["end_s"]
    for a, b in zip(segments, segments[1:]):  # the pauses between segments are silent
        gap = pcm[int(a["end_s"] * 16000) + 80: int(b["start_s"] * 16000) - 80]
        assert b["start_s"] - a["end_s"] >= 0.5 and np.max(np.abs(gap)) < 1e-3

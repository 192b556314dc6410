"""Whisper's log-Mel front end in NumPy: 16 kHz float audio -> (n_mels, frames) features.

Matches openai-whisper's `log_mel_spectrogram` (periodic Hann window, n_fft 400, hop 160,
reflect-padded centred STFT, Slaney Mel filters, log10 with an 8-decade floor under the
maximum). Owns nothing else.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 frames in a full Whisper window


def _hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    """Slaney Mel scale (librosa's default, as used to build Whisper's filters)."""
    f_sp = 200.0 / 3
    mels = freqs / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_region = freqs >= min_log_hz
    mels = np.where(log_region, min_log_mel + np.log(np.maximum(freqs, 1e-10) / min_log_hz) / logstep, mels)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_region = mels >= min_log_mel
    return np.where(log_region, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80) -> np.ndarray:
    """(n_mels, 1 + N_FFT // 2) Slaney-normalised triangular filters."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mel_points = np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(SAMPLE_RATE / 2)), n_mels + 2)
    hz_points = _mel_to_hz(mel_points)
    fdiff = np.diff(hz_points)
    ramps = hz_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (hz_points[2 : n_mels + 2] - hz_points[:n_mels])
    return (weights * enorm[:, None]).astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann


def log_mel_spectrogram(audio: np.ndarray, n_mels: int = 80, pad_to_frames: int | None = None) -> np.ndarray:
    """Log-Mel features of `audio` (float32, 16 kHz, [-1, 1]).

    Returns (n_mels, frames) with frames = len(audio) // HOP_LENGTH (rounded up to even, as
    Whisper's stride-2 convolution expects), or exactly `pad_to_frames` frames when given
    (zero audio appended, as openai-whisper pads to 30 s).
    """
    audio = np.asarray(audio, dtype=np.float32)
    n_frames = max(2, -(-len(audio) // HOP_LENGTH))
    n_frames += n_frames % 2
    if pad_to_frames is not None:
        n_frames = max(n_frames, pad_to_frames)
    target_len = n_frames * HOP_LENGTH
    if len(audio) < target_len:
        audio = np.pad(audio, (0, target_len - len(audio)))
    else:
        audio = audio[:target_len]
    padded = np.pad(audio, (N_FFT // 2, N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH][:n_frames]
    spectrum = np.fft.rfft(frames * _window(), axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    mel = mel_filters(n_mels) @ power.T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)

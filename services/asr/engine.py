"""Whisper inference behind one small interface; the CTranslate2 backend.

`WhisperEngine.encode()` runs the encoder once per window; `detect()` and `decode()` both
work on that same encoder output, so language identification never costs a second encode.
`detect()` returns Whisper's language-token probabilities restricted to the configured
pair and renormalised (the pair constraint at decoder position 1); it can look at a slice
of the window's frames (the trailing seconds) to probe for a switch.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Protocol

import numpy as np

from services.asr.features import HOP_LENGTH, N_FRAMES, SAMPLE_RATE, log_mel_spectrogram
from services.asr.language import restrict_to_pair, whisper_code

_NO_SPACE_SCRIPT = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH // 2  # encoder frames per second (50)


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    compute_type: str = "int8"
    device: str = "cpu"
    intra_threads: int = 2
    inter_threads: int = 1
    # The mel is padded with silence to a multiple of this many seconds (30 = always a full
    # Whisper window). Unpadded short windows make Whisper loop; 10 s keeps accuracy
    # (measured on ../shared/eval) at a third of the 30 s encoder cost.
    pad_quantum_s: float = 10.0
    prime: bool = True  # CPU: create the model beside a primed throwaway instance (see _load_ct2_whisper)


@dataclasses.dataclass(frozen=True)
class Decoded:
    text: str
    language: str  # configured code the decode was forced to
    no_speech_prob: float
    avg_logprob: float
    token_count: int


class Encoded(Protocol):
    duration_s: float  # of the audio, universal padding excluded
    padding: Padding | None  # the universal padding clip prepended to it, if any


@dataclasses.dataclass(frozen=True)
class Padding:
    """Universal padding: a fixed clip prepended to short audio, and its known transcript."""

    audio: np.ndarray
    text: str

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def padded_frames(samples: int, quantum_s: float) -> int:
    """Mel frames of a window: its audio plus >= 0.5 s of silence, rounded up to the quantum
    (at most Whisper's 30 s)."""
    quantum = max(2, int(round(quantum_s * 100)))
    speech_frames = -(-samples // HOP_LENGTH)
    return min(N_FRAMES, max(quantum, -(-(speech_frames + 50) // quantum) * quantum))


class WhisperEngine(Protocol):
    def encode(self, audio: np.ndarray, padding: Padding | None = None, quantum_s: float | None = None) -> Encoded:
        """Encode once; the mel is padded to a multiple of `quantum_s` (default: the engine's
        `EngineOptions.pad_quantum_s`)."""

    def detect(self, encoded: Encoded, pair: tuple[str, ...], last_seconds: float | None = None,
               span: tuple[float, float] | None = None) -> dict[str, float]: ...

    def decode(
        self, encoded: Encoded, language: str, *, prompt: str = "", prefix: str = "", beam_size: int = 1
    ) -> Decoded: ...

    # Optional: detect_spans(encoded, pair, spans) -> [detect(encoded, pair, span=s) for s in spans],
    # batched (both engines have it; RecognitionStream falls back to one detect per span).


def load_tokenizer(path: Path):
    """Whisper's tokenizer.json, repaired: the packaged base model's file lacks GPT-2's first
    BPE merge ("Ġ t"), which splits " the", " to", ... into " " + "the" when prompts, prefixes
    and the padding text are encoded (decoding is unaffected). Checked against tiktoken in
    tests/test_torch_engine.py."""
    import json

    import tokenizers

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    merges = data["model"]["merges"]
    as_string = isinstance(merges[0], str)
    first = merges[0] if as_string else " ".join(merges[0])
    if first != "Ġ t":
        merges.insert(0, "Ġ t" if as_string else ["Ġ", "t"])
    return tokenizers.Tokenizer.from_str(json.dumps(data))


def _load_ct2_whisper(ctranslate2, model_dir: Path, options: EngineOptions):
    """The CTranslate2 Whisper model; on CPU, created while a primed throwaway instance exists.

    Measured on a 2-core AMD EPYC (Zen 1, AVX2, oneDNN int8 backend): the first model of a
    process encodes a 10 s window in 0.59 s using 1.5 cores, while a model created after another
    instance has run one encode (and is then freed) takes 0.33 s using 1.9 cores, and keeps that
    speed (detect and decode are faster too). Not page faults, threads settings or the ISA
    (all checked); the cause is inside the runtime. Priming costs one extra model load and one
    single-threaded encode at start-up (about 1 s) and nothing at run time; on machines without
    the effect it changes nothing. `EngineOptions.prime=False` (TANDEM_ASR_PRIME=false) skips it.
    """
    primer = None
    if options.prime and options.device == "cpu":
        primer = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type=options.compute_type,
                                            intra_threads=1)
        silence = np.zeros((1, primer.n_mels, 1000), dtype=np.float32)
        primer.encode(ctranslate2.StorageView.from_array(silence))
    model = ctranslate2.models.Whisper(
        str(model_dir),
        device=options.device,
        compute_type=options.compute_type,
        intra_threads=options.intra_threads,
        inter_threads=options.inter_threads,
    )
    del primer
    return model


def span_frames(encoded, span: tuple[float, float]) -> tuple[int, int]:
    """Encoder frame range of `span` (seconds into the audio, after any universal padding)."""
    pad_s = encoded.padding.duration_s if encoded.padding else 0.0
    start = int((pad_s + span[0]) * FRAMES_PER_SECOND)
    return start, max(start + 1, int((pad_s + span[1]) * FRAMES_PER_SECOND))


def span_batches(encoded, spans: list[tuple[float, float]]) -> list[list[tuple[int, int, int]]]:
    """`spans` as batches of equal frame count (one decoder step each): (index, start, end) frames."""
    frames = [(k, *span_frames(encoded, span)) for k, span in enumerate(spans)]
    lengths = sorted({end - start for _, start, end in frames})
    return [[f for f in frames if f[2] - f[1] == length] for length in lengths]


@dataclasses.dataclass
class _Ct2Encoded:
    output: object  # ctranslate2.StorageView [1, frames, d_model]
    duration_s: float
    padding: Padding | None = None


class Ct2WhisperEngine:
    """Whisper on CTranslate2 (int8 on CPU by default)."""

    name = "ct2"

    def __init__(self, model_dir: Path, options: EngineOptions = EngineOptions()) -> None:
        import ctranslate2

        self._ct2 = ctranslate2
        self.options = options
        self.model = _load_ct2_whisper(ctranslate2, Path(model_dir), options)
        self.tokenizer = load_tokenizer(Path(model_dir) / "tokenizer.json")
        self.n_mels = self.model.n_mels

    def _frames(self, samples: int, quantum_s: float | None = None) -> int:
        return padded_frames(samples, quantum_s or self.options.pad_quantum_s)

    def encode_shape(self, audio: np.ndarray, padding: Padding | None = None, quantum_s: float | None = None) -> tuple:
        """Windows with equal shapes can be encoded in one batch."""
        return (self._frames(len(audio) + (len(padding.audio) if padding else 0), quantum_s),)

    def encode(self, audio: np.ndarray, padding: Padding | None = None, quantum_s: float | None = None) -> _Ct2Encoded:
        return self.encode_batch([(audio, padding, quantum_s)])[0]

    def encode_batch(self, items: list[tuple]) -> list[_Ct2Encoded]:
        """Encode windows of equal `encode_shape` in one call; items are (audio, padding, quantum_s)."""
        features, durations = [], []
        for audio, padding, quantum_s in items:
            durations.append(min(len(audio) / SAMPLE_RATE, 30.0))
            full = np.concatenate([padding.audio, audio]) if padding is not None else audio
            frames = self._frames(len(full), quantum_s)
            features.append(log_mel_spectrogram(full[: N_FRAMES * HOP_LENGTH], n_mels=self.n_mels, pad_to_frames=frames))
        output = self.model.encode(self._ct2.StorageView.from_array(np.ascontiguousarray(np.stack(features))),
                                   to_cpu=False)
        if len(items) == 1:
            return [_Ct2Encoded(output, durations[0], items[0][1])]
        array = np.asarray(output)
        return [_Ct2Encoded(self._ct2.StorageView.from_array(np.ascontiguousarray(array[k:k + 1])), durations[k],
                            items[k][1]) for k in range(len(items))]

    def detect(self, encoded: _Ct2Encoded, pair: tuple[str, ...], last_seconds: float | None = None,
               span: tuple[float, float] | None = None) -> dict[str, float]:
        """Pair-restricted language probabilities on the audio's encoder frames (padding
        excluded): all of them, the trailing `last_seconds`, or `span` (seconds into the audio)."""
        if len(pair) == 1:
            return {pair[0]: 1.0}
        return restrict_to_pair(self.detect_all(encoded, last_seconds, span), pair)

    def detect_all(self, encoded: _Ct2Encoded, last_seconds: float | None = None,
                   span: tuple[float, float] | None = None) -> dict[str, float]:
        """Unrestricted language-token probabilities by Whisper code (the ablation without the pair)."""
        if span is None:
            start_s = 0.0 if last_seconds is None else max(0.0, encoded.duration_s - last_seconds)
            span = (start_s, encoded.duration_s)
        output = encoded.output
        if encoded.padding or span != (0.0, encoded.duration_s):
            start, end = span_frames(encoded, span)
            array = np.asarray(output)  # CPU storage; a GPU engine slices on the device
            output = self._ct2.StorageView.from_array(np.ascontiguousarray(array[:, start:end]))
        ranked = self.model.detect_language(output)[0]
        return {token.strip("<|>"): p for token, p in ranked}

    def detect_spans(self, encoded: _Ct2Encoded, pair: tuple[str, ...],
                     spans: list[tuple[float, float]]) -> list[dict[str, float]]:
        """`detect` on several spans of one encoder output; spans of equal frame count run as
        one batched decoder step (locating a switch compares 16 of them)."""
        if len(pair) == 1:
            return [{pair[0]: 1.0} for _ in spans]
        array = np.asarray(encoded.output)
        out: list[dict[str, float]] = [{} for _ in spans]
        for batch in span_batches(encoded, spans):
            stacked = np.ascontiguousarray(np.concatenate([array[:, start:end] for _, start, end in batch]))
            for (k, _, _), ranked in zip(batch, self.model.detect_language(self._ct2.StorageView.from_array(stacked))):
                out[k] = restrict_to_pair({token.strip("<|>"): p for token, p in ranked}, pair)
        return out

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def _prompt_tokens(self, encoded: _Ct2Encoded, language: str, prompt: str, prefix: str) -> tuple[list[int], int, int]:
        """(decoder prompt ids, forced padding-text tokens, forced prefix tokens)."""
        tokens: list[int | str] = []
        if prompt:
            tokens = ["<|startofprev|>", *self._ids(" " + prompt.strip())[-200:]]
        head = ["<|startoftranscript|>", f"<|{whisper_code(language)}|>", "<|transcribe|>", "<|notimestamps|>"]
        ids = [self.tokenizer.token_to_id(t) if isinstance(t, str) else t for t in (*tokens, *head)]
        prefix = prefix.strip()
        if prefix and not _NO_SPACE_SCRIPT.match(prefix):
            prefix = " " + prefix  # Whisper's word tokens carry their leading space
        prefix_ids = self._ids(prefix) if prefix else []
        # Universal padding: the decoder is forced through the clip's known text first.
        pad_ids = self._ids(" " + encoded.padding.text) if encoded.padding else []
        return ids + pad_ids + prefix_ids, len(pad_ids), len(prefix_ids)

    def decode_shape(self, encoded: _Ct2Encoded, prompt: str = "", prefix: str = "", beam_size: int = 1) -> tuple:
        """Decodes with equal shapes (encoder frames, beam, forced prefix or not) can run in one batch."""
        return (int(encoded.output.shape[1]), beam_size, bool(prefix.strip()))

    def decode(
        self, encoded: _Ct2Encoded, language: str, *, prompt: str = "", prefix: str = "", beam_size: int = 1
    ) -> Decoded:
        return self.decode_batch([(encoded, language, prompt, prefix, beam_size)])[0]

    def decode_batch(self, items: list[tuple]) -> list[Decoded]:
        """Decode windows of equal `decode_shape` in one call; items are (encoded, language, prompt, prefix, beam)."""
        prepared = [self._prompt_tokens(enc, lang, prompt, prefix) for enc, lang, prompt, prefix, _ in items]
        if len(items) == 1:
            features = items[0][0].output
        else:
            features = self._ct2.StorageView.from_array(
                np.ascontiguousarray(np.concatenate([np.asarray(it[0].output) for it in items])))
        # bounds repetition loops: ~12 tokens per second of audio
        max_length = max(len(ids) + int(it[0].duration_s * 12) + 12 for (ids, _, _), it in zip(prepared, items))
        results = self.model.generate(
            features,
            [ids for ids, _, _ in prepared],
            beam_size=items[0][4],
            max_length=min(448, max_length),
            return_scores=True,
            return_no_speech_prob=True,
            # With a forced prefix the audio may be fully transcribed already: end-of-text
            # must be allowed as the first generated token.
            suppress_blank=not any(n_prefix for _, _, n_prefix in prepared),
        )
        out = []
        for (enc, lang, *_), (_, n_pad, n_prefix), result in zip(items, prepared, results):
            ids = result.sequences_ids[0][n_pad:]  # forced tokens come back as part of the sequence
            out.append(Decoded(
                text=self.tokenizer.decode(ids, skip_special_tokens=True).strip(),
                language=lang,
                no_speech_prob=float(result.no_speech_prob),
                avg_logprob=float(result.scores[0]) if result.scores else 0.0,
                token_count=max(0, len(ids) - n_prefix),
            ))
        return out

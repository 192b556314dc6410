"""Whisper on openai-whisper (PyTorch), behind the same `WhisperEngine` interface as
`Ct2WhisperEngine`, on the same weights (the CTranslate2 model is mapped onto openai-whisper
by `services.asr.ct2_to_torch`; a standard openai-whisper .pt checkpoint also loads).

Same semantics as the CTranslate2 engine:
- `encode()`: our log-Mel front end, padded with silence to a multiple of
  `EngineOptions.pad_quantum_s` (not always 30 s); the encoder runs once per window on that
  length (openai-whisper's own `AudioEncoder.forward` insists on 30 s, so the same layers
  are run here with the positional embedding sliced, as CTranslate2 does).
- `detect()`: the decoder's logits at position 1 (after <|startoftranscript|>), with -inf
  added outside the pair's language tokens (a LogitFilter-style mask), softmaxed over the
  pair; optionally on the trailing seconds of encoder frames only.
- `decode()`: openai-whisper's `DecodingTask` (greedy or beam search) with the language
  forced, the prompt and the forced prefix, no timestamps, fp16 only on CUDA. The returned
  text includes the forced prefix; the new-token budget is bounded by the window length.

Known differences from CTranslate2 (measured on ../shared/eval, see tests/test_torch_engine.py):
beam search is openai-whisper's (it keeps searching until beam_size hypotheses end), so beam
outputs can differ on uncertain short clips while greedy output matches CTranslate2 float32;
`avg_logprob` averages the generated tokens (+ end-of-text) only, whereas CTranslate2's score
also counts forced prefix/padding tokens, so guard thresholds on it read differently when a
prefix or universal padding is forced.

Thread safety: openai-whisper's decoding installs its key/value-cache hooks on the shared
decoder modules, so a language detection (a decoder step, run inline by each stream) during
another stream's decode would corrupt that decode's cache. Decoder calls therefore hold one
lock.

Device and dtype come from `EngineOptions`: on CPU always float32 (CTranslate2's int8 has no
counterpart here); on CUDA float16 unless compute_type is "float32" (or "bfloat16").
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np

from services.asr.engine import (
    _NO_SPACE_SCRIPT, Decoded, EngineOptions, Padding, padded_frames, span_batches, span_frames,
)
from services.asr.features import HOP_LENGTH, N_FRAMES, SAMPLE_RATE, log_mel_spectrogram
from services.asr.language import restrict_to_pair, whisper_code

MAX_PROMPT_TOKENS = 200  # as Ct2WhisperEngine


def torch_dtype(options: EngineOptions):
    """The torch dtype an `EngineOptions` asks for on its device."""
    import torch

    if not options.device.startswith("cuda"):
        return torch.float32
    if options.compute_type == "float32":
        return torch.float32
    if options.compute_type == "bfloat16":
        return torch.bfloat16
    return torch.float16


@dataclasses.dataclass
class _TorchEncoded:
    output: Any  # torch.Tensor [1, frames, d_model] on the engine's device
    duration_s: float  # of the audio, universal padding excluded
    padding: Padding | None = None


def _decoding_task_class():
    from whisper.decoding import DecodingTask, MaximumLikelihoodRanker

    class _EmptySafeRanker(MaximumLikelihoodRanker):
        """The stock ranker divides by the text length: zero when end-of-text comes first
        (the whole window already given as prefix, or silence)."""

        def rank(self, tokens, sum_logprobs):
            def score(logprob: float, length: int) -> float:
                if self.length_penalty is None:
                    return logprob / max(1, length)
                return logprob / ((5 + length) / 6) ** self.length_penalty

            return [
                int(np.argmax([score(lp, len(t)) for t, lp in zip(group, logprobs)]))
                for group, logprobs in zip(tokens, sum_logprobs)
            ]

    class _PrecomputedTask(DecodingTask):
        """openai-whisper's DecodingTask on encoder output we computed (any frame count),
        with the initial tokens built as CTranslate2 receives them."""

        def __init__(self, model, options, initial_tokens: tuple[int, ...]) -> None:
            self._ours = tuple(initial_tokens)
            super().__init__(model, options)
            self.sequence_ranker = _EmptySafeRanker(options.length_penalty)

        def _get_initial_tokens(self) -> tuple[int, ...]:
            # The stock method cuts the prefix to n_ctx // 2 - sample_len tokens (negative when
            # sample_len > 224); our budget is checked by the engine instead.
            return self._ours

        def _get_audio_features(self, mel):
            return mel  # already the encoder output, in the model's dtype

    return _PrecomputedTask


class TorchWhisperEngine:
    """Whisper on openai-whisper / PyTorch (float32 on CPU, float16 on CUDA by default)."""

    name = "torch"

    def __init__(self, model_path: Path, options: EngineOptions = EngineOptions(), *, dtype=None) -> None:
        import torch
        from whisper.tokenizer import get_tokenizer

        from services.asr.ct2_to_torch import load_whisper_from_ct2

        self._torch = torch
        self.options = options
        self.device = torch.device(options.device)
        self.dtype = dtype or torch_dtype(options)
        if self.device.type == "cpu" and options.intra_threads > 0:
            torch.set_num_threads(options.intra_threads)  # process-wide, as CTranslate2's intra_threads
        self.model = load_whisper_from_ct2(model_path, device=options.device, dtype=self.dtype)
        self.n_mels = self.model.dims.n_mels
        self.tokenizer = get_tokenizer(self.model.is_multilingual, num_languages=self.model.num_languages)
        self._task_class = _decoding_task_class()
        self._decoder_lock = threading.Lock()  # see the module docstring

    # -- encoder ---------------------------------------------------------------------------

    def encode(self, audio: np.ndarray, padding: Padding | None = None, quantum_s: float | None = None) -> _TorchEncoded:
        torch = self._torch
        duration = len(audio) / SAMPLE_RATE
        if padding is not None:
            audio = np.concatenate([padding.audio, audio])
        frames = padded_frames(len(audio), quantum_s or self.options.pad_quantum_s)
        features = log_mel_spectrogram(audio[: N_FRAMES * HOP_LENGTH], n_mels=self.n_mels, pad_to_frames=frames)
        mel = torch.from_numpy(np.ascontiguousarray(features[None])).to(self.device, self.dtype)
        with torch.inference_mode():
            output = self._encoder(mel)
        return _TorchEncoded(output, min(duration, 30.0), padding)

    def _encoder(self, mel):
        """openai-whisper's AudioEncoder.forward without its 30-s shape assertion."""
        import torch.nn.functional as F

        enc = self.model.encoder
        x = F.gelu(enc.conv1(mel))
        x = F.gelu(enc.conv2(x))
        x = x.permute(0, 2, 1)
        if x.shape[1] > enc.positional_embedding.shape[0]:
            raise ValueError(f"{x.shape[1]} encoder frames exceed the model's {enc.positional_embedding.shape[0]}")
        x = (x + enc.positional_embedding[: x.shape[1]]).to(x.dtype)
        for block in enc.blocks:
            x = block(x)
        return enc.ln_post(x)

    # -- language --------------------------------------------------------------------------

    def detect(self, encoded: _TorchEncoded, pair: tuple[str, ...], last_seconds: float | None = None,
               span: tuple[float, float] | None = None) -> dict[str, float]:
        """Pair-restricted language probabilities on the audio's encoder frames (padding
        excluded): all of them, the trailing `last_seconds`, or `span` (seconds into the audio).
        The decoder's position-1 logits get -inf outside the pair's language tokens."""
        if len(pair) == 1:
            return {pair[0]: 1.0}
        codes = sorted({whisper_code(code) for code in pair})
        return restrict_to_pair(self._language_probs(encoded, codes, last_seconds, span), pair)

    def detect_all(self, encoded: _TorchEncoded, last_seconds: float | None = None,
                   span: tuple[float, float] | None = None) -> dict[str, float]:
        """Unrestricted language-token probabilities by Whisper code (the ablation without the pair)."""
        return self._language_probs(encoded, None, last_seconds, span)

    def _frames(self, encoded: _TorchEncoded, last_seconds: float | None, span: tuple[float, float] | None):
        if span is None:
            start_s = 0.0 if last_seconds is None else max(0.0, encoded.duration_s - last_seconds)
            span = (start_s, encoded.duration_s)
        output = encoded.output
        if encoded.padding or span != (0.0, encoded.duration_s):  # as Ct2WhisperEngine.detect_all
            start, end = span_frames(encoded, span)
            output = output[:, start:end]
        return output

    def detect_spans(self, encoded: _TorchEncoded, pair: tuple[str, ...],
                     spans: list[tuple[float, float]]) -> list[dict[str, float]]:
        """`detect` on several spans of one encoder output; equal-length spans in one batch."""
        if len(pair) == 1:
            return [{pair[0]: 1.0} for _ in spans]
        codes = sorted({whisper_code(code) for code in pair})
        out: list[dict[str, float]] = [{} for _ in spans]
        for batch in span_batches(encoded, spans):
            stacked = self._torch.cat([encoded.output[:, start:end] for _, start, end in batch])
            for (k, _, _), probs in zip(batch, self._language_probs_batch(stacked, codes)):
                out[k] = restrict_to_pair(probs, pair)
        return out

    def _language_probs(self, encoded: _TorchEncoded, codes: list[str] | None, last_seconds, span) -> dict[str, float]:
        if codes is None:
            codes = list(self.tokenizer.all_language_codes)
        return self._language_probs_batch(self._frames(encoded, last_seconds, span), codes)[0]

    def _language_probs_batch(self, output, codes: list[str]) -> list[dict[str, float]]:
        torch = self._torch
        ids = [self.tokenizer.to_language_token(code) for code in codes]
        with torch.inference_mode(), self._decoder_lock:
            tokens = torch.full((output.shape[0], 1), self.tokenizer.sot, device=output.device)
            logits = self.model.logits(tokens, output)[:, -1].float()
            mask = torch.full_like(logits, float("-inf"))
            mask[:, ids] = 0.0  # LogitFilter-style: only these language tokens may appear
            probs = (logits + mask).softmax(dim=-1)[:, ids].tolist()
        return [dict(zip(codes, row)) for row in probs]

    # -- decoding --------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(
        self, encoded: _TorchEncoded, language: str, *, prompt: str = "", prefix: str = "", beam_size: int = 1
    ) -> Decoded:
        from whisper.decoding import DecodingOptions
        from whisper.tokenizer import get_tokenizer

        torch = self._torch
        code = whisper_code(language)
        tokenizer = get_tokenizer(
            self.model.is_multilingual, num_languages=self.model.num_languages, language=code, task="transcribe"
        )
        prompt_ids = self._ids(" " + prompt.strip())[-MAX_PROMPT_TOKENS:] if prompt else []
        prefix = prefix.strip()
        if prefix and not _NO_SPACE_SCRIPT.match(prefix):
            prefix = " " + prefix  # Whisper's word tokens carry their leading space
        prefix_ids = self._ids(prefix) if prefix else []
        # Universal padding: the decoder is forced through the clip's known text first.
        pad_ids = self._ids(" " + encoded.padding.text) if encoded.padding else []
        forced = pad_ids + prefix_ids
        initial = ([tokenizer.sot_prev, *prompt_ids] if prompt_ids else []) + [
            *tokenizer.sot_sequence_including_notimestamps,
            *forced,
        ]
        n_ctx = self.model.dims.n_text_ctx
        max_new = int(encoded.duration_s * 12) + 12  # bounds repetition loops, as the CT2 engine
        sample_len = max(1, min(max_new, n_ctx - len(initial)))
        options = DecodingOptions(
            task="transcribe",
            language=code,
            temperature=0.0,
            sample_len=sample_len,
            beam_size=beam_size if beam_size > 1 else None,
            prompt=prompt_ids or None,
            prefix=forced or None,
            # With a forced user prefix the audio may be fully transcribed already: end-of-text
            # must be allowed as the first generated token. After the padding text alone it
            # must not (Whisper would end on "bye bye"), as in the CTranslate2 engine.
            suppress_blank=not prefix_ids,
            without_timestamps=True,
            fp16=self.dtype == torch.float16,
        )
        task = self._task_class(self.model, options, tuple(initial))
        with torch.inference_mode(), self._decoder_lock:
            result = task.run(encoded.output)[0]
        text = tokenizer.decode([*prefix_ids, *result.tokens])
        return Decoded(
            text=text.strip(),
            language=language,
            no_speech_prob=float(result.no_speech_prob),
            avg_logprob=float(result.avg_logprob),
            token_count=len(result.tokens),
        )

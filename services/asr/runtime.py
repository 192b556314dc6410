"""What the ASR service holds for its lifetime: settings, the engine, the VAD, admission.

At start-up it times one stream's work on the warm model (`measure_stream_load`), which is
what admission control charges a new stream (admission.py)."""

from __future__ import annotations

import dataclasses
import logging
import time
import wave
from pathlib import Path

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from services.asr.admission import Admission, AdmissionOptions, Slot
from services.asr.engine import Ct2WhisperEngine, EngineOptions, Padding, WhisperEngine
from services.asr.language import HysteresisOptions
from services.asr.pacing import PacingOptions
from services.asr.scheduler import InferenceScheduler
from services.asr.stream import RecognitionStream, StreamOptions
from services.asr.vad import SileroVad
from services.common.settings import default_model_dir

log = logging.getLogger("tandem.asr")
SUPPRESSED = Counter("asr_hallucinations_suppressed_total", "Decodes suppressed as hallucinations.", ("reason",))
INFERENCE_SECONDS = Histogram(
    "asr_inference_seconds", "Time of one Whisper call (encode or decode).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2, 5),
)
ADMISSION_LOAD = Gauge("asr_admission_load",
                       "The open streams' inference load as admission control counts it, in inference workers.")


@dataclasses.dataclass(frozen=True)
class AsrSettings:
    """Read from TANDEM_ASR_* (see README, Configuration)."""

    model_dir: Path = dataclasses.field(default_factory=default_model_dir)
    whisper_model: str = "whisper-base-ct2"  # a CTranslate2 Whisper directory (torch: or an openai-whisper .pt)
    engine: str = "ct2"  # "ct2" (CTranslate2; the CPU default) or "torch" (openai-whisper; fp16 on CUDA)
    compute_type: str = "int8"
    device: str = "cpu"
    # Two scheduler workers with one engine thread each, not one with two: on 2 cores (AVX-512 Xeon,
    # 2026-11-25) `bench.load` N = 2 / 8 final p95 1.30 / 2.31 s against 1.66 / 4.89 s, ASR RTF 0.15
    # against 0.21 at N = 1 (README, Benchmarks; config ct2-1thread is the old default).
    intra_threads: int = 1
    prime: bool = True  # CTranslate2 on CPU: load beside a primed instance (engine._load_ct2_whisper)
    max_streams: int = 8  # admission control: RESOURCE_EXHAUSTED beyond this many streams
    # ... or beyond this share of the inference workers' time (0 = count only; admission.py). At 0.9
    # this 2-core machine admitted 12 streams and their final p95 was 2.0-2.5 s; at 0.6 it admits
    # 8 and refuses nothing up to 8 (p95 1.26-1.32 s): README, Benchmarks, sixteenth session.
    max_load: float = 0.6
    batching: bool = True  # cross-stream batching of encoder and decoder calls
    max_batch: int = 8
    inference_threads: int = 2  # scheduler workers in this process (each runs batched engine calls)
    max_stream_seconds: float = 4 * 3600.0  # OUT_OF_RANGE beyond this
    # Live streams behind real time: interim text dropped beyond this backlog, the interim window too
    # beyond the second (0 = never); see pacing.py.
    catch_up_text_s: float = 0.5
    catch_up_probe_s: float = 2.0
    interim_duty: float = 1.0  # a live stream's interim windows take at most this share of its time (1 = no rest)
    background_windows: bool = True  # a live stream's interim windows run beside its VAD and finals (servicer)
    beam_size: int = 5
    long_final_beam: int = 2  # the final's beam for segments longer than long_final_s (0 = beam_size)
    long_final_s: float = 6.0
    partial_interval_s: float = 1.0
    confirm_after_s: float = 0.5  # a suspected switch's confirming window this soon (0 = the interval)
    min_silence_s: float = 0.6
    speculate_after_s: float = 0.15  # the final is decoded ahead this far into a pause (stream.StreamOptions)
    speculate_below_busy: float = 0.75  # decode the final ahead in a pause only below this others' share (above 1 = always)
    head_drafts: bool = False  # a suspected switch's head final decoded ahead while the confirming probe comes
    snap_cut_s: float = 0.25  # a switch's cut moves to a pause's final decoded ahead this near (0 = never)
    interim_in_pauses: bool = True  # false: no interim windows while VAD hears a pause (stream.StreamOptions)
    max_segment_s: float = 15.0
    # Bilingual mechanisms (README, "How a stream is recognised"); each can be switched off.
    pair_constraint: bool = True
    hysteresis_windows: int = 2
    hysteresis_threshold: float = 0.75
    switch_probe: bool = True
    final_switch_scan: str = "missed"  # "missed" | "always" | "off" (stream.StreamOptions)
    probe_recheck_above: float = 0.2  # an unsure probe is re-checked on its own encode (0 = never)
    probe_gaps: bool = True  # windows spaced out under load also probe the stretch they stepped over
    # a switch is confirmed this long after a VAD dip if the speech since is heard twice in the
    # other language (0 = never)
    onset_probe_s: float = 1.0
    short_text_chars: int = 6
    vad_flush: bool = True
    universal_padding: bool = True
    padding_cutoff_s: float = 3.0
    interim_quantum_s: float = 2.0  # interim windows shorter than the switch probe: mel padded to this (0 = engine's 10 s)
    probe_quantum_s: float = 0.0  # ... of interim windows of 3 s and longer (0 = the engine's 10 s)
    final_quantum_s: float = 0.0  # the final's mel padded to a multiple of this (0 = engine's 10 s; 30 = offline's)
    hallucination_guards: bool = True
    commit_prefix: bool = False
    prompt_chars: int = 0
    prompt_hygiene: bool = True


PAD_CLIP = Path(__file__).resolve().parent / "assets" / "pad_clip.wav"
PAD_TEXT = "Okay, bye bye."  # what the clip says (scripts/make_pad_clip.py)


def load_padding() -> Padding:
    with wave.open(str(PAD_CLIP)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return Padding(pcm.astype(np.float32) / 32768.0, PAD_TEXT)


class AsrRuntime:
    def __init__(self, settings: AsrSettings) -> None:
        self.settings = settings
        self.engine: WhisperEngine | None = None
        self.scheduler: InferenceScheduler | None = None
        self.vad: SileroVad | None = None
        self.ready = False
        self.admission: Admission | None = None
        s = settings
        if s.final_switch_scan not in ("missed", "always", "off"):
            raise ValueError(f"TANDEM_ASR_FINAL_SWITCH_SCAN must be 'missed', 'always' or 'off', not {s.final_switch_scan!r}")
        if not 0 <= s.speculate_after_s < s.min_silence_s:
            raise ValueError(f"TANDEM_ASR_SPECULATE_AFTER_S must be in [0, TANDEM_ASR_MIN_SILENCE_S), "
                             f"not {s.speculate_after_s}")
        if not 0 <= s.probe_recheck_above < 1:
            raise ValueError(f"TANDEM_ASR_PROBE_RECHECK_ABOVE must be in [0, 1), not {s.probe_recheck_above}")
        if not 0 <= s.onset_probe_s < 2.0:
            raise ValueError(f"TANDEM_ASR_ONSET_PROBE_S must be in [0, 2) (the switch probe's 2 s), "
                             f"not {s.onset_probe_s}")
        self.pacing = PacingOptions(text_backlog_s=s.catch_up_text_s or float("inf"),
                                    probe_backlog_s=s.catch_up_probe_s or float("inf"),
                                    interim_duty=s.interim_duty)
        self.stream_defaults = StreamOptions(
            languages=("en",), beam_size=s.beam_size, long_final_beam=s.long_final_beam, long_final_s=s.long_final_s,
            partial_interval_s=s.partial_interval_s, confirm_after_s=s.confirm_after_s,
            min_silence_s=s.min_silence_s, speculate_after_s=s.speculate_after_s,
            speculate_below_busy=s.speculate_below_busy, head_drafts=s.head_drafts, snap_cut_s=s.snap_cut_s,
            max_segment_s=s.max_segment_s, interim_in_pauses=s.interim_in_pauses,
            pair_constraint=s.pair_constraint,
            hysteresis=HysteresisOptions(windows=s.hysteresis_windows, threshold=s.hysteresis_threshold),
            switch_probe=s.switch_probe, final_switch_scan=s.final_switch_scan,
            probe_recheck_above=s.probe_recheck_above, probe_gaps=s.probe_gaps,
            onset_probe_s=s.onset_probe_s,
            short_text_chars=s.short_text_chars,
            vad_flush=s.vad_flush,
            padding=load_padding() if s.universal_padding else None, padding_cutoff_s=s.padding_cutoff_s,
            interim_quantum_s=s.interim_quantum_s or None, probe_quantum_s=s.probe_quantum_s or None,
            final_quantum_s=s.final_quantum_s or None,
            hallucination_guards=s.hallucination_guards, commit_prefix=s.commit_prefix,
            prompt_chars=s.prompt_chars, prompt_hygiene=s.prompt_hygiene,
        )

    def load(self) -> None:
        s = self.settings
        # One CTranslate2 replica more than the scheduler has workers: language detections (a
        # decoder step of a few ms) run inline on the streams' window threads, and with a replica
        # per worker they queued behind the workers' encodes and decodes (0.2 s under load).
        options = EngineOptions(compute_type=s.compute_type, device=s.device, intra_threads=s.intra_threads,
                                inter_threads=s.inference_threads + 1, prime=s.prime)
        if s.engine == "ct2":
            self.engine = Ct2WhisperEngine(s.model_dir / s.whisper_model, options)
        elif s.engine == "torch":
            from services.asr.torch_engine import TorchWhisperEngine  # needs requirements-torch.txt

            self.engine = TorchWhisperEngine(s.model_dir / s.whisper_model, options)
        else:
            raise ValueError(f"TANDEM_ASR_ENGINE must be 'ct2' or 'torch', not {s.engine!r}")
        self.vad = SileroVad(s.model_dir / "vad" / "silero_vad_v6.onnx")
        # Warm-up: one full window through every code path, before the scheduler's worker
        # threads exist. Measured (2-core AMD EPYC, CTranslate2 int8): a model whose first encode
        # ran after InferenceScheduler started encodes a 10 s window in 0.72-0.77 s for good,
        # against 0.44 s when the first encode came first (python -m bench.inference_profile).
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(16000 * 2) * 0.01).astype(np.float32)
        encoded = self.engine.encode(noise)
        self.engine.detect(encoded, ("en", "zh"))
        self.engine.decode(encoded, "en")
        self.vad.new_state().process(noise)
        stream_load = measure_stream_load(self.engine, s.partial_interval_s)
        log.info("admission: one stream costs about %.2f of an inference worker at start-up "
                 "(TANDEM_ASR_MAX_LOAD=%s x %d workers)", stream_load, s.max_load, s.inference_threads)
        self.admission = Admission(AdmissionOptions(max_streams=s.max_streams, max_load=s.max_load),
                                   stream_load, workers=s.inference_threads)
        ADMISSION_LOAD.set_function(self.admission.load)
        self.scheduler = InferenceScheduler(self.engine, max_batch=s.max_batch, workers=s.inference_threads,
                                            batching=s.batching)
        self.ready = True

    def new_stream(self, options: StreamOptions, slot: Slot | None = None) -> RecognitionStream:
        """A stream on the scheduler; its inference time and audio become `slot`'s meter."""
        assert self.scheduler is not None and self.vad is not None
        engine = self.scheduler.for_stream()
        stream = RecognitionStream(engine, self.vad, options)
        stream.on_window = INFERENCE_SECONDS.observe
        stream.on_suppressed = lambda reason: SUPPRESSED.labels(reason).inc()
        if slot is not None:
            slot.meter = lambda: (engine.busy_seconds(), stream.total / 16000)
        return stream

    def close(self) -> None:
        self.ready = False
        if self.scheduler is not None:
            self.scheduler.close()



def measure_stream_load(engine: WhisperEngine, partial_interval_s: float) -> float:
    """What one live stream costs, in inference workers, timed on the warm model: an interim
    window every `partial_interval_s` over speech (a 6 s window of the padding clip repeated:
    one encode and one greedy decode; the fastest of two runs)."""
    clip = load_padding().audio
    audio = np.tile(clip, int(np.ceil(6 * 16000 / len(clip))))[: 6 * 16000]
    took = []
    for _ in range(2):
        started = time.perf_counter()
        engine.decode(engine.encode(audio), "en")
        took.append(time.perf_counter() - started)
    return min(took) / partial_interval_s

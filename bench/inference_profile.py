"""Where a stream's inference time goes: every engine call of the code-switched streams, timed by kind.

    python -m bench.inference_profile [--manifest streams.jsonl]

Runs `RecognitionStream` in process on the engine the ASR service would load (settings from
TANDEM_ASR_*), every window (as a file upload gets), and prints per kind of call (encode by
mel length, decode by beam, language detection) the count, total and mean time and share.
No gRPC: this is the model cost the scheduler has to fit, not a latency measure.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import time
from pathlib import Path

from bench import manifest as manifest_mod
from services.asr.runtime import AsrRuntime, AsrSettings
from services.asr.stream import RecognitionStream
from services.common.settings import from_env


class TimedEngine:
    """The engine with every call timed into `totals` (kind -> [calls, seconds])."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.totals: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def _timed(self, kind: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.totals[kind][0] += 1
        self.totals[kind][1] += time.perf_counter() - t0
        return out

    def encode(self, audio, padding=None, quantum_s=None):
        frames = self.engine.encode_shape(audio, padding, quantum_s)[0]
        return self._timed(f"encode, {frames / 100:g} s mel", self.engine.encode, audio, padding, quantum_s)

    def decode(self, encoded, language, *, prompt="", prefix="", beam_size=1):
        return self._timed(f"decode, beam {beam_size}", self.engine.decode, encoded, language, prompt=prompt,
                           prefix=prefix, beam_size=beam_size)

    def detect(self, encoded, pair, last_seconds=None, span=None):
        return self._timed("language detection", self.engine.detect, encoded, pair, last_seconds, span)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inference_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path("../shared/eval/streams.jsonl"))
    args = parser.parse_args(argv)
    runtime = AsrRuntime(from_env(AsrSettings, "TANDEM_ASR_"))
    runtime.load()
    engine = TimedEngine(runtime.engine)
    audio_s, started = 0.0, time.perf_counter()
    for entry in (e for e in manifest_mod.load(args.manifest) if e.is_stream):
        options = dataclasses.replace(runtime.stream_defaults, languages=tuple(entry.languages))
        stream = RecognitionStream(engine, runtime.vad, options)
        pcm = entry.pcm().astype("float32") / 32768.0
        audio_s += len(pcm) / 16000
        for i in range(0, len(pcm), 1600):  # 100 ms chunks, a step after each
            stream.feed(pcm[i:i + 1600])
            stream.step()
        stream.finish()
    wall = time.perf_counter() - started
    total = sum(seconds for _, seconds in engine.totals.values())
    print(f"{audio_s:.1f} s of audio, {wall:.1f} s wall, {total:.1f} s in the engine "
          f"({total / audio_s:.2f} s per second of audio, {runtime.settings.engine})")
    print("| call | n | total (s) | mean (ms) | share |\n|---|---|---|---|---|")
    for kind, (n, seconds) in sorted(engine.totals.items(), key=lambda kv: -kv[1][1]):
        print(f"| {kind} | {n} | {seconds:.1f} | {seconds / n * 1000:.0f} | {seconds / total:.0%} |")
    runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

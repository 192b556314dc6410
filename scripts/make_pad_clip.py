"""Build the universal padding clip (services/asr/assets/pad_clip.wav) with espeak-ng.

The production design prepends a fixed ~2.5 s recording of "Okay, bye bye." to short
buffers so Whisper neither hallucinates nor wobbles its language token; the decoder is
then forced through the clip's known text, which is removed from the output. We make our
own clip: espeak-ng (Debian package `espeak-ng`, voice en-us, 115 wpm), resampled to
16 kHz mono, 0.2 s of silence after it. The committed WAV is what the service loads; this
script documents and reproduces it:  python scripts/make_pad_clip.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from clients.audio import read_wav, write_wav  # noqa: E402

TEXT = "Okay, bye bye."
OUT = Path(__file__).resolve().parent.parent / "services" / "asr" / "assets" / "pad_clip.wav"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "pad.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "115", "-w", str(raw), TEXT], check=True)
        pcm = read_wav(raw)  # converted to 16 kHz mono int16
    nonzero = np.nonzero(np.abs(pcm) > 200)[0]
    pcm = pcm[max(0, nonzero[0] - 800): nonzero[-1] + 800]
    peak = np.abs(pcm).max()
    pcm = (pcm.astype(np.float32) * (0.5 * 32767 / peak)).astype(np.int16)
    pcm = np.concatenate([pcm, np.zeros(3200, dtype=np.int16)])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_wav(OUT, pcm)
    with wave.open(str(OUT)) as w:
        print(f"wrote {OUT} ({w.getnframes() / w.getframerate():.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

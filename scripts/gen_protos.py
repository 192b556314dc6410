"""Generate the Python gRPC stubs for protos/ into gen/ (the one command: `make protos`).

Include paths: protos/, grpc_tools' well-known types, and googleapis-common-protos (for
google/rpc/status.proto). The output is not committed; `make setup` runs this.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import google.rpc
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    protos = ROOT / "protos"
    out = ROOT / "gen"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    files = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    googleapis = Path(list(google.rpc.__path__)[0]).parent.parent
    args = [
        "protoc",
        f"-I{protos}",
        f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
        f"-I{googleapis}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    rc = protoc.main(args)
    if rc != 0:
        return rc
    print(f"generated {len(files)} protos into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

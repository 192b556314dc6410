"""Start one Tandem service: `python -m services {asr|translate|session}`.

Settings come from the environment (`TANDEM_<SERVICE>_HOST`, `_PORT`, `_METRICS_PORT`, ...;
see README "Configuration"). The same command runs locally, in docker-compose and on k8s.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from services.common import server
from services.common.settings import ServerSettings, from_env

DEFAULT_PORTS = {"session": 50050, "asr": 50051, "translate": 50052}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services", description=__doc__)
    parser.add_argument("service", choices=sorted(DEFAULT_PORTS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prefix = f"TANDEM_{args.service.upper()}_"
    defaults = {} if f"{prefix}PORT" in os.environ else {"port": DEFAULT_PORTS[args.service]}
    settings = from_env(ServerSettings, prefix, **defaults)
    app = importlib.import_module(f"services.{args.service}.app")
    spec = app.build_spec()
    return server.run_forever(spec, settings)


if __name__ == "__main__":
    sys.exit(main())

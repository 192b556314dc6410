"""Probe a Tandem service's standard gRPC health endpoint (for container healthchecks).

    python -m services.common.healthcheck HOST:PORT [--service NAME] [--timeout S]

Calls grpc.health.v1.Health/Check once and exits 0 iff the status is SERVING; exits 1 for
any other status or RPC error (unreachable, timeout, unknown service). `--service ""`
(the default) asks for the server as a whole. Needs only grpcio and grpcio-health-checking.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, service: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    """Return (serving, status name or error description) for one Health/Check call."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            return False, f"{exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.healthcheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="HOST:PORT", help="address of the gRPC server")
    parser.add_argument("--service", default="", help="service name to check ('' = whole server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="RPC deadline in seconds (default 3)")
    args = parser.parse_args(argv)
    serving, detail = check(args.target, args.service, args.timeout)
    print(f"{args.target} {args.service or '<server>'}: {detail}", file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())

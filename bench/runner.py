"""Streams one entry through a live SessionService and records every response with its
arrival time on the stream's clock.

Real-time mode sends 100 ms chunks as a microphone would deliver them (chunk k leaves at
t0 + (k+1)·0.1 s); `wall(t) = t0 + t` is when the audio at stream time t was spoken, so
latencies include the capture delay a live user experiences. Fast mode sends as fast as
possible (compute-unaware: latencies are not meaningful there and are not reported).
"""

from __future__ import annotations

import dataclasses
import time

import grpc

from bench.manifest import Entry
from clients.client import session_config
from tandem.session.v1 import session_pb2, session_pb2_grpc

CHUNK_S = 0.1


@dataclasses.dataclass
class Trace:
    entry: Entry
    realtime: bool
    responses: list = dataclasses.field(default_factory=list)  # (arrival_s on the stream clock, response)
    error: str = ""
    wall_s: float = 0.0

    def events(self, kind: str):
        return [(t, getattr(r, kind)) for t, r in self.responses if r.WhichOneof("event") == kind]


def run(channel: grpc.Channel, entry: Entry, realtime: bool = True, translate: bool = True,
        timeout_s: float = 600.0, phrases: dict[str, list[str]] | None = None, interim_results: bool = True) -> Trace:
    pcm = entry.pcm()
    step = int(CHUNK_S * 16000)
    trace = Trace(entry, realtime)
    stub = session_pb2_grpc.SessionServiceStub(channel)
    t0 = time.monotonic()

    def requests():
        yield session_pb2.StreamSessionRequest(config=session_config(entry.languages, translate=translate,
                                                                 interim_results=interim_results, phrases=phrases))
        for k, i in enumerate(range(0, len(pcm), step)):
            if realtime:
                delay = t0 + (k + 1) * CHUNK_S - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield session_pb2.StreamSessionRequest(audio_content=pcm[i:i + step].tobytes())

    try:
        for response in stub.StreamSession(requests(), timeout=timeout_s):
            trace.responses.append((time.monotonic() - t0, response))
    except grpc.RpcError as err:
        trace.error = f"{err.code().name}: {err.details()}"
    trace.wall_s = time.monotonic() - t0
    return trace

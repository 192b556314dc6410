"""Tandem's gRPC services: asr, translate and session, started the same way (see __main__).

CTranslate2's OpenMP threads spin while waiting by default; with several model processes on
few cores (asr and translate share a 2-core machine) that spinning halves throughput
(measured: 0.65 s -> 0.32 s per window under load). Passive waiting is the default here;
set OMP_WAIT_POLICY explicitly to override.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

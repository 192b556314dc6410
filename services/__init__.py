"""Tandem's gRPC services: asr, translate and session, started the same way (see __main__).

Thread pools that spin while they wait, set before any of them loads (set either variable
explicitly to override):

- CTranslate2's OpenMP threads spin while waiting by default; with several model processes on
  few cores (asr and translate share a 2-core machine) that spinning halves throughput
  (measured: 0.65 s -> 0.32 s per window under load). Passive waiting is the default here.
- NumPy's OpenBLAS starts one thread per core for a matrix product (the ASR's log-Mel filter
  bank: 3 ms per 10 s window, on one thread as on two) and its threads then spin. At six live
  streams on 2 cores that spinning took a third of the services' CPU (bench.load N = 6: 1.19 ->
  0.83 cores) and held back Whisper's calls (final p95 1.67-1.81 -> 1.35-1.37 s): one thread here.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

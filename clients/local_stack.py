"""Run the three services locally as child processes: the embedded default.

`LocalStack` starts asr and translate on free 127.0.0.1 ports, then session dialling them,
waits until all report SERVING over grpc health, and on exit stops session first (it drains
its streams), then the backends, killing stragglers. Used by `tandem demo` and the benchmarks.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO

from clients import GEN_DIR, REPO_ROOT
from clients.client import TandemClient, TandemError

STOP_TIMEOUT_S = 20.0


class StackTimeout(TimeoutError):
    def __init__(self, message: str, services: list) -> None:
        super().__init__(message)
        self.services = services


class ServiceProcess:
    """One `python -m services NAME` child on a free port; knows its address and its logs."""

    LISTENING = re.compile(r"tandem-(\w+) listening on (\S+)")

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.address: str | None = None
        self.stdout_tail: collections.deque[str] = collections.deque(maxlen=50)
        self._listening = threading.Event()
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services", name], env=env, cwd=REPO_ROOT, text=True, bufsize=1,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
        )
        threading.Thread(target=self._read_stdout, name=f"{name}-stdout", daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout_tail.append(line.rstrip("\n"))
            m = self.LISTENING.search(line)
            if m and not self._listening.is_set():
                self.address = m.group(2)
                self._listening.set()

    def check_alive(self) -> None:
        rc = self.proc.poll()
        if rc is not None:
            raise ServiceFailed(self, f"exited with status {rc}")

    def wait_listening(self, deadline: float) -> str:
        while not self._listening.wait(0.2):
            self.check_alive()
            if time.monotonic() > deadline:
                raise ServiceFailed(self, "did not report its address in time")
        return self.address or ""

    def stderr_tail(self, lines: int = 40) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return "".join(collections.deque(self._stderr, maxlen=lines)).rstrip()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_or_kill(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"{self.name} did not stop in {timeout:g} s; killing it", file=sys.stderr)
            self.proc.kill()
            return self.proc.wait()


class ServiceFailed(RuntimeError):
    def __init__(self, service: ServiceProcess, what: str) -> None:
        self.service = service
        super().__init__(f"{service.name} {what}")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(GEN_DIR), str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_serving(services: list[ServiceProcess], deadline: float, log: IO[str], timeout: float,
                 label: str = "stack") -> None:
    """Poll grpc health of every service until all are SERVING; fail fast if one dies."""
    clients = {s.name: TandemClient(s.address or "") for s in services}
    start, last_report = time.monotonic(), 0.0
    try:
        while True:
            states = {}
            for s in services:
                s.check_alive()
                try:
                    states[s.name] = clients[s.name].health(timeout=2.0)
                except TandemError as exc:
                    states[s.name] = exc.code.name
            if all(v == "SERVING" for v in states.values()):
                return
            now = time.monotonic()
            if now > deadline:
                pending = ", ".join(f"{k} {v}" for k, v in states.items() if v != "SERVING")
                raise StackTimeout(f"services not SERVING after {timeout:g} s: {pending}", services)
            if now - last_report >= 5.0:
                last_report = now
                summary = ", ".join(f"{k} {v}" for k, v in states.items())
                print(f"{label}: loading models ... {summary} ({now - start:.0f} s)", file=log, flush=True)
            time.sleep(0.5)
    finally:
        for c in clients.values():
            c.close()


def stop_all(services: list[ServiceProcess], log: IO[str], label: str = "stack") -> None:
    """SIGTERM the session service first (it drains its streams), then the backends; kill stragglers."""
    session = [s for s in services if s.name == "session"]
    backends = [s for s in services if s.name != "session"]
    try:
        for group in (session, backends):
            for s in group:
                s.terminate()
            for s in group:
                s.wait_or_kill(STOP_TIMEOUT_S)
    except KeyboardInterrupt:  # interrupted again while draining: do not wait any longer
        for s in services:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
        raise
    if services:
        print(f"{label}: services stopped", file=log, flush=True)


class LocalStack:
    """Context manager: the three services up and SERVING; `session_address` to dial."""

    def __init__(self, log: IO[str] | None = None, startup_timeout: float = 180.0, label: str = "stack",
                 env: dict[str, str] | None = None, asr_workers: int = 1) -> None:
        self.asr_workers = asr_workers
        self.log = log or sys.stderr
        self.startup_timeout = startup_timeout
        self.label = label
        self.env = env or {}
        self.services: list[ServiceProcess] = []
        self.session_address = ""

    def __enter__(self) -> "LocalStack":
        try:
            self._start()
        except BaseException:
            stop_all(self.services, self.log, self.label)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop_all(self.services, self.log, self.label)


    def _start(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        print(f"{self.label}: starting asr and translate ...", file=self.log, flush=True)
        for name in ["asr"] * self.asr_workers + ["translate"]:
            prefix = f"TANDEM_{name.upper()}_"
            extra = dict(self.env)
            if name == "asr" and len(self.services) > 0 and "TANDEM_ASR_METRICS_PORT" in extra:
                extra.pop("TANDEM_ASR_METRICS_PORT")  # one metrics endpoint: the first worker's
            self.services.append(ServiceProcess(name, child_env({prefix + "HOST": "127.0.0.1", prefix + "PORT": "0",
                                                                 **extra})))
        addresses = [s.wait_listening(deadline) for s in self.services]
        asr_addr, translate_addr = ",".join(addresses[:-1]), addresses[-1]
        print(f"{self.label}: asr on {asr_addr}, translate on {translate_addr}; starting session ...",
              file=self.log, flush=True)
        self.services.append(ServiceProcess("session", child_env({
            "TANDEM_SESSION_HOST": "127.0.0.1", "TANDEM_SESSION_PORT": "0",
            "TANDEM_SESSION_ASR_TARGET": asr_addr, "TANDEM_SESSION_TRANSLATE_TARGET": translate_addr, **self.env,
        })))
        self.session_address = self.services[-1].wait_listening(deadline)
        wait_serving(self.services, deadline, self.log, self.startup_timeout, self.label)
        print(f"{self.label}: all services SERVING; session on {self.session_address}", file=self.log, flush=True)

"""The `tandem` command: live captions of a WAV file, and a one-command local demo.

    tandem caption talk.wav --languages zh,en [--target HOST:PORT] [--fast] [--no-translate] [--json]
    tandem demo [FILE] [--languages zh,en] [--fast]

`caption` streams the file to a running SessionService at real-time pace; `demo` first
starts asr, translate and session as subprocesses on free local ports, waits until they are
healthy, captions FILE (default: the shipped zh/en clip), and shuts them down again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
import unicodedata
from pathlib import Path
from typing import IO, Sequence

import grpc
from google.protobuf import json_format


from clients.audio import SAMPLE_RATE, AudioError, chunk_pcm, read_wav
from clients.client import TandemClient, TandemError
from clients.local_stack import LocalStack, ServiceFailed, StackTimeout
from tandem.asr.v1 import asr_pb2
from tandem.session.v1 import session_pb2

DEFAULT_TARGET = "127.0.0.1:50050"
DEMO_CLIP = Path(__file__).resolve().parent / "demo" / "demo_zh_en.wav"
STARTUP_TIMEOUT_S = 180.0

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_SPEECH_EVENTS = {
    asr_pb2.SPEECH_EVENT_TYPE_SPEECH_START: "speech start",
    asr_pb2.SPEECH_EVENT_TYPE_SPEECH_END: "speech end",
}


# -- rendering ------------------------------------------------------------------------------
def seconds(duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1
               for ch in text)


def fit_tail(text: str, width: int) -> str:
    """Keep the end of `text` within `width` terminal columns (captions grow at the end)."""
    if display_width(text) <= width:
        return text
    out: list[str] = []
    used = 1  # the ellipsis
    for ch in reversed(text):
        w = display_width(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "…" + "".join(reversed(out))


def status_text(status) -> str:
    """`NOT_FOUND no model for en->zh` from a google.rpc.Status."""
    name = _CODE_NAMES.get(status.code, f"code {status.code}")
    return f"{name} {status.message}".strip()


class CaptionRenderer:
    """Human-readable captions.

    On a TTY the current partial is redrawn in place (carriage return + erase line); off a
    TTY (CI logs) partials get their own `  ~ [zh] ...` lines, at most one per
    `partial_step_s` of audio per segment. Finals print as `[#3 zh 1.20–3.45s] text`, their
    translation beneath as `    → [en] ...` (prefixed `#3` if other lines came between).
    """

    def __init__(self, out: IO[str] | None = None, tty: bool | None = None, width: int | None = None,
                 partial_step_s: float = 1.0) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.width = width
        self.partial_step_s = partial_step_s
        self.session_id = ""
        self.finals = self.translations = self.translation_errors = self.switches = 0
        self._partial = ""  # TTY: the partial line currently drawn
        self._last_final_id: int | None = None  # the final the next translation would sit under
        self._partial_marks: dict[int, tuple[float, str]] = {}  # non-TTY throttle: segment -> (end_s, text)

    # output primitives
    def _columns(self) -> int:
        return self.width or shutil.get_terminal_size((100, 24)).columns

    def _line(self, text: str) -> None:
        if self.tty and self._partial:
            self.out.write("\r\x1b[2K")
        self.out.write(text + "\n")
        if self.tty and self._partial:
            self.out.write(self._partial)
        self.out.flush()

    def _draw_partial(self, text: str) -> None:
        self._partial = fit_tail(text, max(10, self._columns() - 1)) if text else ""
        self.out.write("\r\x1b[2K" + self._partial)
        self.out.flush()

    # events
    def handle(self, response: session_pb2.StreamSessionResponse) -> None:
        kind = response.WhichOneof("event")
        if response.session_id:
            self.session_id = response.session_id
        if kind == "session_started":
            s = response.session_started
            translation = "translation on" if s.translation_enabled else "translation off"
            self._line(f"session {s.session_id or response.session_id}: {'+'.join(s.language_codes)}, {translation}")
        elif kind == "segment":
            seg = response.segment
            self._final(seg) if seg.is_final else self._interim(seg)
        elif kind == "translation":
            self._translation(response.translation)
        elif kind == "language_switch":
            sw = response.language_switch
            self.switches += 1
            self._line(f"  ⇄ {sw.from_language_code or '?'} → {sw.to_language_code} at {seconds(sw.offset):.2f}s")
            self._last_final_id = None
        elif kind == "speech_event":
            ev = response.speech_event
            name = _SPEECH_EVENTS.get(ev.type, f"speech event {ev.type}")
            if not self.tty:  # on a TTY the partial line already shows speech activity
                self._line(f"  · {name} {seconds(ev.offset):.2f}s")
                self._last_final_id = None

    def _interim(self, seg: session_pb2.Segment) -> None:
        text = seg.text.strip()
        if not text:
            return
        line = f"  ~ [{seg.language_code}] {text}"
        if self.tty:
            self._draw_partial(line)
            return
        end = seconds(seg.end_offset)
        mark = self._partial_marks.get(seg.segment_id)
        if mark is None or (end - mark[0] >= self.partial_step_s and text != mark[1]):
            self._partial_marks[seg.segment_id] = (end, text)
            self._line(line)
            self._last_final_id = None

    def _final(self, seg: session_pb2.Segment) -> None:
        self.finals += 1
        self._partial_marks.pop(seg.segment_id, None)
        if self.tty and self._partial:
            self.out.write("\r\x1b[2K")
            self._partial = ""
        text = seg.text.strip() or "(no speech)"
        self._line(f"[#{seg.segment_id} {seg.language_code} "
                   f"{seconds(seg.start_offset):.2f}–{seconds(seg.end_offset):.2f}s] {text}")
        self._last_final_id = seg.segment_id

    def _translation(self, tr: session_pb2.Translation) -> None:
        ref = "" if tr.segment_id == self._last_final_id else f"#{tr.segment_id} "
        if tr.HasField("error") and tr.error.code != 0:
            self.translation_errors += 1
            self._line(f"    → {ref}(no translation: {status_text(tr.error)})")
        else:
            self.translations += 1
            self._line(f"    → {ref}[{tr.target_language_code}] {tr.text.strip()}")

    def close(self) -> None:
        if self.tty and self._partial:
            self.out.write("\r\x1b[2K")
            self.out.flush()
            self._partial = ""

    def summary(self) -> str:
        failed = f" ({self.translation_errors} failed)" if self.translation_errors else ""
        return (f"done: {self.finals} final segments, {self.translations + self.translation_errors} "
                f"translations{failed}, {self.switches} language switches; session {self.session_id or '?'}")


class JsonRenderer:
    """One JSON object per response: {"event": <kind>, "session_id": ..., <kind>: {...}}."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.session_id = ""

    def handle(self, response: session_pb2.StreamSessionResponse) -> None:
        self.session_id = response.session_id or self.session_id
        obj = {"event": response.WhichOneof("event")}
        obj.update(json_format.MessageToDict(response, preserving_proto_field_name=True))
        self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.out.flush()

    def close(self) -> None:
        pass

    def summary(self) -> str:
        return f"done: session {self.session_id or '?'}"


# -- commands -------------------------------------------------------------------------------
def parse_languages(value: str) -> list[str]:
    codes = [c.strip() for c in value.split(",") if c.strip()]
    if not 1 <= len(codes) <= 2:
        raise argparse.ArgumentTypeError("give one or two language codes, e.g. zh,en")
    return codes


def caption(target: str, path: Path, languages: Sequence[str], translate: bool, realtime: bool,
            as_json: bool, wait_s: float = 30.0) -> int:
    """Stream one WAV file to the session service at `target` and render what comes back."""
    info = sys.stderr if as_json else sys.stdout
    try:
        pcm = read_wav(path)
    except AudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    renderer = JsonRenderer() if as_json else CaptionRenderer()
    pace = "real time" if realtime else "fast"
    print(f"captioning {path} ({len(pcm) / SAMPLE_RATE:.1f} s, {'+'.join(languages)}, {pace}) via {target}",
          file=info, flush=True)
    with TandemClient(target) as client:
        try:
            _wait_quietly(client, wait_s, info)
            start = time.monotonic()
            for response in client.stream_session(chunk_pcm(pcm), languages, translate=translate,
                                                  realtime=realtime):
                renderer.handle(response)
        except (TandemError, TimeoutError) as exc:
            renderer.close()
            print(f"error: {exc}", file=sys.stderr)
            if getattr(exc, "code", None) == grpc.StatusCode.UNAVAILABLE:
                print("hint: is the session service running? `tandem demo` starts everything locally",
                      file=sys.stderr)
            return 1
        finally:
            renderer.close()
    print(f"{renderer.summary()} ({time.monotonic() - start:.1f} s)", file=info, flush=True)
    return 0


def _wait_quietly(client: TandemClient, wait_s: float, info: IO[str]) -> None:
    """Wait for SERVING (a server without health checking is taken as ready)."""
    told = []

    def on_wait(state: str, elapsed: float) -> None:
        if not told:
            print(f"waiting for {client.target} ({state}) ...", file=info, flush=True)
            told.append(True)

    try:
        client.wait_for_ready(timeout=wait_s, on_wait=on_wait)
    except TandemError as exc:
        if exc.code != grpc.StatusCode.UNIMPLEMENTED:
            raise


def demo(path: Path, languages: Sequence[str], translate: bool, realtime: bool, as_json: bool,
         startup_timeout: float = STARTUP_TIMEOUT_S) -> int:
    """Start asr + translate, then session (dialling them), wait for health, caption, stop all."""
    log = sys.stderr if as_json else sys.stdout
    if not path.is_file():
        print(f"error: {path}: no such file", file=sys.stderr)
        return 2
    previous_term = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with LocalStack(log=log, startup_timeout=startup_timeout, label="demo") as stack:
            return caption(stack.session_address, path, languages, translate, realtime, as_json, wait_s=5.0)
    except ServiceFailed as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        tail = exc.service.stderr_tail()
        print(f"--- {exc.service.name} stderr (last lines) ---\n{tail or '(empty)'}\n---", file=sys.stderr)
        return 1
    except StackTimeout as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        for s in exc.services:
            print(f"--- {s.name} stderr (last lines) ---\n{s.stderr_tail(15) or '(empty)'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted; stopping services", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_term)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--languages", type=parse_languages, default=["zh", "en"],
                       help="the language pair, e.g. zh,en (default) or ja,en")
        p.add_argument("--fast", action="store_true", help="send audio as fast as possible, not in real time")
        p.add_argument("--no-translate", dest="translate", action="store_false", help="captions only")
        p.add_argument("--json", action="store_true", help="one JSON object per event on stdout")

    p = sub.add_parser("caption", help="caption a WAV file with a running session service")
    p.add_argument("file", type=Path, help="WAV file (any rate/channels; converted to 16 kHz mono)")
    p.add_argument("--target", default=os.environ.get("TANDEM_TARGET", DEFAULT_TARGET),
                   help=f"session service HOST:PORT (default {DEFAULT_TARGET})")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the service to be SERVING")
    common(p)
    p = sub.add_parser("demo", help="start the services locally and caption FILE (default: the demo clip)")
    p.add_argument("file", type=Path, nargs="?", default=DEMO_CLIP, help="WAV file (default: shipped zh/en clip)")
    p.add_argument("--startup-timeout", type=float, default=STARTUP_TIMEOUT_S, help="seconds to wait for SERVING")
    common(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    realtime = not args.fast
    try:
        if args.command == "caption":
            return caption(args.target, args.file, args.languages, args.translate, realtime, args.json, args.wait)
        return demo(args.file, args.languages, args.translate, realtime, args.json, args.startup_timeout)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

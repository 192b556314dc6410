"""Caption rendering (finals, translations, errors, partials, JSON) and the client over a fake server."""

from __future__ import annotations

import io
import json
import threading
from concurrent import futures

import grpc
import numpy as np
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from clients import cli
from clients.audio import write_wav
from clients.client import TandemClient, TandemError
from tandem.asr.v1 import asr_pb2
from tandem.session.v1 import session_pb2, session_pb2_grpc


def dur(s: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(round(s * 1e9)))
    return d


def segment(sid, rev, text, lang="zh", start=1.2, end=3.45, final=False):
    return session_pb2.StreamSessionResponse(session_id="s-1", segment=session_pb2.Segment(
        segment_id=sid, revision=rev, is_final=final, text=text, language_code=lang,
        start_offset=dur(start), end_offset=dur(end)))


def translation(sid, text="", target="en", source="zh", error=None):
    return session_pb2.StreamSessionResponse(session_id="s-1", translation=session_pb2.Translation(
        segment_id=sid, text=text, source_language_code=source, target_language_code=target, error=error))


def started():
    return session_pb2.StreamSessionResponse(session_id="s-1", session_started=session_pb2.SessionStarted(
        session_id="s-1", language_codes=["zh", "en"], translation_enabled=True))


def switch(offset=4.2):
    return session_pb2.StreamSessionResponse(session_id="s-1", language_switch=asr_pb2.LanguageSwitch(
        from_language_code="zh", to_language_code="en", offset=dur(offset)))


def speech(kind, offset):
    return session_pb2.StreamSessionResponse(session_id="s-1", speech_event=asr_pb2.SpeechEvent(
        type=kind, offset=dur(offset)))


NOT_FOUND = status_pb2.Status(code=grpc.StatusCode.NOT_FOUND.value[0], message="no model for en->zh")

CONVERSATION = [
    started(),
    speech(asr_pb2.SPEECH_EVENT_TYPE_SPEECH_START, 0.3),
    segment(3, 0, "甚至", end=1.5),
    segment(3, 1, "甚至出现", end=1.8),  # < 1 s of audio later: not repeated off a TTY
    segment(3, 2, "甚至出现交易几乎", end=2.6),
    segment(3, 3, "甚至出现交易几乎停滞的情况", final=True),
    translation(3, "There was even a near standstill in trading."),
    switch(4.2),
    segment(4, 0, "he was not", lang="en", start=5.2, end=6.0),
    segment(4, 1, "he was not an ill disposed young man", lang="en", start=5.2, end=8.2, final=True),
    segment(5, 0, "一二线", start=8.9, end=9.5),
    translation(4, target="zh", source="en", error=NOT_FOUND),
]


def render(responses, **kwargs):
    out = io.StringIO()
    renderer = cli.CaptionRenderer(out=out, **kwargs)
    for r in responses:
        renderer.handle(r)
    renderer.close()
    return out.getvalue(), renderer


def test_finals_translations_and_errors_off_a_tty():
    text, renderer = render(CONVERSATION, tty=False)
    assert text.splitlines() == [
        "session s-1: zh+en, translation on",
        "  · speech start 0.30s",
        "  ~ [zh] 甚至",
        "  ~ [zh] 甚至出现交易几乎",
        "[#3 zh 1.20–3.45s] 甚至出现交易几乎停滞的情况",
        "    → [en] There was even a near standstill in trading.",
        "  ⇄ zh → en at 4.20s",
        "  ~ [en] he was not",
        "[#4 en 5.20–8.20s] he was not an ill disposed young man",
        "  ~ [zh] 一二线",
        "    → #4 (no translation: NOT_FOUND no model for en->zh)",
    ]
    assert "\r" not in text and "\x1b" not in text
    assert (renderer.finals, renderer.translations, renderer.translation_errors, renderer.switches) == (2, 1, 1, 1)
    assert renderer.summary() == "done: 2 final segments, 2 translations (1 failed), 1 language switches; session s-1"


def test_translation_error_directly_under_its_final():
    text, _ = render([segment(7, 0, "hello", lang="en", final=True),
                      translation(7, target="zh", source="en", error=NOT_FOUND)], tty=False)
    assert text.splitlines() == ["[#7 en 1.20–3.45s] hello",
                                 "    → (no translation: NOT_FOUND no model for en->zh)"]


def test_partials_redraw_in_place_on_a_tty():
    text, _ = render(CONVERSATION[2:7], tty=True, width=40)
    assert text.count("\r\x1b[2K") >= 3
    assert "\r\x1b[2K  ~ [zh] 甚至出现\r" in text  # every revision is drawn
    final_line = "[#3 zh 1.20–3.45s] 甚至出现交易几乎停滞的情况\n"
    assert final_line in text and text.endswith("    → [en] There was even a near standstill in trading.\n")
    assert "speech" not in render([CONVERSATION[1]], tty=True)[0]


def test_long_partials_are_cut_to_the_terminal_width():
    line = cli.fit_tail("  ~ [zh] " + "字" * 50, 20)
    assert line.startswith("…") and line.endswith("字") and cli.display_width(line) <= 20


def test_json_renderer_prints_one_object_per_event():
    out = io.StringIO()
    renderer = cli.JsonRenderer(out=out)
    for r in CONVERSATION:
        renderer.handle(r)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(events) == len(CONVERSATION)
    assert events[0]["event"] == "session_started"
    final = events[5]
    assert final["event"] == "segment" and final["segment"]["is_final"] is True
    assert final["segment"]["text"] == "甚至出现交易几乎停滞的情况" and final["segment"]["segment_id"] == "3"
    assert events[-1]["translation"]["error"]["code"] == grpc.StatusCode.NOT_FOUND.value[0]


# -- the client and `tandem caption` against an in-process fake SessionService ---------------
class FakeSession(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, abort_with=None):
        self.abort_with = abort_with
        self.config = None
        self.audio_bytes = 0
        self.done = threading.Event()

    def StreamSession(self, request_iterator, context):
        first = next(request_iterator)
        self.config = first.config
        if self.abort_with:
            context.abort(self.abort_with, "language_codes: 'xx' is not supported")
        yield session_pb2.StreamSessionResponse(session_id="s-1", session_started=session_pb2.SessionStarted(
            session_id="s-1", language_codes=list(first.config.recognition.language_codes),
            translation_enabled=first.config.translation.enabled))
        for req in request_iterator:
            assert req.WhichOneof("streaming_request") == "audio_content"
            self.audio_bytes += len(req.audio_content)
        end = self.audio_bytes / 32000
        yield segment(0, 0, "你好", start=0.0, end=end, final=True)
        yield translation(0, "Hello")
        self.done.set()

    def GetTranscript(self, request, context):
        if request.session_id != "s-1":
            context.abort(grpc.StatusCode.NOT_FOUND, f"no session {request.session_id}")
        return session_pb2.GetTranscriptResponse(session_id="s-1", state=session_pb2.SESSION_STATE_COMPLETED)


@pytest.fixture
def fake_server():
    servers = []

    def start(servicer):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        session_pb2_grpc.add_SessionServiceServicer_to_server(servicer, server)
        health_servicer = health.HealthServicer()
        health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for s in servers:
        s.stop(0)


def test_client_sends_config_then_audio(fake_server):
    fake = FakeSession()
    target = fake_server(fake)
    with TandemClient(target) as client:
        client.wait_for_ready(timeout=5)
        assert client.health() == "SERVING"
        chunks = [b"\x01\x00" * 1600] * 3
        responses = list(client.stream_session(chunks, ["zh", "en"], translate=False, realtime=False))
        assert client.get_transcript("s-1").state == session_pb2.SESSION_STATE_COMPLETED
        with pytest.raises(TandemError, match="NOT_FOUND: no session nope"):
            client.get_transcript("nope")
    rec = fake.config.recognition
    assert (rec.encoding, rec.sample_rate_hertz, rec.audio_channel_count) == (asr_pb2.AUDIO_ENCODING_LINEAR16, 16000, 1)
    assert list(rec.language_codes) == ["zh", "en"] and rec.interim_results
    assert fake.config.translation.enabled is False
    assert fake.audio_bytes == 9600
    assert [r.WhichOneof("event") for r in responses] == ["session_started", "segment", "translation"]


def test_caption_command_converts_and_renders(fake_server, tmp_path, capsys):
    fake = FakeSession()
    target = fake_server(fake)
    stereo = (np.random.default_rng(0).standard_normal((22050, 2)) * 1000).astype("<i2")  # 0.5 s, 44.1 kHz
    write_wav(tmp_path / "in.wav", stereo, rate=44100)
    rc = cli.main(["caption", str(tmp_path / "in.wav"), "--target", target, "--fast"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "[#0 zh 0.00–0.50s] 你好\n    → [en] Hello\n" in out
    assert abs(fake.audio_bytes - 16000) <= 2


def test_caption_command_reports_status_codes(fake_server, tmp_path, capsys):
    target = fake_server(FakeSession(abort_with=grpc.StatusCode.INVALID_ARGUMENT))
    write_wav(tmp_path / "in.wav", np.zeros(1600, np.int16))
    rc = cli.main(["caption", str(tmp_path / "in.wav"), "--target", target, "--fast", "--languages", "xx,en"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"error: session at {target}: INVALID_ARGUMENT: language_codes: 'xx' is not supported" in err


def test_caption_command_json(fake_server, tmp_path, capsys):
    target = fake_server(FakeSession())
    write_wav(tmp_path / "in.wav", np.zeros(3200, np.int16))
    assert cli.main(["caption", str(tmp_path / "in.wav"), "--target", target, "--fast", "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["session_started", "segment", "translation"]

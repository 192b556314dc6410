"""Integration test: the real translate server (real zh->en model) over a real gRPC channel."""

from __future__ import annotations

import dataclasses
import os
import re
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.server import start
from services.common.settings import ServerSettings, default_model_dir
from services.translate.app import SERVICE_NAME, TranslateSettings, build_spec
from tandem.translate.v1 import translate_pb2, translate_pb2_grpc

pytestmark = pytest.mark.integration

ZH_EN = default_model_dir() / "translate" / "zh-en" / "tandem.json"


@pytest.fixture(scope="module")
def channel():
    if not ZH_EN.is_file():
        message = f"zh->en model missing ({ZH_EN}); run `make models`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    settings = dataclasses.replace(TranslateSettings(), model_dir=default_model_dir(), beam_size=2)
    server = start(build_spec(settings), ServerSettings(host="127.0.0.1", port=0))
    ch = None
    try:
        server.wait_ready(120)
        ch = grpc.insecure_channel(server.address)
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch
    finally:
        if ch is not None:
            ch.close()
        server.stop(1)


@pytest.fixture()
def stub(channel):
    return translate_pb2_grpc.TranslateServiceStub(channel)


def _englishness(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(c.isascii() for c in letters) / max(1, len(letters))


def test_health_serving_after_warm_up(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_list_language_pairs(stub) -> None:
    pairs = stub.ListLanguagePairs(translate_pb2.ListLanguagePairsRequest(), timeout=5).language_pairs
    assert ("zh", "en") in {(p.source_language_code, p.target_language_code) for p in pairs}
    assert all(p.model for p in pairs)


def test_translate_zh_en(stub) -> None:
    texts = ["我明天要去广州开会。", "请问最近的地铁站在哪里？", "", "这个项目的截止日期是下周五。"]
    reply = stub.Translate(
        translate_pb2.TranslateRequest(texts=texts, source_language_code="zh-Hans", target_language_code="en"), timeout=30
    )
    out = list(reply.translations)
    assert len(out) == 4 and out[2] == ""
    for text in (out[0], out[1], out[3]):
        assert text and _englishness(text) > 0.95, text
        assert "\u2581" not in text
    assert "Guangzhou" in out[0]
    assert re.search(r"\b(subway|metro|station)\b", out[1], re.I), out[1]
    assert "Friday" in out[3]
    assert reply.model  # the name from tandem.json


def test_translate_without_deadline(stub) -> None:
    reply = stub.Translate(translate_pb2.TranslateRequest(texts=["你好，世界！"], source_language_code="zh", target_language_code="en"))
    assert "world" in reply.translations[0].lower()


def test_translate_missing_direction_is_not_found(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Translate(translate_pb2.TranslateRequest(texts=["hello"], source_language_code="en", target_language_code="zh-Hans"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "en->zh-Hans" in err.value.details() and "zh->en" in err.value.details()


@pytest.mark.parametrize(
    "source, target, texts, needle",
    [
        ("klingon", "en", ["x"], "language code"),
        ("zh", "zh-Hant", ["你好"], "same"),
        ("zh", "en", ["你好"] * 1000, "too many"),
        ("zh", "en", ["你" * 5000], "too long"),
    ],
)
def test_translate_invalid_argument(stub, source, target, texts, needle) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Translate(translate_pb2.TranslateRequest(texts=texts, source_language_code=source, target_language_code=target), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()


def test_streaming_translate_mixed(stub) -> None:
    items = [
        (1, "我明天要去广州开会。", "zh-Hans", "en"),
        (2, "hello", "en", "zh-Hans"),  # no model: error in this item only
        (3, "今天天气很好。", "zh", "en"),
        (4, "x", "??", "en"),  # bad code
        (5, "", "zh", "en"),
        (6, "上海是中国最大的城市之一。", "zh-CN", "en-US"),
    ]
    requests = (
        translate_pb2.StreamingTranslateRequest(segment_id=i, text=t, source_language_code=s, target_language_code=g)
        for i, t, s, g in items
    )
    replies = {r.segment_id: r for r in stub.StreamingTranslate(requests, timeout=60)}
    assert sorted(replies) == [1, 2, 3, 4, 5, 6]
    for sid in (1, 3, 6):
        r = replies[sid]
        assert r.error.code == 0 and r.text and _englishness(r.text) > 0.95, r
        assert r.model and r.latency.ToNanoseconds() > 0
    assert "Guangzhou" in replies[1].text and "Shanghai" in replies[6].text
    assert (replies[6].source_language_code, replies[6].target_language_code) == ("zh-CN", "en-US")
    assert replies[2].error.code == grpc.StatusCode.NOT_FOUND.value[0] and replies[2].text == ""
    assert "en->zh-Hans" in replies[2].error.message
    assert replies[4].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert replies[5].error.code == 0 and replies[5].text == ""


def test_streaming_translate_concurrent_streams(stub) -> None:
    """Several streams at once (items are batched across them); each gets its own answers."""
    from concurrent.futures import ThreadPoolExecutor

    def run(k: int) -> dict[int, str]:
        reqs = (
            translate_pb2.StreamingTranslateRequest(segment_id=k * 10 + j, text=t, source_language_code="zh", target_language_code="en")
            for j, t in enumerate(["广州很热。", "我喜欢喝茶。"])
        )
        return {r.segment_id: r.text for r in stub.StreamingTranslate(reqs, timeout=60)}

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(4)))
    for k, res in enumerate(results):
        assert sorted(res) == [k * 10, k * 10 + 1]
        assert "Guangzhou" in res[k * 10] and "tea" in res[k * 10 + 1].lower()


def test_unavailable_until_models_load(tmp_path) -> None:
    """No models: warm-up fails, health stays NOT_SERVING, calls answer UNAVAILABLE."""
    server = start(build_spec(TranslateSettings(model_dir=tmp_path)), ServerSettings(host="127.0.0.1", port=0))
    try:
        deadline = time.monotonic() + 30
        while server.failed is None and time.monotonic() < deadline:  # wait_ready() waits out its timeout on failure
            time.sleep(0.05)
        assert isinstance(server.failed, RuntimeError) and "no translation models" in str(server.failed)
        with grpc.insecure_channel(server.address) as ch:
            health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
            stub = translate_pb2_grpc.TranslateServiceStub(ch)
            with pytest.raises(grpc.RpcError) as err:
                stub.Translate(translate_pb2.TranslateRequest(texts=["你好"], source_language_code="zh", target_language_code="en"), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            req = translate_pb2.StreamingTranslateRequest(segment_id=7, text="x", source_language_code="zh", target_language_code="en")
            (reply,) = list(stub.StreamingTranslate(iter([req]), timeout=5))
            assert reply.segment_id == 7 and reply.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    finally:
        server.stop(0)

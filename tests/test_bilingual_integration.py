"""Bilingual mechanisms on the real stack and real audio: configured Chinese script, a single
forced language, phrase-list validation, and silence/noise producing no text."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from services.asr.language import convert_script
from tests.conftest import load_jsonl, read_wav
from tests.test_pipeline import finals, run_session, session_config
from tandem.asr.v1 import asr_pb2
from tandem.session.v1 import session_pb2, session_pb2_grpc

pytestmark = pytest.mark.integration


def _clip(eval_dir, clip_id):
    clip = next(c for c in load_jsonl(eval_dir / "manifest.jsonl") if c["id"] == clip_id)
    return read_wav(eval_dir / clip["path"])


def test_zh_hant_is_a_valid_language_and_output_is_traditional(stack, eval_dir):
    responses = run_session(stack.channel, _clip(eval_dir, "zh_wenet_1"), ["zh-Hant", "en"], translate=False)
    texts = [s.text for s in finals(responses)]
    assert texts and all(s.language_code == "zh-Hant" for s in finals(responses))
    joined = "".join(texts)
    assert convert_script(joined, "zh-Hant") == joined  # already Traditional
    assert convert_script(joined, "zh-Hans") != joined  # and it had something to convert


def test_one_language_forces_it_and_never_switches(stack, eval_dir):
    pcm = read_wav(eval_dir / load_jsonl(eval_dir / "streams.jsonl")[0]["path"])  # ja then en
    responses = run_session(stack.channel, pcm, ["en"], translate=False)
    assert finals(responses) and all(s.language_code == "en" for s in finals(responses))
    assert not any(r.WhichOneof("event") == "language_switch" for r in responses)


def test_phrase_list_for_an_unconfigured_language_is_invalid(stack):
    stub = session_pb2_grpc.SessionServiceStub(stack.channel)
    config = session_config(["zh", "en"], translate=False)
    config.recognition.phrase_lists.append(asr_pb2.PhraseList(language_code="ja", phrases=["東京"]))
    with pytest.raises(grpc.RpcError) as err:
        list(stub.StreamSession(iter([session_pb2.StreamSessionRequest(config=config)]), timeout=30))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "phrase_lists" in err.value.details()


def test_silence_and_noise_produce_no_text(stack):
    rng = np.random.default_rng(3)
    audio = np.concatenate([np.zeros(32000), rng.standard_normal(32000) * 10 ** (-45 / 20),
                            np.concatenate([np.zeros(6000), rng.standard_normal(2000) * 0.2] * 4)])
    pcm = np.clip(audio * 32767, -32768, 32767).astype("<i2")
    responses = run_session(stack.channel, pcm, ["ja", "en"], translate=False)
    assert not [s.text for s in finals(responses) if s.text]

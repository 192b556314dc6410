"""Unit tests of the session's pure bookkeeping and of the ASR config validation."""

from __future__ import annotations

import pytest

from services.asr.servicer import ConfigError, stream_options
from services.asr.stream import StreamOptions
from services.session.routing import LeastLoaded, SegmentIds, TranscriptStore, translation_target
from tandem.asr.v1 import asr_pb2


def test_segment_ids_unique_increasing_and_stable_across_revisions():
    ids = SegmentIds()
    assert [ids.session_id_for(u) for u in (0, 0, 0, 1, 1, 2, 0)] == [1, 1, 1, 2, 2, 3, 1]


def test_translation_goes_to_the_other_language():
    assert translation_target("zh-Hans", ("zh-Hans", "en")) == "en"
    assert translation_target("en", ("zh-Hans", "en")) == "zh-Hans"
    assert translation_target("en", ("en",)) is None


def test_transcript_store_evicts_oldest():
    store = TranscriptStore(capacity=2)
    for key in "abc":
        store.put(key, key.upper())
    assert store.get("a") is None and store.get("c") == "C"


def _config(**kwargs):
    base = dict(encoding=asr_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000, language_codes=["zh", "en"])
    base.update(kwargs)
    return asr_pb2.RecognitionConfig(**base)


def test_config_validation_accepts_a_pair_and_rejects_bad_input():
    opts = stream_options(_config(initial_language_code="en"), StreamOptions(languages=("en",)))
    assert opts.languages == ("zh", "en") and opts.initial_language == "en"
    for bad, message in [
        (dict(sample_rate_hertz=44100), "16000"),
        (dict(audio_channel_count=2), "audio_channel_count"),
        (dict(language_codes=[]), "one or two"),
        (dict(language_codes=["zh", "en", "ja"]), "one or two"),
        (dict(language_codes=["xx", "en"]), "unsupported"),
        (dict(initial_language_code="ja"), "initial_language_code"),
    ]:
        with pytest.raises(ConfigError, match=message):
            stream_options(_config(**bad), StreamOptions(languages=("en",)))


def test_least_loaded_spreads_sessions_over_workers():
    workers = LeastLoaded(["a", "b", "c"])
    picks = [workers.acquire() for _ in range(4)]
    assert [p[1] for p in picks] == ["a", "b", "c", "a"]
    workers.release(1)
    workers.release(2)
    assert workers.acquire()[1] in ("b", "c")
    counts = workers.open_counts()
    assert counts[0] == 2 and sorted(counts[1:]) == [0, 1]

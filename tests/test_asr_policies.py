"""Unit tests of the ASR's pure policy objects (no models): VAD segmentation, LocalAgreement,
language pair restriction, hysteresis, short-text script rules, config validation."""

from __future__ import annotations

import numpy as np
import pytest

from services.asr.commit import LocalAgreement, join_units, units
from services.asr.language import (
    HysteresisOptions, SwitchDetector, UnsupportedLanguage, canonical_code, convert_script, restrict_to_pair,
    script_contradiction, script_language, whisper_code,
)
from services.asr.vad import SegmenterOptions, SpeechSegmenter


def test_segmenter_needs_min_speech_then_min_silence():
    seg = SpeechSegmenter(SegmenterOptions(min_speech_frames=3, min_silence_frames=4))
    assert seg.push(np.array([0.9, 0.9, 0.1])) == []  # two frames are not speech yet
    events = seg.push(np.array([0.9, 0.9, 0.9]))
    assert [(e.kind, e.frame) for e in events] == [("start", 3)]
    # a short dip (3 frames) does not end speech; a value between the thresholds does not count as silence
    assert seg.push(np.array([0.1, 0.1, 0.1, 0.9, 0.4, 0.4, 0.4, 0.4])) == []
    events = seg.push(np.array([0.1, 0.1, 0.1, 0.1]))
    assert [(e.kind, e.frame) for e in events] == [("end", 14)]
    assert not seg.in_speech


def test_units_split_cjk_by_character_and_others_by_word():
    assert units("Hello, world") == ["Hello,", "world"]
    assert units("你好 world") == ["你", "好", "world"]
    assert units("그는 길을") == ["그는", "길을"]  # Hangul is spaced: word units
    assert join_units(["你", "好", "world", "again"]) == "你好world again"


def test_local_agreement_commits_only_the_agreed_prefix():
    la = LocalAgreement(2)
    assert la.insert(units("the cat")) == []
    assert la.insert(units("the cat sat")) == ["the", "cat"]
    assert la.tentative == ["sat"]
    assert la.insert(units("The cat, sat on")) == ["sat"]  # case and punctuation do not block agreement
    assert la.committed == ["the", "cat", "sat"]
    assert la.insert(units("a dog")) == []  # a disagreeing hypothesis never takes back committed units
    assert la.committed == ["the", "cat", "sat"]
    assert 0 < la.stability() <= 1


def test_codes_and_pair_restriction():
    assert canonical_code("ZH-hans") == "zh-Hans" and canonical_code("en") == "en"
    assert whisper_code("zh-Hant") == "zh" and whisper_code("ja") == "ja"
    with pytest.raises(UnsupportedLanguage):
        whisper_code("xx")
    probs = {"en": 0.2, "ja": 0.2, "es": 0.6}  # Spanish wins unconstrained
    assert restrict_to_pair(probs, ("ja", "en")) == {"ja": 0.5, "en": 0.5}
    assert restrict_to_pair({"zh": 0.3, "en": 0.1}, ("zh-Hans", "en"))["zh-Hans"] == pytest.approx(0.75)
    assert restrict_to_pair({}, ("ja", "en")) == {"ja": 0.5, "en": 0.5}


def test_hysteresis_needs_consecutive_confident_windows():
    det = SwitchDetector("ja", HysteresisOptions(windows=2, threshold=0.8))
    assert not det.vote("en", 0.95, index=1)
    assert not det.vote("ja", 0.99, index=2)  # interrupted: the run starts again
    assert not det.vote("en", 0.7, index=3)  # not confident enough: no vote
    assert not det.vote("en", 0.9, index=4)
    assert det.vote("en", 0.9, index=5)
    assert det.committed == "en" and det.switch_index == 4


@pytest.mark.parametrize("text, pair, expected", [
    ("えーと", ("ja", "en"), "ja"),
    ("네", ("ko", "en"), "ko"),
    ("ok", ("ja", "en"), "en"),
    ("ok", ("ja", "es"), "es"),  # Latin: the pair's only Latin-script language
    ("ok", ("es", "en"), None),  # two Latin-script languages: ambiguous
    ("ok", ("vi", "en"), "en"),
    ("được", ("vi", "en"), "vi"),
    ("日本", ("ja", "zh"), None),  # Han alone: ambiguous between ja and zh
    ("123", ("ja", "en"), None),
    ("嗯", ("zh", "en"), None),
])
def test_short_text_script_rules(text, pair, expected):
    assert script_language(text, pair) == expected


@pytest.mark.parametrize("text, language, pair, expected", [
    ("See you.", "ja", ("ja", "en"), "en"),  # English words decoded under the ja token
    ("水をマレーシアから", "en", ("ja", "en"), "ja"),
    ("水をマレーシアから", "ja", ("ja", "en"), None),
    ("See you.", "en", ("ja", "en"), None),
    ("广州市房地产", "en", ("zh", "en"), None),  # Han alone proves nothing (shared with ja)
    ("Hola amigos", "es", ("es", "en"), None),
    ("", "ja", ("ja", "en"), None),
])
def test_script_contradiction(text, language, pair, expected):
    assert script_contradiction(text, language, pair) == expected


def test_chinese_script_conversion():
    assert convert_script("廣州市", "zh-Hans") == "广州市"
    assert convert_script("广州市", "zh-Hant") == "廣州市"
    assert convert_script("hello", "en") == "hello"


def test_out_of_range_switch_scan_and_probe_settings_are_refused_at_start_up():
    from services.asr.runtime import AsrRuntime, AsrSettings

    with pytest.raises(ValueError, match="TANDEM_ASR_FINAL_SWITCH_SCAN"):
        AsrRuntime(AsrSettings(final_switch_scan="sometimes"))
    with pytest.raises(ValueError, match="TANDEM_ASR_PROBE_RECHECK_ABOVE"):
        AsrRuntime(AsrSettings(probe_recheck_above=1.5))
    defaults = AsrRuntime(AsrSettings()).stream_defaults
    assert (defaults.final_switch_scan, defaults.probe_recheck_above) == ("missed", 0.2)

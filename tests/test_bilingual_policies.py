"""Unit tests of the pure bilingual policies: final-language decision (hysteresis across
segments, short-text rule) and hallucination guards."""

from __future__ import annotations

from services.asr import guards
from services.asr.language import HysteresisOptions, decide_final_language

PAIR = ("ja", "en")
H = HysteresisOptions(windows=2, threshold=0.75)


def test_same_language_is_kept_and_committed():
    d = decide_final_language(("en", 0.9), [("en", 0.9)], "en", "four queen of clubs", PAIR, H)
    assert d.language == "en" and d.commit


def test_switch_needs_consecutive_confident_votes():
    text = "水をマレーシアから買わなくてはならないのです"
    assert decide_final_language(("ja", 0.99), [("ja", 0.95)], "en", text, PAIR, H).language == "ja"
    weak = decide_final_language(("ja", 0.6), [("ja", 0.95)], "en", text, PAIR, H)
    assert weak.language == "en" and not weak.commit  # a false switch is worse than a late one
    interrupted = decide_final_language(("ja", 0.99), [("ja", 0.9), ("en", 0.8)], "en", text, PAIR, H)
    assert interrupted.language == "en"


def test_fillers_never_flip_the_committed_language():
    for filler, pair in (("えー", PAIR), ("um", PAIR), ("嗯", ("zh", "en")), ("Uh.", ("ko", "en"))):
        d = decide_final_language(("ja", 0.99), [("ja", 0.99), ("ja", 0.99)], "en" if pair == PAIR else pair[0],
                                  filler, pair, H)
        assert not d.commit, filler
    # the fragment itself is tagged by its script, ambiguous ones keep the committed language
    assert decide_final_language(("en", 0.9), [], "en", "えー", PAIR, H).language == "ja"
    assert decide_final_language(("ja", 0.9), [], "zh", "嗯", ("zh", "ja"), H).language == "zh"


def test_first_segment_commits_whatever_it_is():
    d = decide_final_language(("ja", 0.8), [], None, "客観的実在の判断的知識", PAIR, H)
    assert d.language == "ja" and d.commit


def test_guards_drop_no_speech_and_known_hallucinations():
    assert guards.check("Thanks for watching!", 0.7, -1.2) == ("", "no_speech")
    assert guards.check("Thanks for watching!", 0.1, -0.9)[1] == "known_phrase"
    assert guards.check("ご視聴ありがとうございました", 0.2, -0.5)[1] == "known_phrase"
    text, reason = guards.check("Thank you.", 0.05, -0.2)  # a confident short "thank you" is speech
    assert text == "Thank you." and reason is None


def test_guards_collapse_repetition_loops():
    text, reason = guards.check("Seven of clubs. Seven of clubs. Seven of clubs.", 0.0, -0.3)
    assert text == "Seven of clubs." and reason == "repetition"
    text, reason = guards.check("no no no no no no no no no no no no no no no no no no", 0.0, -0.3)
    assert text == "" and reason == "repetition"
    assert guards.check("He might even have been made amiable himself.", 0.0, -0.2) == (
        "He might even have been made amiable himself.", None)


def test_padding_echo_is_stripped_but_a_genuine_okay_stays():
    from services.asr.guards import strip_padding_echo

    pad = "Okay, bye bye."
    assert strip_padding_echo("Okay. Bye bye.", pad) == ""
    assert strip_padding_echo("Bye bye. Seven of clubs.", pad) == "Seven of clubs."
    assert strip_padding_echo("Bye.", pad) == ""
    assert strip_padding_echo("Okay, let's start.", pad) == "Okay, let's start."
    assert strip_padding_echo("Okay.", pad) == "Okay."
    assert strip_padding_echo("水をマレーシアから", pad) == "水をマレーシアから"
    assert strip_padding_echo("He said bye bye.", pad) == "He said bye bye."

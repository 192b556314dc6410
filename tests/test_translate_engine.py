"""Unit tests of services.translate.engine: codes, registry, batching, and a real model load.

The load test builds a tiny random CTranslate2 Transformer and a sentencepiece model at test
time (no download), so directions we have no real model for are exercised end to end.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import pytest

from services.translate import engine as eng

# ----------------------------------------------------------------------------- codes


@pytest.mark.parametrize(
    "code, expected",
    [
        ("zh", "zh"), ("zh-Hans", "zh"), ("zh-Hant", "zh"), ("zh-CN", "zh"), ("zh-TW", "zh"),
        ("zh_Hant_TW", "zh"), ("cmn", "zh"), ("EN", "en"), ("en-US", "en"), ("ja", "ja"),
        ("ko-KR", "ko"), ("vi", "vi"), ("eng", "en"), (" ja ", "ja"),
    ],
)
def test_normalize_language(code: str, expected: str) -> None:
    assert eng.normalize_language(code) == expected


@pytest.mark.parametrize("code", ["", "x", "qq", "english", "zh--Hans", "12", "zh-", "en US", "ja-toolongsubtag"])
def test_normalize_language_rejects(code: str) -> None:
    with pytest.raises(eng.InvalidArgument):
        eng.normalize_language(code)


def test_detokenize() -> None:
    assert eng.detokenize(["\u2581Hello", ",", "\u2581world", "."], "en") == "Hello, world."
    assert eng.detokenize(["\u2581China", "\u2581'", "\u2581s", "\u2581largest"], "en") == "China's largest"
    assert eng.detokenize([], "en") == ""


# ----------------------------------------------------------------------------- registry


def _model_dir(root: Path, name: str, manifest: dict, files: tuple[str, ...] = ("model.bin", "sp.model")) -> Path:
    d = root / "translate" / name
    d.mkdir(parents=True)
    for f in files:
        (d / f).write_bytes(b"")
    (d / "tandem.json").write_text(json.dumps(manifest))
    return d


def test_registry_scan_single_and_multilingual(tmp_path: Path) -> None:
    _model_dir(tmp_path, "zh-en", {"source_language": "zh-Hans", "target_language": "en", "source_spm": "sp.model", "target_spm": "sp.model"})
    _model_dir(
        tmp_path,
        "m2m",
        {
            "name": "tiny-m2m",
            "source_spm": "sp.model",
            "pairs": [
                {"source": "en", "target": "ja", "source_prefix": ["__en__"], "target_prefix": ["__ja__"]},
                {"source": "ja", "target": "en", "source_prefix": ["__ja__"], "target_prefix": ["__en__"]},
                {"source": "zh", "target": "en", "source_prefix": ["__zh__"], "target_prefix": ["__en__"]},
            ],
        },
    )
    _model_dir(tmp_path, "broken", {"source_language": "en"})  # no target
    _model_dir(tmp_path, "nofiles", {"source_language": "en", "target_language": "ko"}, files=())
    (tmp_path / "translate" / "not-a-model").mkdir()

    reg = eng.ModelRegistry.scan(tmp_path)
    assert {m.name for m in reg.manifests} == {"zh-en", "tiny-m2m"}
    assert len(reg.problems) == 2 and any("missing model.bin" in p for p in reg.problems)
    assert reg.describe() == "en->ja, ja->en, zh->en"
    route = reg.lookup("en", "ja")
    assert route is not None and route.manifest.name == "tiny-m2m"
    assert route.pair == eng.PairSpec("en", "ja", ("__en__",), ("__ja__",))
    assert route.manifest.target_spm == route.manifest.source_spm  # target_spm defaults to source_spm
    # "m2m" sorts before "zh-en", so its zh->en wins; the other is shadowed, not an error.
    assert reg.lookup("zh", "en").manifest.name == "tiny-m2m"
    assert reg.lookup("en", "zh") is None
    assert reg.lookup("en", "ko") is None


def test_registry_empty_dir(tmp_path: Path) -> None:
    reg = eng.ModelRegistry.scan(tmp_path / "nowhere")
    assert reg.manifests == () and reg.describe() == "none"
    with pytest.raises(RuntimeError, match="no translation models"):
        eng.TranslateEngine(reg).load()


# ----------------------------------------------------------------------------- batching


def test_batcher_batches_queued_items_and_keeps_order() -> None:
    entered, release = threading.Event(), threading.Event()
    calls: list[list[str]] = []

    def fake(model, items):
        calls.append([text for _, text in items])
        entered.set()
        release.wait(5)
        return [text.upper() for _, text in items]

    sizes: list[int] = []
    b = eng.Batcher(eng.BatchOptions(max_batch_size=4, max_wait_ms=50), translate_fn=fake, on_batch=sizes.append)
    pair = eng.PairSpec("en", "ja")
    first = b.submit("m", pair, "a")
    assert entered.wait(5)  # worker busy with "a" (after waiting for more up to 50 ms)
    rest = [b.submit("m", pair, t) for t in "bcdefghij"]
    release.set()
    assert first.result(5) == "A"
    assert [f.result(5) for f in rest] == list("BCDEFGHIJ")
    assert sizes == [1, 4, 4, 1]
    assert calls[1] == ["b", "c", "d", "e"]
    b.close()


def test_batcher_collects_concurrent_submissions_within_wait() -> None:
    sizes: list[int] = []
    b = eng.Batcher(eng.BatchOptions(max_batch_size=8, max_wait_ms=200), translate_fn=lambda m, items: [t for _, t in items], on_batch=sizes.append)
    futures = [b.submit("m", eng.PairSpec("zh", "en"), str(i)) for i in range(5)]
    assert [f.result(5) for f in futures] == ["0", "1", "2", "3", "4"]
    assert sizes == [5]
    b.close()


def test_batcher_empty_text_groups_and_errors() -> None:
    calls: list[tuple[str, int]] = []

    def fake(model, items):
        calls.append((model, len(items)))
        if model == "bad":
            raise RuntimeError("boom")
        return [f"{model}:{t}" for _, t in items]

    b = eng.Batcher(eng.BatchOptions(max_batch_size=8, max_wait_ms=100), translate_fn=fake)
    pair = eng.PairSpec("en", "ja")
    empty = b.submit("m1", pair, "   ")
    assert empty.done() and empty.result() == ""  # no model call
    f1, f2, f3 = b.submit("m1", pair, "x"), b.submit("bad", pair, "y"), b.submit("m2", pair, "z")
    assert f1.result(5) == "m1:x" and f3.result(5) == "m2:z"
    with pytest.raises(RuntimeError, match="boom"):
        f2.result(5)
    assert sorted(calls) == [("bad", 1), ("m1", 1), ("m2", 1)]  # one call per model
    b.close()
    with pytest.raises(eng.Unavailable):
        b.submit("m1", pair, "late")


def test_batcher_close_finishes_queued_work() -> None:
    b = eng.Batcher(eng.BatchOptions(max_batch_size=2, max_wait_ms=0), translate_fn=lambda m, items: (time.sleep(0.01), [t for _, t in items])[1])
    futures = [b.submit("m", eng.PairSpec("en", "ja"), str(i)) for i in range(6)]
    b.close()
    assert [f.result(0) for f in futures] == [str(i) for i in range(6)]


# ----------------------------------------------------------------------------- engine (fake models)


class _FakeModel:
    def __init__(self, manifest: eng.ModelManifest, options: eng.ModelOptions) -> None:
        self.manifest, self.name = manifest, manifest.name

    def translate(self, items):
        return [f"<{p.target}>{t}" for p, t in items]

    def close(self) -> None:
        pass


def test_engine_resolve_errors_and_translate(tmp_path: Path) -> None:
    _model_dir(tmp_path, "zh-en", {"source_language": "zh", "target_language": "en", "source_spm": "sp.model"})
    engine = eng.TranslateEngine(
        eng.ModelRegistry.scan(tmp_path), limits=eng.Limits(max_texts=3, max_text_chars=10), model_factory=_FakeModel
    )
    with pytest.raises(eng.Unavailable):
        engine.resolve("zh", "en")
    engine.load()
    try:
        assert engine.ready
        with pytest.raises(eng.NotFound, match=r"no translation model for en->zh-Hans; available: zh->en"):
            engine.resolve("en", "zh-Hans")
        with pytest.raises(eng.InvalidArgument, match="same"):
            engine.resolve("zh-Hans", "zh-Hant")
        with pytest.raises(eng.InvalidArgument, match="unknown language code"):
            engine.resolve("xx", "en")
        d = engine.resolve("zh-Hant", "en-GB")
        assert (d.source_code, d.pair.key, d.model_name) == ("zh-Hant", ("zh", "en"), "zh-en")
        assert engine.translate(d, ["你好", "", "谢谢"]) == ["<en>你好", "", "<en>谢谢"]
        with pytest.raises(eng.InvalidArgument, match="too many texts"):
            engine.translate(d, ["a"] * 4)
        with pytest.raises(eng.InvalidArgument, match="too long"):
            engine.translate(d, ["a" * 11])
    finally:
        engine.close()
    assert not engine.ready


# ----------------------------------------------------------------------------- real load of a tiny model


def _train_spm(path: Path) -> list[str]:
    import sentencepiece as spm

    lines = ["hello world", "this is a test", "the quick brown fox jumps over the lazy dog", "good morning", "where is the station"] * 4
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, vocab_size=40, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
    )
    path.write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(path))
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def _build_tiny_transformer(out: Path, vocab: list[str], d_model: int = 8, d_ff: int = 16) -> None:
    """A 1-layer random Transformer in CTranslate2 format, via the spec API."""
    import numpy as np
    from ctranslate2.specs import attention_spec, common_spec, model_spec, transformer_spec

    rng = np.random.default_rng(0)

    def linear(spec: common_spec.LinearSpec, shape: tuple[int, int]) -> None:
        spec.weight = rng.normal(0, 0.1, shape).astype(np.float32)
        spec.bias = np.zeros(shape[0], np.float32)

    def init(layer: model_spec.LayerSpec) -> None:
        for value in list(vars(layer).values()):
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, model_spec.LayerSpec):
                    init(child)
        if isinstance(layer, common_spec.LayerNormSpec):
            layer.gamma, layer.beta = np.ones(d_model, np.float32), np.zeros(d_model, np.float32)
        elif isinstance(layer, common_spec.EmbeddingsSpec):
            layer.weight = rng.normal(0, 0.1, (len(vocab), d_model)).astype(np.float32)
        elif isinstance(layer, attention_spec.MultiHeadAttentionSpec):
            self_attn = len(layer.linear) == 2  # fused QKV + out; cross: Q, fused KV, out
            shapes = [(3 * d_model, d_model), (d_model, d_model)] if self_attn else [(d_model, d_model), (2 * d_model, d_model), (d_model, d_model)]
            for lin, shape in zip(layer.linear, shapes):
                linear(lin, shape)
        elif isinstance(layer, transformer_spec.FeedForwardSpec):
            linear(layer.linear_0, (d_ff, d_model))
            linear(layer.linear_1, (d_model, d_ff))

    spec = transformer_spec.TransformerSpec.from_config(num_layers=1, num_heads=2)
    init(spec)
    linear(spec.decoder.projection, (len(vocab), d_model))
    spec.register_source_vocabulary(vocab)
    spec.register_target_vocabulary(vocab)
    spec.validate()
    spec.optimize(quantization=None)
    spec.save(str(out))


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("ctranslate2")
    root = tmp_path_factory.mktemp("models")
    en_ja = root / "translate" / "en-ja"
    en_ja.mkdir(parents=True)
    vocab = _train_spm(en_ja / "sentencepiece.model") + ["__en__", "__ja__", "__ko__"]
    _build_tiny_transformer(en_ja, vocab)
    (en_ja / "tandem.json").write_text(
        json.dumps(
            {
                "name": "tiny-random-m2m",
                "source_spm": "sentencepiece.model",
                "target_spm": "sentencepiece.model",
                "source_suffix": ["</s>"],
                "pairs": [
                    {"source": "en", "target": "ja", "source_prefix": ["__en__"], "target_prefix": ["__ja__"]},
                    {"source": "en", "target": "ko", "source_prefix": ["__en__"], "target_prefix": ["__ko__"]},
                ],
            }
        )
    )
    return root


def test_real_model_loads_and_translates(tiny_model_dir: Path) -> None:
    registry = eng.ModelRegistry.scan(tiny_model_dir)
    assert registry.describe() == "en->ja, en->ko" and not registry.problems
    route = registry.lookup("en", "ja")
    model = eng.TranslationModel(route.manifest, eng.ModelOptions(intra_threads=1, beam_size=2, max_decoding_length=8))
    try:
        out = model.translate([(route.pair, "hello world"), (route.pair, ""), (registry.lookup("en", "ko").pair, "good morning")])
        assert len(out) == 3 and all(isinstance(t, str) for t in out)
        assert out[1] == ""
        assert "__ja__" not in out[0] and "__ko__" not in out[2]  # target prefix stripped
    finally:
        model.close()


def test_real_model_target_prefix_reaches_ctranslate2(tiny_model_dir: Path) -> None:
    """The pair's tokens go into translate_batch: source prefix/suffix added, target prefix forced."""
    registry = eng.ModelRegistry.scan(tiny_model_dir)
    route = registry.lookup("en", "ja")
    model = eng.TranslationModel(route.manifest, eng.ModelOptions(intra_threads=1, max_decoding_length=6))
    seen: dict = {}
    real = model.translator.translate_batch

    def spy(sources, target_prefix=None, **kwargs):
        seen.update(sources=sources, target_prefix=target_prefix)
        results = real(sources, target_prefix=target_prefix, **kwargs)
        seen["raw"] = [r.hypotheses[0] for r in results]
        return results

    model.translator = type("Spy", (), {"translate_batch": staticmethod(spy), "unload_model": real.__self__.unload_model})()
    try:
        model.translate([(route.pair, "hello")])
    finally:
        model.close()
    assert seen["sources"][0][0] == "__en__" and seen["sources"][0][-1] == "</s>" and len(seen["sources"][0]) > 2
    assert seen["target_prefix"] == [["__ja__"]]
    assert seen["raw"][0][0] == "__ja__"  # CTranslate2 returns the forced prefix; we strip it


def test_engine_with_tiny_model_end_to_end(tiny_model_dir: Path) -> None:
    engine = eng.TranslateEngine(
        eng.ModelRegistry.scan(tiny_model_dir),
        model_options=eng.ModelOptions(intra_threads=1, max_decoding_length=8),
        batch_options=eng.BatchOptions(max_batch_size=4, max_wait_ms=20),
    )
    engine.load()  # includes warm-up of both directions
    try:
        d = engine.resolve("en-US", "ja")
        futures = [engine.submit(d, t) for t in ["hello", "this is a test", "where is the station"]]
        assert all(isinstance(f.result(10), str) for f in futures)
        with pytest.raises(eng.NotFound, match="available: en->ja, en->ko"):
            engine.resolve("ja", "en")
    finally:
        engine.close()

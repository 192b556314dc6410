"""Translation engine: language codes, model registry, model loading and batching.

- `normalize_language("zh-Hant")` -> "zh": BCP-47 tags map onto the model language (the
  primary subtag, ISO 639-1); malformed or unknown codes raise `InvalidArgument`.
- `ModelRegistry` scans `<model_dir>/translate/*/tandem.json` (format: README.md next to
  this file) and answers `lookup(source, target)` without loading anything.
- `TranslationModel` is one loaded directory: a `ctranslate2.Translator` plus the source and
  target sentencepiece models, with optional source/target prefix tokens per pair
  (multilingual M2M100 / NLLB models).
- `Batcher` queues items from all RPCs and streams; one worker thread runs them through
  `translate_batch` (up to `max_batch_size` items, waiting at most `max_wait_ms` for more).
- `TranslateEngine` ties them together for the servicer; it knows nothing about gRPC.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import re
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Callable, Iterable, Sequence

log = logging.getLogger("tandem.translate")

MANIFEST = "tandem.json"

# ISO 639-1 codes: the primary subtags Tandem accepts.
_ISO_639_1 = frozenset(
    """aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv
    cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr
    ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw
    ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv
    ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr
    ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi
    yo za zh zu""".split()
)
# Three-letter and legacy codes for the same languages.
_ALIASES = {
    "cmn": "zh", "yue": "zh", "zho": "zh", "chi": "zh", "eng": "en", "jpn": "ja", "kor": "ko",
    "vie": "vi", "iw": "he", "in": "id", "ji": "yi", "jw": "jv", "fil": "tl",
}
_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")


class TranslateError(Exception):
    """Base of the errors the servicer maps onto status codes."""


class InvalidArgument(TranslateError):
    """Malformed/unknown language code, same source and target, too many or too long texts."""


class NotFound(TranslateError):
    """No model for the direction."""


class Unavailable(TranslateError):
    """Models not loaded yet, or the engine is shutting down."""


def normalize_language(code: str) -> str:
    """BCP-47 tag -> model language ("zh-Hant", "zh_CN", "cmn" -> "zh"; "en-US" -> "en")."""
    if not code or not _TAG.match(code.strip()):
        raise InvalidArgument(f"invalid language code {code!r} (expected BCP-47, e.g. en, zh-Hans)")
    primary = re.split(r"[-_]", code.strip())[0].lower()
    primary = _ALIASES.get(primary, primary)
    if primary not in _ISO_639_1:
        raise InvalidArgument(f"unknown language code {code!r}")
    return primary


# --------------------------------------------------------------------------------------
# Model directory


@dataclasses.dataclass(frozen=True)
class PairSpec:
    """One direction a model serves, with the special tokens it needs."""

    source: str  # model language, normalised
    target: str
    source_prefix: tuple[str, ...] = ()  # e.g. ("__en__",) for M2M100, ("eng_Latn",) for NLLB
    target_prefix: tuple[str, ...] = ()  # e.g. ("__ja__",), ("jpn_Jpan",)

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.target)


@dataclasses.dataclass(frozen=True)
class ModelManifest:
    """A parsed `tandem.json` (paths resolved against its directory)."""

    name: str
    directory: Path
    source_spm: Path
    target_spm: Path
    pairs: tuple[PairSpec, ...]
    source_suffix: tuple[str, ...] = ()  # ("</s>",) for models from ct2-transformers-converter
    license: str = ""

    @classmethod
    def read(cls, path: Path) -> "ModelManifest":
        directory = path.parent
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")

        def tokens(obj: dict, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
            value = obj.get(key, default)
            if value is None:
                return ()
            if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
                raise ValueError(f"{path}: {key} must be a list of tokens")
            return tuple(value)

        top_src, top_tgt = tokens(data, "source_prefix"), tokens(data, "target_prefix")
        raw_pairs = data.get("pairs")
        if raw_pairs is None:
            raw_pairs = [{"source": data.get("source_language"), "target": data.get("target_language")}]
        if not isinstance(raw_pairs, list) or not raw_pairs:
            raise ValueError(f"{path}: pairs must be a non-empty list")
        pairs = []
        for raw in raw_pairs:
            if not isinstance(raw, dict) or not raw.get("source") or not raw.get("target"):
                raise ValueError(f"{path}: each pair needs source and target (or set source_language/target_language)")
            try:
                src, tgt = normalize_language(raw["source"]), normalize_language(raw["target"])
            except InvalidArgument as exc:
                raise ValueError(f"{path}: {exc}") from None
            pairs.append(PairSpec(src, tgt, tokens(raw, "source_prefix", top_src), tokens(raw, "target_prefix", top_tgt)))
        spm_src = directory / data.get("source_spm", "sentencepiece.model")
        spm_tgt = directory / data.get("target_spm", data.get("source_spm", "sentencepiece.model"))
        for required in (directory / "model.bin", spm_src, spm_tgt):
            if not required.is_file():
                raise ValueError(f"{path}: missing {required.name}")
        return cls(
            name=str(data.get("name") or directory.name),
            directory=directory,
            source_spm=spm_src,
            target_spm=spm_tgt,
            pairs=tuple(pairs),
            source_suffix=tokens(data, "source_suffix"),
            license=str(data.get("license", "")),
        )


@dataclasses.dataclass(frozen=True)
class Route:
    """Where a direction goes: the manifest of its model and the pair's tokens."""

    manifest: ModelManifest
    pair: PairSpec


class ModelRegistry:
    """The models of `<model_dir>/translate/*/tandem.json`; lookups need no loading."""

    def __init__(self, manifests: Iterable[ModelManifest], problems: Sequence[str] = (), root: Path | None = None) -> None:
        self.root = root  # the scanned `<model_dir>/translate`, for messages
        self.manifests = tuple(manifests)
        self.problems = tuple(problems)  # directories skipped, with why
        self._routes: dict[tuple[str, str], Route] = {}
        for manifest in self.manifests:
            for pair in manifest.pairs:
                if pair.key in self._routes:
                    log.warning("%s->%s: %s shadowed by %s", *pair.key, manifest.name, self._routes[pair.key].manifest.name)
                    continue
                self._routes[pair.key] = Route(manifest, pair)

    @classmethod
    def scan(cls, model_dir: Path) -> "ModelRegistry":
        manifests, problems = [], []
        root = Path(model_dir, "translate")
        for path in sorted(root.glob(f"*/{MANIFEST}")):
            try:
                manifests.append(ModelManifest.read(path))
            except ValueError as exc:
                log.warning("skipping translation model: %s", exc)
                problems.append(str(exc))
        return cls(manifests, problems, root)

    def lookup(self, source: str, target: str) -> Route | None:
        """Model languages (already normalised) -> route, or None when no model has it."""
        return self._routes.get((source, target))

    def routes(self) -> list[Route]:
        return [self._routes[key] for key in sorted(self._routes)]

    def describe(self) -> str:
        return ", ".join(f"{s}->{t}" for s, t in sorted(self._routes)) or "none"


# --------------------------------------------------------------------------------------
# Loaded models


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """How models are loaded and decoded."""

    device: str = "cpu"
    compute_type: str = "int8"
    intra_threads: int = 1  # as the service's default (app.TranslateSettings)
    beam_size: int = 2
    max_decoding_length: int = 256
    max_input_length: int = 512  # source tokens; longer input is truncated by CTranslate2


_EN_CLITIC = re.compile(r"(\w) ' ?(s|t|re|ve|ll|d|m)\b")


def detokenize(pieces: Sequence[str], target: str = "") -> str:
    """Sentencepiece pieces -> text (works for pieces the .model lacks, unlike `decode`).

    For English, the "China ' s" artefact of OPUS-MT is joined back to "China's".
    """
    text = "".join(pieces).replace("\u2581", " ").strip()
    return _EN_CLITIC.sub(r"\1'\2", text) if target == "en" else text


class TranslationModel:
    """One model directory loaded: CTranslate2 translator + source/target sentencepiece."""

    def __init__(self, manifest: ModelManifest, options: ModelOptions = ModelOptions()) -> None:
        import ctranslate2
        import sentencepiece

        self.manifest = manifest
        self.options = options
        self.translator = ctranslate2.Translator(
            str(manifest.directory),
            device=options.device,
            compute_type=options.compute_type,
            intra_threads=options.intra_threads,
            inter_threads=1,
        )
        self.source_sp = sentencepiece.SentencePieceProcessor(model_file=str(manifest.source_spm))
        self.target_sp = (
            self.source_sp
            if manifest.target_spm == manifest.source_spm
            else sentencepiece.SentencePieceProcessor(model_file=str(manifest.target_spm))
        )

    @property
    def name(self) -> str:
        return self.manifest.name

    def translate(self, items: Sequence[tuple[PairSpec, str]]) -> list[str]:
        """Translate (pair, text) items of this model in one `translate_batch` call."""
        results = [""] * len(items)
        todo = [i for i, (_, text) in enumerate(items) if text.strip()]
        if not todo:
            return results
        suffix = list(self.manifest.source_suffix)
        sources = [
            [*items[i][0].source_prefix, *self.source_sp.encode(items[i][1].strip(), out_type=str), *suffix] for i in todo
        ]
        prefixes = [list(items[i][0].target_prefix) or None for i in todo]
        output = self.translator.translate_batch(
            sources,
            target_prefix=prefixes if any(prefixes) else None,
            beam_size=self.options.beam_size,
            max_decoding_length=self.options.max_decoding_length,
            max_input_length=self.options.max_input_length,
        )
        for i, result in zip(todo, output):
            pieces = result.hypotheses[0]
            prefix = items[i][0].target_prefix
            if prefix and tuple(pieces[: len(prefix)]) == prefix:
                pieces = pieces[len(prefix):]
            results[i] = detokenize(pieces, items[i][0].target)
        return results

    def close(self) -> None:
        self.translator.unload_model()


# --------------------------------------------------------------------------------------
# Batching


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    max_batch_size: int = 16
    max_wait_ms: float = 5.0  # how long the worker waits for more items after the first


@dataclasses.dataclass
class _Item:
    model: "TranslationModel"
    pair: PairSpec
    text: str
    future: Future


_STOP = object()


class Batcher:
    """One worker thread; items from every caller go through `translate_batch` together.

    `translate_fn(model, items)` is the model call (a seam for tests); `on_batch(size)` is
    called for each model call.
    """

    def __init__(
        self,
        options: BatchOptions = BatchOptions(),
        translate_fn: Callable[[object, Sequence[tuple[PairSpec, str]]], list[str]] | None = None,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self.options = options
        self._translate = translate_fn or (lambda model, items: model.translate(items))
        self._on_batch = on_batch
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="translate-batcher", daemon=True)
        self._thread.start()

    def submit(self, model: object, pair: PairSpec, text: str) -> Future:
        future: Future = Future()
        if not text.strip():
            future.set_result("")
            return future
        with self._lock:
            if self._closed:
                raise Unavailable("translation engine is shutting down")
            self._queue.put(_Item(model, pair, text, future))
        return future

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()

    def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        batch, stop = [first], False
        deadline = time.monotonic() + self.options.max_wait_ms / 1000
        while len(batch) < self.options.max_batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, stop = self._collect(first)
            by_model: dict[int, list[_Item]] = {}
            for item in batch:
                if item.future.set_running_or_notify_cancel():
                    by_model.setdefault(id(item.model), []).append(item)
            for items in by_model.values():
                self._run_group(items)

    def _run_group(self, items: list[_Item]) -> None:
        self._on_batch(len(items))
        try:
            outputs = self._translate(items[0].model, [(it.pair, it.text) for it in items])
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            log.exception("translate_batch failed (%d items)", len(items))
            for it in items:
                it.future.set_exception(exc)
            return
        for it, text in zip(items, outputs):
            it.future.set_result(text)


# --------------------------------------------------------------------------------------
# Engine


@dataclasses.dataclass(frozen=True)
class Limits:
    max_texts: int = 64  # per Translate call
    max_text_chars: int = 2000  # per text


@dataclasses.dataclass(frozen=True)
class Direction:
    """A resolved request direction: requested codes, model languages, the loaded model."""

    source_code: str
    target_code: str
    pair: PairSpec
    model: TranslationModel

    @property
    def model_name(self) -> str:
        return self.model.name


class TranslateEngine:
    """What the servicer talks to: resolve a direction, check texts, submit, list pairs."""

    def __init__(
        self,
        registry: ModelRegistry,
        model_options: ModelOptions = ModelOptions(),
        batch_options: BatchOptions = BatchOptions(),
        limits: Limits = Limits(),
        on_batch: Callable[[int], None] = lambda size: None,
        model_factory: Callable[[ModelManifest, ModelOptions], TranslationModel] = TranslationModel,
    ) -> None:
        self.registry = registry
        self.model_options = model_options
        self.batch_options = batch_options
        self.limits = limits
        self._on_batch = on_batch
        self._model_factory = model_factory
        self._models: dict[Path, TranslationModel] = {}
        self._batcher: Batcher | None = None
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def load(self, warm_up: bool = True) -> None:
        """Load every model of the registry and run one dummy translation per direction."""
        if not self.registry.manifests:
            raise RuntimeError(
                f"no translation models found under {self.registry.root}/*/{MANIFEST}"
                + (f" (skipped: {'; '.join(self.registry.problems)})" if self.registry.problems else "")
            )
        for manifest in self.registry.manifests:
            start = time.perf_counter()
            self._models[manifest.directory] = self._model_factory(manifest, self.model_options)
            log.info("loaded %s (%s) in %.2f s", manifest.name, manifest.directory, time.perf_counter() - start)
        self._batcher = Batcher(self.batch_options, on_batch=self._on_batch)
        if warm_up:
            for route in self.registry.routes():
                start = time.perf_counter()
                model = self._models[route.manifest.directory]
                out = self._batcher.submit(model, route.pair, "Hello. 你好。").result()
                log.info("warm-up %s->%s %r in %.2f s", *route.pair.key, out, time.perf_counter() - start)
        self._ready.set()

    def close(self) -> None:
        self._ready.clear()
        if self._batcher is not None:
            self._batcher.close()
        for model in self._models.values():
            model.close()
        self._models.clear()

    def pairs(self) -> list[Route]:
        return self.registry.routes()

    def resolve(self, source_code: str, target_code: str) -> Direction:
        """Raise InvalidArgument / NotFound / Unavailable, or return the direction."""
        source, target = normalize_language(source_code), normalize_language(target_code)
        if source == target:
            raise InvalidArgument(f"source and target language are the same ({source_code} -> {target_code})")
        if not self.ready:
            raise Unavailable("translation models are not loaded (yet)")
        route = self.registry.lookup(source, target)
        if route is None:
            raise NotFound(
                f"no translation model for {source_code}->{target_code}; available: {self.registry.describe()}"
            )
        model = self._models[route.manifest.directory]
        return Direction(source_code, target_code, route.pair, model)

    def check_texts(self, texts: Sequence[str]) -> None:
        if len(texts) > self.limits.max_texts:
            raise InvalidArgument(f"too many texts: {len(texts)} > {self.limits.max_texts}")
        for i, text in enumerate(texts):
            if len(text) > self.limits.max_text_chars:
                raise InvalidArgument(f"text {i} too long: {len(text)} > {self.limits.max_text_chars} characters")

    def submit(self, direction: Direction, text: str) -> Future:
        """Queue one text; the future gives the translation (or raises)."""
        if self._batcher is None or not self.ready:
            raise Unavailable("translation models are loading")
        return self._batcher.submit(direction.model, direction.pair, text)

    def translate(self, direction: Direction, texts: Sequence[str], timeout: float | None = None) -> list[str]:
        self.check_texts(texts)
        futures = [self.submit(direction, text) for text in texts]
        return [f.result(timeout) for f in futures]

"""CTranslate2 Whisper weights -> an openai-whisper (PyTorch) model, so both engines run the
same weights.

The CTranslate2 `model.bin` (see `ctranslate2.specs.model_spec.ModelSpec._serialize`) is:
uint32 binary version, string spec name, uint32 spec revision, uint32 variable count, then
per variable: string name, uint8 rank, uint32 dims, uint8 dtype id, uint32 byte count, raw
bytes; then uint32 alias count and (alias, target) string pairs. Strings are a uint16
length (including a trailing NUL), the UTF-8 bytes and the NUL. All integers little-endian.

Mapping onto openai-whisper's state dict (`WhisperSpec`, written by CTranslate2's
Transformers converter):

- encoder/conv{1,2}/{weight,bias}                  -> encoder.conv{1,2}.*
- encoder/position_encodings/encodings             -> checked against openai-whisper's own
                                                      sinusoids (it computes them itself)
- {enc,dec}oder/layer_N/self_attention/linear_0    -> attn.{query,key,value} (fused QKV, split;
                                                      the key bias is all zeros and dropped)
- .../self_attention/linear_1                      -> attn.out
- .../self_attention/layer_norm/{gamma,beta}       -> attn_ln.{weight,bias}
- decoder/layer_N/attention/linear_0               -> cross_attn.query
- decoder/layer_N/attention/linear_1               -> cross_attn.{key,value} (fused KV, split)
- decoder/layer_N/attention/linear_2               -> cross_attn.out
- decoder/layer_N/attention/layer_norm             -> cross_attn_ln
- .../ffn/linear_{0,1}, .../ffn/layer_norm         -> mlp.{0,2}, mlp_ln
- encoder/layer_norm, decoder/layer_norm           -> encoder.ln_post, decoder.ln
- decoder/embeddings/weight                        -> decoder.token_embedding.weight (the
                                                      output projection is tied to it: CT2
                                                      stores decoder/projection as an alias)
- decoder/position_encodings/encodings             -> decoder.positional_embedding (learned)

Only float weights (float32/float16/bfloat16) are supported: a model converted with
`--quantization int8` cannot be mapped back losslessly and is refused.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

# Order of ctranslate2's DataType enum (`_dtype_to_type_id` in ctranslate2.specs.model_spec).
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU
_SUPPORTED_BINARY_VERSIONS = range(1, 7)
# The key bias CTranslate2 keeps (zeros from fuse_linear) must really be zero to be dropped.
_KEY_BIAS_TOLERANCE = 1e-6
# fp16-stored sinusoids differ from the float32 ones by rounding only.
_SINUSOID_TOLERANCE = 2e-3


class Ct2FormatError(ValueError):
    pass


def read_ct2_model(path: Path | str) -> tuple[str, int, dict[str, Any], dict[str, str]]:
    """Parse a CTranslate2 `model.bin`.

    Returns (spec name, spec revision, variables, aliases). Tensors are NumPy arrays (a
    torch.bfloat16 tensor for bfloat16 variables); scalars are NumPy scalars.
    """
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string() -> str:
        nonlocal pos
        length = take("H")
        raw = data[pos : pos + length]
        pos += length
        if not raw.endswith(b"\0"):
            raise Ct2FormatError("string not NUL-terminated")
        return raw[:-1].decode("utf-8")

    version = take("I")
    if version not in _SUPPORTED_BINARY_VERSIONS:
        raise Ct2FormatError(f"unsupported CTranslate2 binary version {version}")
    spec = string() if version >= 2 else ""
    revision = take("I") if version >= 2 else 1
    variables: dict[str, Any] = {}
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        shape = tuple(take("I") for _ in range(rank))
        if version >= 4:
            dtype = _CT2_DTYPES[take("B")]
            nbytes = take("I")
        else:  # versions 1-3 stored the item size, then the element count
            item_size = take("B")
            count = take("I")
            dtype = {4: "float32", 2: "int16", 1: "int8"}[item_size]
            nbytes = item_size * count
        raw = data[pos : pos + nbytes]
        pos += nbytes
        if len(raw) != nbytes:
            raise Ct2FormatError(f"truncated model.bin at variable {name!r}")
        if dtype == "bfloat16":
            import torch

            value: Any = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).reshape(shape)
        else:
            array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
            value = array[()] if rank == 0 else array
        variables[name] = value
    aliases: dict[str, str] = {}
    if version >= 3:
        for _ in range(take("I")):
            alias = string()
            aliases[alias] = string()
    if pos != len(data):
        raise Ct2FormatError(f"{len(data) - pos} trailing bytes in model.bin")
    return spec, revision, variables, aliases


def _tensor(value: Any, dtype):
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(dtype)
    array = np.asarray(value)
    if array.dtype.kind not in "f":
        raise Ct2FormatError(
            f"non-float weight ({array.dtype}); quantized CTranslate2 models cannot be mapped "
            "to openai-whisper — convert without --quantization (float16/float32)"
        )
    return torch.from_numpy(array.astype(np.float32)).to(dtype)


def _count_layers(variables: dict[str, Any], prefix: str) -> int:
    indices = {int(m.group(1)) for name in variables if (m := re.match(rf"{prefix}/layer_(\d+)/", name))}
    if indices != set(range(len(indices))):
        raise Ct2FormatError(f"{prefix} layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def ct2_to_state_dict(variables: dict[str, Any], aliases: dict[str, str], dtype=None):
    """Map WhisperSpec variables onto (openai-whisper ModelDimensions, state dict)."""
    import torch
    from whisper.model import ModelDimensions, sinusoids

    dtype = dtype or torch.float32
    var = dict(variables)
    for alias, target in aliases.items():
        var[alias] = var[target]

    def get(name: str):
        if name not in var:
            raise Ct2FormatError(f"missing variable {name!r} in model.bin")
        return var.pop(name)

    def scalar(name: str, default=None):
        value = var.pop(name, default)
        return None if value is None else np.asarray(value).item()

    # Architecture flags that openai-whisper hard-codes; refuse anything else.
    for name, expected in (("decoder/scale_embeddings", (False, 1.0)), ("decoder/alibi", (False,)),
                           ("decoder/start_from_zero_embedding", (False,)), ("decoder/pre_norm", (True,)),
                           ("decoder/activation", (_GELU,))):
        value = scalar(name)
        if value is not None and value not in expected:
            raise Ct2FormatError(f"{name}={value!r} is not supported by openai-whisper")
    # Flags that only matter when the architecture differs (checked above) or for features
    # openai-whisper sets up elsewhere (alignment heads come from config.json).
    for name in ("decoder/alignment_heads", "decoder/alignment_layer",
                 "decoder/alibi_use_positive_positions", "decoder/scale_alibi"):
        scalar(name)
    n_audio_head = int(scalar("encoder/num_heads"))
    n_text_head = int(scalar("decoder/num_heads"))

    n_audio_layer = _count_layers(var, "encoder")
    n_text_layer = _count_layers(var, "decoder")
    conv1 = get("encoder/conv1/weight")
    embeddings = get("decoder/embeddings/weight")
    dec_pos = get("decoder/position_encodings/encodings")
    enc_pos = get("encoder/position_encodings/encodings")
    projection = var.pop("decoder/projection/weight", None)
    if projection is not None and projection is not embeddings and not np.array_equal(
        np.asarray(projection), np.asarray(embeddings)
    ):
        raise Ct2FormatError("decoder projection is not tied to the token embedding (openai-whisper ties them)")
    var.pop("decoder/projection/bias", None)

    dims = ModelDimensions(
        n_mels=int(conv1.shape[1]),
        n_audio_ctx=int(enc_pos.shape[0]),
        n_audio_state=int(conv1.shape[0]),
        n_audio_head=n_audio_head,
        n_audio_layer=n_audio_layer,
        n_vocab=int(embeddings.shape[0]),
        n_text_ctx=int(dec_pos.shape[0]),
        n_text_state=int(embeddings.shape[1]),
        n_text_head=n_text_head,
        n_text_layer=n_text_layer,
    )
    reference = sinusoids(dims.n_audio_ctx, dims.n_audio_state)
    deviation = float((_tensor(enc_pos, torch.float32) - reference).abs().max())
    if deviation > _SINUSOID_TOLERANCE:
        raise Ct2FormatError(f"encoder position encodings are not Whisper's sinusoids (max diff {deviation:.2g})")

    sd: dict[str, Any] = {
        "encoder.positional_embedding": reference,
        "decoder.token_embedding.weight": _tensor(embeddings, dtype),
        "decoder.positional_embedding": _tensor(dec_pos, dtype),
    }

    def put(dst: str, src: str) -> None:
        sd[dst] = _tensor(get(src), dtype)

    def layer_norm(dst: str, src: str) -> None:
        put(f"{dst}.weight", f"{src}/gamma")
        put(f"{dst}.bias", f"{src}/beta")

    def linear(dst: str, src: str) -> None:
        put(f"{dst}.weight", f"{src}/weight")
        put(f"{dst}.bias", f"{src}/bias")

    def split(dst_prefix: str, names: tuple[str, ...], src: str) -> None:
        """Split a fused projection into `names` (equal parts); drop the zero key bias."""
        weight = np.asarray(get(f"{src}/weight"), dtype=np.float32)
        bias = np.asarray(get(f"{src}/bias"), dtype=np.float32)
        parts = len(names)
        if weight.shape[0] % parts or bias.shape[0] != weight.shape[0]:
            raise Ct2FormatError(f"{src}: cannot split {weight.shape} into {parts} projections")
        for name, w, b in zip(names, np.split(weight, parts), np.split(bias, parts)):
            sd[f"{dst_prefix}.{name}.weight"] = _tensor(w, dtype)
            if name == "key":
                peak = float(np.abs(b).max())
                if peak > _KEY_BIAS_TOLERANCE:
                    raise Ct2FormatError(f"{src}: key bias is not zero (max |b| = {peak:.3g})")
            else:
                sd[f"{dst_prefix}.{name}.bias"] = _tensor(b, dtype)

    def block(src: str, dst: str) -> None:
        """What encoder and decoder blocks share: self-attention and feed-forward."""
        layer_norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        split(f"{dst}.attn", ("query", "key", "value"), f"{src}/self_attention/linear_0")
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        layer_norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    for i in range(n_audio_layer):
        block(f"encoder/layer_{i}", f"encoder.blocks.{i}")
    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        block(src, dst)
        layer_norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        split(f"{dst}.cross_attn", ("key", "value"), f"{src}/attention/linear_1")
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
    sd["encoder.conv1.weight"] = _tensor(conv1, dtype)
    put("encoder.conv1.bias", "encoder/conv1/bias")
    linear("encoder.conv2", "encoder/conv2")
    layer_norm("encoder.ln_post", "encoder/layer_norm")
    layer_norm("decoder.ln", "decoder/layer_norm")
    if var:
        raise Ct2FormatError(f"unmapped CTranslate2 variables: {sorted(var)[:10]}")
    return dims, sd


def _alignment_mask(dims, heads: list[list[int]] | None):
    import torch

    if not heads:
        return None
    mask = torch.zeros(dims.n_text_layer, dims.n_text_head, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    return mask


def load_whisper_from_ct2(model_dir: Path | str, device: str = "cpu", dtype=None):
    """An openai-whisper `Whisper` model holding the weights of a CTranslate2 Whisper
    directory (`model.bin` + `config.json`), or of an openai-whisper checkpoint file (.pt)."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    dtype = dtype or torch.float32
    path = Path(model_dir)
    heads = None
    if path.is_file():  # openai-whisper checkpoint: {"dims": ..., "model_state_dict": ...}
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        dims = ModelDimensions(**checkpoint["dims"])
        state = checkpoint["model_state_dict"]
    else:
        spec, _revision, variables, aliases = read_ct2_model(path / "model.bin")
        if spec != "WhisperSpec":
            raise Ct2FormatError(f"{path / 'model.bin'} holds a {spec}, not a WhisperSpec")
        dims, state = ct2_to_state_dict(variables, aliases, dtype=torch.float32)
        config = path / "config.json"
        if config.exists():
            heads = json.loads(config.read_text(encoding="utf-8")).get("alignment_heads")
    model = Whisper(dims)
    model.load_state_dict(state, strict=True)
    mask = _alignment_mask(dims, heads)
    if mask is not None:
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    model = model.to(device=device, dtype=dtype)
    model.eval()
    return model


def save_openai_checkpoint(model_dir: Path | str, out: Path | str) -> Path:
    """Write the CTranslate2 Whisper directory as an openai-whisper checkpoint (.pt, fp32), and
    its alignment heads as openai-whisper's base85(gzip(mask)) string next to it (OUT.heads),
    for tools that need a PyTorch Whisper (the SimulStreaming peer in bench/peers)."""
    import base64
    import dataclasses
    import gzip

    import torch

    path, out = Path(model_dir), Path(out)
    spec, _revision, variables, aliases = read_ct2_model(path / "model.bin")
    if spec != "WhisperSpec":
        raise Ct2FormatError(f"{path / 'model.bin'} holds a {spec}, not a WhisperSpec")
    dims, state = ct2_to_state_dict(variables, aliases, dtype=torch.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": state}, out)
    heads = json.loads((path / "config.json").read_text(encoding="utf-8")).get("alignment_heads", [])
    mask = np.zeros((dims.n_text_layer, dims.n_text_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    Path(str(out) + ".heads").write_text(base64.b85encode(gzip.compress(mask.tobytes())).decode())
    return out


if __name__ == "__main__":  # python -m services.asr.ct2_to_torch CT2_DIR OUT.pt
    import sys

    print(save_openai_checkpoint(sys.argv[1], sys.argv[2]))

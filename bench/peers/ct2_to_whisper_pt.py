"""Converts a CTranslate2 Whisper model.bin into an openai-whisper checkpoint (.pt).

Runs in a peer venv that has torch (python ct2_to_whisper_pt.py CT2_DIR OUT.pt). WhisperLiveKit's
SimulStreaming (AlignAtt) policy needs a PyTorch Whisper decoder (it reads cross-attention);
the only Whisper base weights here are Tandem's CTranslate2 directory, so the same weights are
re-packed: the fused self-attention QKV is split (CT2's key bias, all zeros, is dropped), the
fused cross-attention KV is split, names are mapped one to one. Values stay as stored (fp16).
The alignment heads of config.json are written as openai-whisper's base85(gzip(mask)) string
next to the checkpoint (OUT.pt.heads) for --custom-alignment-heads.
"""

import base64
import gzip
import json
import re
import struct
import sys
from pathlib import Path

import numpy as np
import torch

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path):
    f = open(path, "rb")

    def u(fmt):
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

    def s():
        return f.read(u("H"))[:-1].decode()

    u("I"), s(), u("I")  # binary version, spec name, revision
    out = {}
    for _ in range(u("I")):
        name = s()
        shape = [u("I") for _ in range(u("B"))]
        dtype = u("B")
        buf = f.read(u("I"))
        out[name] = np.frombuffer(buf, dtype=DTYPES[dtype]).reshape(shape) if shape else np.frombuffer(buf, dtype=DTYPES[dtype])
    for _ in range(u("I")):
        alias, target = s(), s()
        out[alias] = out[target]
    return out


def convert(ct2_dir: Path, out: Path):
    w = read_ct2(ct2_dir / "model.bin")
    cfg = json.loads((ct2_dir / "config.json").read_text())
    sd = {}

    def t(name):
        return torch.from_numpy(np.array(w[name]))

    def ln(dst, src):
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = t(f"{src}/gamma"), t(f"{src}/beta")

    def lin(dst, src, bias=True):
        sd[f"{dst}.weight"] = t(f"{src}/weight")
        if bias:
            sd[f"{dst}.bias"] = t(f"{src}/bias")

    def qkv(dst, src):
        W, B = t(f"{src}/weight"), t(f"{src}/bias")
        q, k, v = W.chunk(3)
        bq, _bk, bv = B.chunk(3)
        sd[f"{dst}.query.weight"], sd[f"{dst}.query.bias"] = q.clone(), bq.clone()
        sd[f"{dst}.key.weight"] = k.clone()
        sd[f"{dst}.value.weight"], sd[f"{dst}.value.bias"] = v.clone(), bv.clone()

    n_enc = len({k.split("/")[1] for k in w if re.match(r"encoder/layer_\d+/", k)})
    n_dec = len({k.split("/")[1] for k in w if re.match(r"decoder/layer_\d+/", k)})
    for part in ("conv1", "conv2"):
        lin(f"encoder.{part}", f"encoder/{part}")
    sd["encoder.positional_embedding"] = t("encoder/position_encodings/encodings")
    for i in range(n_enc):
        p, q = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        qkv(f"{q}.attn", f"{p}/self_attention/linear_0")
        lin(f"{q}.attn.out", f"{p}/self_attention/linear_1")
        ln(f"{q}.attn_ln", f"{p}/self_attention/layer_norm")
        lin(f"{q}.mlp.0", f"{p}/ffn/linear_0")
        lin(f"{q}.mlp.2", f"{p}/ffn/linear_1")
        ln(f"{q}.mlp_ln", f"{p}/ffn/layer_norm")
    ln("encoder.ln_post", "encoder/layer_norm")
    sd["decoder.token_embedding.weight"] = t("decoder/embeddings/weight")
    sd["decoder.positional_embedding"] = t("decoder/position_encodings/encodings")
    for i in range(n_dec):
        p, q = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        qkv(f"{q}.attn", f"{p}/self_attention/linear_0")
        lin(f"{q}.attn.out", f"{p}/self_attention/linear_1")
        ln(f"{q}.attn_ln", f"{p}/self_attention/layer_norm")
        lin(f"{q}.cross_attn.query", f"{p}/attention/linear_0")
        kv_w, kv_b = t(f"{p}/attention/linear_1/weight"), t(f"{p}/attention/linear_1/bias")
        k_w, v_w = kv_w.chunk(2)
        _k_b, v_b = kv_b.chunk(2)
        sd[f"{q}.cross_attn.key.weight"] = k_w.clone()
        sd[f"{q}.cross_attn.value.weight"], sd[f"{q}.cross_attn.value.bias"] = v_w.clone(), v_b.clone()
        lin(f"{q}.cross_attn.out", f"{p}/attention/linear_2")
        ln(f"{q}.cross_attn_ln", f"{p}/attention/layer_norm")
        lin(f"{q}.mlp.0", f"{p}/ffn/linear_0")
        lin(f"{q}.mlp.2", f"{p}/ffn/linear_1")
        ln(f"{q}.mlp_ln", f"{p}/ffn/layer_norm")
    ln("decoder.ln", "decoder/layer_norm")

    state = sd["encoder.positional_embedding"].shape[1]
    heads = int(np.array(w["encoder/num_heads"]).reshape(-1)[0]) if "encoder/num_heads" in w else state // 64
    dims = {"n_mels": sd["encoder.conv1.weight"].shape[1], "n_audio_ctx": sd["encoder.positional_embedding"].shape[0],
            "n_audio_state": state, "n_audio_head": heads, "n_audio_layer": n_enc,
            "n_vocab": sd["decoder.token_embedding.weight"].shape[0], "n_text_ctx": sd["decoder.positional_embedding"].shape[0],
            "n_text_state": sd["decoder.token_embedding.weight"].shape[1], "n_text_head": heads, "n_text_layer": n_dec}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims, "model_state_dict": sd}, out)
    mask = np.zeros((n_dec, heads), dtype=bool)
    for layer, head in cfg.get("alignment_heads", []):
        mask[layer, head] = True
    Path(str(out) + ".heads").write_text(base64.b85encode(gzip.compress(mask.tobytes())).decode())
    print(f"wrote {out} {dims}")


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(sys.argv[2]))

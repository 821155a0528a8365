#!/usr/bin/env python3
"""Write the GGUF test fixtures (tests/data/gguf/) with the ``gguf`` Python package.

Usage (from the repository root, with the venv described in tools/README.md):

    /opt/ggufvenv/bin/python tools/make_gguf_fixtures.py --out tests/data/gguf

Files (architecture ``lfm2moe``, tensors named as llama.cpp's converter names them):

* ``tiny_d.f32.gguf``   -- tiny_d, every tensor F32 (exactly the checkpoint's weights).
* ``tiny_a.bf16.gguf``  -- tiny_a, matrices BF16 (exact: tiny_a is stored in bf16).
* ``tiny_a.mixed.gguf`` -- tiny_a, matrices quantized by gguf-py in turn as Q8_0, Q4_0, Q4_1,
  Q5_0, Q5_1, F16, BF16 (norms, conv, router and expert bias F32, as llama.cpp keeps them).
* ``tiny_a_mixed_oracle/`` -- config.json + model.safetensors: gguf-py's ``dequantize`` of every
  tensor of tiny_a.mixed.gguf, read back with ``GGUFReader``, in HF names and layout (experts
  split, conv [H, 1, K]) -- a checkpoint the Rust tests open like any other.
* ``tiny_k.q4_k_m.gguf`` -- a new random model with 256-wide rows (H 256, dense and expert width
  256) whose matrices are random *valid* Q4_K / Q5_K / Q6_K blocks (gguf-py cannot quantize
  K-quants), mixed per tensor the way Q4_K_M mixes them. ``tiny_k/config.json`` is its HF config.
* ``blocks.gguf`` -- one [8, 256] tensor per supported type (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
  Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) of random bytes with finite f16 scale/min fields, the first
  blocks with +0, -0, subnormal and largest-finite scales: every bit pattern of the formats.
* ``tiny_b.vocab.gguf``, ``tiny_c.vocab.gguf`` -- vocab-only files (metadata, no tensors): the
  lfm2moe keys of the config plus the tokenizer (``tokenizer.ggml.*``) and chat template, written
  as the converter writes them from tokenizer.json / tokenizer_config.json.
* ``tiny_b.f16.gguf`` -- tiny_b whole in one file: F16 matrices, F32 vectors, its tokenizer and
  chat template (the page test streams it into the browser).
* ``oracle.json`` -- for every tensor of every .gguf above: its type, ne, and the FNV-1a 64 hash
  of gguf-py's dequantized float32 values (little-endian bytes), with the first 64 values.

Deterministic: rerunning with the pinned versions (tools/requirements-gguf.txt) rewrites the
same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

SEED = 20261203
ARCH = "lfm2moe"
CYCLE = [QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.F16, QT.BF16]


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """float32 arrays of a safetensors file (bf16 included, which numpy cannot load)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[8 + n + a : 8 + n + b]
        if info["dtype"] == "BF16":
            x = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F16":
            x = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif info["dtype"] == "F32":
            x = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        else:
            raise ValueError(f"{name}: {info['dtype']}")
        out[name] = x.reshape(info["shape"])
    return out


def gguf_tensors(cfg: dict, w: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray, str]]:
    """(GGUF name, array in numpy order = GGUF ne reversed, role) in llama.cpp's naming."""
    out = [("token_embd.weight", w["model.embed_tokens.weight"], "embed")]
    out.append(("token_embd_norm.weight", w["model.embedding_norm.weight"], "vector"))
    if "lm_head.weight" in w:
        out.append(("output.weight", w["lm_head.weight"], "matrix"))
    for i, kind in enumerate(cfg["layer_types"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        out.append((b + "attn_norm.weight", w[p + "operator_norm.weight"], "vector"))
        out.append((b + "ffn_norm.weight", w[p + "ffn_norm.weight"], "vector"))
        if kind == "conv":
            out.append((b + "shortconv.in_proj.weight", w[p + "conv.in_proj.weight"], "matrix"))
            out.append((b + "shortconv.out_proj.weight", w[p + "conv.out_proj.weight"], "matrix"))
            out.append((b + "shortconv.conv.weight", w[p + "conv.conv.weight"].squeeze(1), "vector"))
        else:
            for hf, g in [("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"), ("out_proj", "attn_output")]:
                out.append((b + g + ".weight", w[p + f"self_attn.{hf}.weight"], "matrix"))
            out.append((b + "attn_q_norm.weight", w[p + "self_attn.q_layernorm.weight"], "vector"))
            out.append((b + "attn_k_norm.weight", w[p + "self_attn.k_layernorm.weight"], "vector"))
        f = p + "feed_forward."
        if i < cfg.get("num_dense_layers", 0):
            for hf, g in [("w1", "ffn_gate"), ("w3", "ffn_up"), ("w2", "ffn_down")]:
                out.append((b + g + ".weight", w[f + hf + ".weight"], "matrix"))
        else:
            out.append((b + "ffn_gate_inp.weight", w[f + "gate.weight"], "vector"))
            if cfg.get("use_expert_bias", True):
                out.append((b + "exp_probs_b.bias", w[f + "expert_bias"], "vector"))
            for hf, g in [("w1", "ffn_gate_exps"), ("w3", "ffn_up_exps"), ("w2", "ffn_down_exps")]:
                e = [w[f + f"experts.{x}.{hf}.weight"] for x in range(cfg["num_experts"])]
                out.append((b + g + ".weight", np.stack(e), "matrix"))
    return out


def writer(path: str, cfg: dict, ids: bool = True) -> gguf.GGUFWriter:
    """A writer with the lfm2moe hyperparameters of HF config `cfg` (and its bos/eos ids)."""
    w = gguf.GGUFWriter(path, ARCH)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv([cfg["num_key_value_heads"] if t == "full_attention" else 0 for t in cfg["layer_types"]])
    theta = cfg.get("rope_parameters", {}).get("rope_theta", cfg.get("rope_theta"))
    w.add_rope_freq_base(float(theta))
    w.add_layer_norm_rms_eps(float(cfg["norm_eps"]))
    w.add_expert_count(cfg["num_experts"])
    w.add_expert_used_count(cfg["num_experts_per_tok"])
    w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
    w.add_leading_dense_block_count(cfg["num_dense_layers"])
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    w.add_expert_weights_norm(bool(cfg["norm_topk_prob"]))
    w.add_expert_weights_scale(float(cfg["routed_scaling_factor"]))
    w.add_vocab_size(cfg["vocab_size"])
    w.add_shortconv_l_cache(cfg["conv_L_cache"])
    if ids:
        w.add_bos_token_id(cfg["bos_token_id"])
        w.add_eos_token_id(cfg["eos_token_id"])
    return w


def add_vocab(w: gguf.GGUFWriter, d: str) -> None:
    """tokenizer.ggml.* from tokenizer.json + tokenizer_config.json, as the converter writes
    them for a byte-level BPE (gpt2) vocabulary with pre-tokenizer "lfm2"."""
    tok = json.load(open(os.path.join(d, "tokenizer.json")))
    vocab = dict(tok["model"]["vocab"])
    added = {a["id"]: a for a in tok["added_tokens"]}
    for a in added.values():
        vocab[a["content"]] = a["id"]
    n = max(vocab.values()) + 1
    by_id = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(n):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i]["special"] else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("lfm2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    # What the converter does next: gguf-py's SpecialVocab reads the merges, the bos/eos/pad
    # tokens of tokenizer_config.json, add_bos/add_eos (from tokenizer.json's post-processor)
    # and the chat template, and writes them.
    gguf.SpecialVocab(d, load_merges=True, n_vocab=n).add_to_gguf(w)


def finish(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def add(w: gguf.GGUFWriter, name: str, x: np.ndarray, qt: QT) -> None:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if qt == QT.F32:
        w.add_tensor(name, x)
    elif qt == QT.F16:
        w.add_tensor(name, x.astype(np.float16))
    else:
        w.add_tensor(name, quantize(x, qt), raw_dtype=qt)


def float_fixture(path: str, src: str, types, vocab: bool = False) -> None:
    """Writes the checkpoint in directory `src`; `types(i, name, role)` picks each type; with
    `vocab`, its tokenizer and chat template too (a whole model in one file)."""
    cfg = json.load(open(os.path.join(src, "config.json")))
    w = writer(path, cfg, ids=not vocab)
    if vocab:
        add_vocab(w, src)
    n_matrices = 0
    for name, x, role in gguf_tensors(cfg, read_safetensors(os.path.join(src, "model.safetensors"))):
        if role == "vector":
            add(w, name, x, QT.F32)
        else:
            add(w, name, x, types(n_matrices))
            n_matrices += 1
    finish(w)


def read_back(path: str) -> list[tuple[str, QT, list[int], np.ndarray]]:
    """(name, type, ne, gguf-py's dequantized float32 in numpy order) of every tensor."""
    out = []
    for t in gguf.GGUFReader(path).tensors:
        ne = [int(d) for d in t.shape]
        deq = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(list(reversed(ne)))
        out.append((t.name, QT(t.tensor_type), ne, deq))
    return out


def fnv1a64(b: bytes) -> str:
    h = 0xCBF29CE484222325
    for c in b:
        h = ((h ^ c) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def oracle_entry(qt: QT, ne: list[int], deq: np.ndarray) -> dict:
    flat = deq.astype("<f4").reshape(-1)
    return {
        "type": qt.name,
        "ne": ne,
        "fnv1a64": fnv1a64(flat.tobytes()),
        "head": [float(v) for v in flat[:64]],
    }


def hf_oracle(path: str, src: str, out_dir: str) -> None:
    """gguf-py's dequantization of `path` in HF names and layout, as a checkpoint directory."""
    cfg = json.load(open(os.path.join(src, "config.json")))
    hf_w = read_safetensors(os.path.join(src, "model.safetensors"))
    back = {name: deq for name, _, _, deq in read_back(path)}
    assert set(back) == {g for g, _, _ in gguf_tensors(cfg, hf_w)}
    tensors = {}
    for hf, x in hf_w.items():
        # Find the GGUF tensor and the slice of it that is this HF tensor.
        p = hf.split(".")
        if hf.startswith("model.layers.") and ".experts." in hf:
            i, e, wname = p[2], int(p[5]), p[6]
            g = {"w1": "ffn_gate_exps", "w3": "ffn_up_exps", "w2": "ffn_down_exps"}[wname]
            y = back[f"blk.{i}.{g}.weight"][e]
        else:
            y = back[hf_to_gguf(hf)]
        tensors[hf] = np.ascontiguousarray(y.reshape(x.shape), dtype=np.float32)
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"))
    shutil.copy(os.path.join(src, "config.json"), os.path.join(out_dir, "config.json"))


def hf_to_gguf(hf: str) -> str:
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.embedding_norm.weight": "token_embd_norm.weight", "lm_head.weight": "output.weight"}
    if hf in top:
        return top[hf]
    p = hf.split(".")
    i, rest = p[2], ".".join(p[3:])
    table = {
        "operator_norm.weight": "attn_norm.weight", "ffn_norm.weight": "ffn_norm.weight",
        "conv.in_proj.weight": "shortconv.in_proj.weight", "conv.out_proj.weight": "shortconv.out_proj.weight",
        "conv.conv.weight": "shortconv.conv.weight",
        "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight", "self_attn.out_proj.weight": "attn_output.weight",
        "self_attn.q_layernorm.weight": "attn_q_norm.weight", "self_attn.k_layernorm.weight": "attn_k_norm.weight",
        "feed_forward.w1.weight": "ffn_gate.weight", "feed_forward.w3.weight": "ffn_up.weight",
        "feed_forward.w2.weight": "ffn_down.weight", "feed_forward.gate.weight": "ffn_gate_inp.weight",
        "feed_forward.expert_bias": "exp_probs_b.bias",
    }
    return f"blk.{i}.{table[rest]}"


TINY_K = {
    "architectures": ["Lfm2MoeForCausalLM"], "model_type": "lfm2_moe", "bos_token_id": 1, "eos_token_id": 7,
    "conv_L_cache": 3, "conv_bias": False, "hidden_size": 256, "intermediate_size": 256,
    "moe_intermediate_size": 256, "layer_types": ["conv", "full_attention"],
    "max_position_embeddings": 512, "norm_eps": 1e-05, "norm_topk_prob": True, "num_attention_heads": 4,
    "num_dense_layers": 1, "num_experts": 4, "num_experts_per_tok": 2, "num_hidden_layers": 2,
    "num_key_value_heads": 2, "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
    "routed_scaling_factor": 1.0, "tie_word_embeddings": True, "use_expert_bias": True, "vocab_size": 64,
}


def k_type(name: str) -> QT:
    """Q4_K_M's choice for a tensor of tiny_k (docs/gguf.md): Q6_K for the embedding, attn_v and
    the down projections of block 0; Q5_K for the other down projections (Q5_K_M's rule, to have
    Q5_K too); Q4_K elsewhere."""
    if name == "token_embd.weight" or ".attn_v." in name or name.startswith("blk.0.ffn_down"):
        return QT.Q6_K
    if "ffn_down" in name:
        return QT.Q5_K
    return QT.Q4_K


def random_k_blocks(rng: np.random.Generator, qt: QT, n_blocks: int) -> np.ndarray:
    """Valid random blocks: random quant/scale bytes, finite f16 scales (a few special ones)."""
    size = {QT.Q4_K: 144, QT.Q5_K: 176, QT.Q6_K: 210}[qt]
    b = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    if qt == QT.Q6_K:
        d = rng.uniform(-4e-4, 4e-4, n_blocks).astype(np.float16)
        d[:4] = np.array([0.0, -0.0, 6e-8, -1e-5], dtype=np.float16)[: min(4, n_blocks)]
        b[:, 208:210] = d.view(np.uint8).reshape(n_blocks, 2)
    else:
        d = rng.uniform(5e-4, 3e-3, n_blocks).astype(np.float16)
        dmin = rng.uniform(0, 2e-3, n_blocks).astype(np.float16)
        d[:3] = np.array([0.0, -1e-3, 6e-8], dtype=np.float16)[: min(3, n_blocks)]
        b[:, 0:2] = d.view(np.uint8).reshape(n_blocks, 2)
        b[:, 2:4] = dmin.view(np.uint8).reshape(n_blocks, 2)
    return b


def tiny_k(path: str, cfg_dir: str, rng: np.random.Generator) -> None:
    cfg = TINY_K
    h, v, e = cfg["hidden_size"], cfg["vocab_size"], cfg["num_experts"]
    i_d, i_m, nh, nkv = cfg["intermediate_size"], cfg["moe_intermediate_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = h // nh
    shapes = {"model.embed_tokens.weight": (v, h), "model.embedding_norm.weight": (h,)}
    for i, kind in enumerate(cfg["layer_types"]):
        p = f"model.layers.{i}."
        shapes[p + "operator_norm.weight"] = (h,)
        shapes[p + "ffn_norm.weight"] = (h,)
        if kind == "conv":
            shapes[p + "conv.in_proj.weight"] = (3 * h, h)
            shapes[p + "conv.out_proj.weight"] = (h, h)
            shapes[p + "conv.conv.weight"] = (h, 1, cfg["conv_L_cache"])
        else:
            for n, r in [("q_proj", nh * d), ("k_proj", nkv * d), ("v_proj", nkv * d)]:
                shapes[p + f"self_attn.{n}.weight"] = (r, h)
            shapes[p + "self_attn.out_proj.weight"] = (h, nh * d)
            shapes[p + "self_attn.q_layernorm.weight"] = (d,)
            shapes[p + "self_attn.k_layernorm.weight"] = (d,)
        f = p + "feed_forward."
        if i < cfg["num_dense_layers"]:
            shapes[f + "w1.weight"], shapes[f + "w3.weight"], shapes[f + "w2.weight"] = (i_d, h), (i_d, h), (h, i_d)
        else:
            shapes[f + "gate.weight"] = (e, h)
            shapes[f + "expert_bias"] = (e,)
            for x in range(e):
                shapes[f + f"experts.{x}.w1.weight"] = (i_m, h)
                shapes[f + f"experts.{x}.w3.weight"] = (i_m, h)
                shapes[f + f"experts.{x}.w2.weight"] = (h, i_m)
    # Float stand-ins pick names and shapes; matrices are then replaced by random K blocks.
    w = {}
    for n, s in shapes.items():
        if n.endswith("norm.weight") or n.endswith("layernorm.weight"):
            w[n] = (1.0 + 0.1 * rng.standard_normal(s)).astype(np.float32)
        else:
            w[n] = (0.1 * rng.standard_normal(s)).astype(np.float32)
    out = writer(path, cfg)
    for name, x, role in gguf_tensors(cfg, w):
        if role == "vector":
            add(out, name, x, QT.F32)
        else:
            qt = k_type(name)
            blocks = random_k_blocks(rng, qt, x.size // 256)
            out.add_tensor(name, blocks.reshape(*x.shape[:-1], -1), raw_dtype=qt)
    finish(out)
    os.makedirs(cfg_dir, exist_ok=True)
    with open(os.path.join(cfg_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


SUPPORTED = [QT.F32, QT.F16, QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q4_K, QT.Q5_K, QT.Q6_K]
# Byte offsets of the f16 fields (d, and dmin / m) inside a block.
F16_FIELDS = {QT.Q8_0: [0], QT.Q4_0: [0], QT.Q5_0: [0], QT.Q4_1: [0, 2], QT.Q5_1: [0, 2],
              QT.Q4_K: [0, 2], QT.Q5_K: [0, 2], QT.Q6_K: [208]}
# f16 patterns given to the first blocks: +0, -0, the smallest subnormal, the largest finite, its negative.
F16_SPECIAL = [0x0000, 0x8000, 0x0001, 0x7BFF, 0xFBFF]


def finite_f16(bits: np.ndarray) -> np.ndarray:
    """Random u16 patterns made finite (an all-ones exponent loses its lowest bit)."""
    bits = bits.astype(np.uint16)
    inf_nan = (bits & 0x7C00) == 0x7C00
    return np.where(inf_nan, bits & ~np.uint16(0x0400), bits).astype(np.uint16)


def random_blocks(path: str, rng: np.random.Generator) -> None:
    """One [8, 256] tensor per supported type whose bytes are random (every bit pattern of the
    quants, scales and mins) with finite f16 fields, the first blocks' fields set to F16_SPECIAL."""
    w = gguf.GGUFWriter(path, ARCH)
    rows, cols = 8, 256
    for qt in SUPPORTED:
        name = qt.name.lower()
        if qt == QT.F32:
            bits = rng.integers(0, 2**32, size=(rows, cols), dtype=np.uint32)
            bits = np.where((bits & 0x7F800000) == 0x7F800000, bits & ~np.uint32(0x00800000), bits)
            w.add_tensor(name, bits.astype(np.uint32).view(np.float32))
        elif qt == QT.F16:
            w.add_tensor(name, finite_f16(rng.integers(0, 2**16, size=(rows, cols))).view(np.float16))
        elif qt == QT.BF16:
            bits = rng.integers(0, 2**16, size=(rows, cols)).astype(np.uint16)
            bits = np.where((bits & 0x7F80) == 0x7F80, bits & ~np.uint16(0x0080), bits).astype(np.uint16)
            w.add_tensor(name, bits.view(np.uint8).reshape(rows, cols * 2), raw_dtype=qt)
        else:
            bs, ts = gguf.GGML_QUANT_SIZES[qt]
            b = rng.integers(0, 256, size=(rows * cols // bs, ts), dtype=np.uint8)
            for o in F16_FIELDS[qt]:
                f = finite_f16(b[:, o].astype(np.uint16) | (b[:, o + 1].astype(np.uint16) << 8))
                f[: len(F16_SPECIAL)] = F16_SPECIAL
                b[:, o], b[:, o + 1] = (f & 0xFF).astype(np.uint8), (f >> 8).astype(np.uint8)
            w.add_tensor(name, b.reshape(rows, -1), raw_dtype=qt)
    finish(w)


def vocab_fixture(path: str, src: str) -> None:
    cfg = json.load(open(os.path.join(src, "config.json")))
    w = writer(path, cfg, ids=False)
    add_vocab(w, src)
    finish(w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data/gguf")
    ap.add_argument("--data", default="tests/data")
    ap.add_argument("--only", nargs="*", help="write only these files (their oracle entries are merged)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    src = lambda n: os.path.join(a.data, n)
    files = {
        "tiny_d.f32.gguf": lambda p: float_fixture(p, src("tiny_d"), lambda i: QT.F32),
        "tiny_a.bf16.gguf": lambda p: float_fixture(p, src("tiny_a"), lambda i: QT.BF16),
        "tiny_a.mixed.gguf": lambda p: float_fixture(p, src("tiny_a"), lambda i: CYCLE[i % len(CYCLE)]),
        "tiny_k.q4_k_m.gguf": lambda p: tiny_k(p, os.path.join(a.out, "tiny_k"), rng),
        "blocks.gguf": lambda p: random_blocks(p, rng),
        "tiny_b.vocab.gguf": lambda p: vocab_fixture(p, src("tiny_b")),
        "tiny_c.vocab.gguf": lambda p: vocab_fixture(p, src("tiny_c")),
        "tiny_b.f16.gguf": lambda p: float_fixture(p, src("tiny_b"), lambda i: QT.F16, vocab=True),
    }
    if a.only:
        unknown = set(a.only) - set(files)
        if unknown:
            sys.exit(f"unknown fixtures {sorted(unknown)} (known: {sorted(files)})")
        files = {n: f for n, f in files.items() if n in a.only}
    oracle = {"generator": "tools/make_gguf_fixtures.py", "gguf": gguf.__version__ if hasattr(gguf, "__version__") else "0.19.0", "files": {}}
    if a.only:
        oracle = json.load(open(os.path.join(a.out, "oracle.json")))
    for name, make in files.items():
        path = os.path.join(a.out, name)
        make(path)
        entries = {t: oracle_entry(qt, ne, deq) for t, qt, ne, deq in read_back(path)}
        oracle["files"][name] = entries
        kinds = sorted({e["type"] for e in entries.values()})
        print(f"{name}: {os.path.getsize(path)} bytes, {len(entries)} tensors, types {kinds}")
    if "tiny_a.mixed.gguf" in files:
        hf_oracle(os.path.join(a.out, "tiny_a.mixed.gguf"), src("tiny_a"), os.path.join(a.out, "tiny_a_mixed_oracle"))
    with open(os.path.join(a.out, "oracle.json"), "w") as f:
        json.dump(oracle, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Build tiny random LFM2-MoE checkpoints and reference outputs for the engine's tests.

Usage (from the repository root, with the venv described in tools/README.md):

    /opt/hfvenv/bin/python tools/make_fixtures.py --out tests/data

For every fixture in FIXTURES this writes ``<out>/<name>/`` with

* ``config.json``           -- written by ``save_pretrained`` (tiny_b: rewritten to the legacy
                               top-level ``rope_theta`` form afterwards);
* ``model.safetensors``     -- official per-expert HF key layout, weights in the fixture's disk
                               dtype (bf16 / f32 / f16), ``expert_bias`` always float32;
* ``reference.safetensors`` -- reference tensors computed by Hugging Face transformers in float32
                               (see tools/README.md for the meaning of every tensor).

Everything is derived from a per-fixture seed, so a rerun regenerates the same files (bit-exact on
the same CPU / torch build; the tool pins torch to one thread for that reason).

Procedure for one fixture and one candidate seed:

1. Build ``Lfm2MoeConfig`` + ``Lfm2MoeForCausalLM`` in float32 under ``torch.manual_seed(seed)``,
   with the eager attention and eager experts implementations.
2. Make the model "sensitive": ``initializer_range`` 0.1 (in the config), every ``expert_bias`` set
   to N(0, 0.3), every RMSNorm weight set to 1 + 0.1*N(0, 1), conv biases (when ``conv_bias``) set to
   N(0, 0.1), and the embedding row of the pad token (zeroed by HF's init because of
   ``padding_idx``) refilled with N(0, initializer_range) so no vocabulary row is trivially zero.
3. Round every floating parameter to the disk dtype and back to float32 (``expert_bias`` excepted,
   it is float32 on disk), so the in-memory float32 model is exactly what the engine loads.
4. Compute the references (prefill logits, hidden states, greedy decode done by hand through the
   KV/conv cache), and the same prefill/greedy again with every 2-D ``*.weight`` tensor additionally
   rounded to float16 (the engine's f16 weight-storage mode).
5. Near-tie guard: reject the seed (and try seed+1, ...) if, on prompt + the 31 fed greedy tokens,
   any MoE router's k-th vs (k+1)-th selection score differs by less than ROUTER_MARGIN_MIN, or if
   the greedy argmax at some step is decided by less than GREEDY_GAP_MIN (both for the f32 and the
   f16w run).
6. Save the checkpoint, verify its keys/dtypes/shapes, reload it with ``from_pretrained`` and check
   the logits are identical, then write ``reference.safetensors``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile

import torch
import transformers
from safetensors import safe_open
from transformers import Lfm2MoeConfig, Lfm2MoeForCausalLM
from transformers.models.lfm2_moe.modeling_lfm2_moe import Lfm2MoeSparseMoeBlock

# --------------------------------------------------------------------------------------------
# Fixture definitions
# --------------------------------------------------------------------------------------------

COMMON = dict(bos_token_id=1, eos_token_id=7, pad_token_id=0, initializer_range=0.1)

FIXTURES: dict[str, dict] = {
    "tiny_a": dict(
        base_seed=1000,
        disk_dtype="bf16",
        prompt_len=12,
        config=dict(
            vocab_size=256,
            hidden_size=64,
            intermediate_size=128,
            moe_intermediate_size=32,
            num_hidden_layers=4,
            layer_types=["conv", "conv", "full_attention", "conv"],
            num_attention_heads=4,
            num_key_value_heads=2,
            num_dense_layers=1,
            num_experts=4,
            num_experts_per_tok=2,
            norm_topk_prob=True,
            use_expert_bias=True,
            routed_scaling_factor=1.0,
            conv_L_cache=3,
            conv_bias=False,
            norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6},
            tie_word_embeddings=True,
            max_position_embeddings=512,
        ),
    ),
    "tiny_b": dict(
        base_seed=2000,
        disk_dtype="f32",
        prompt_len=67,
        # After saving, config.json is rewritten to the legacy top-level "rope_theta" form.
        legacy_rope_theta=True,
        config=dict(
            vocab_size=384,
            hidden_size=96,
            intermediate_size=160,
            moe_intermediate_size=48,
            num_hidden_layers=6,
            layer_types=["full_attention", "conv", "conv", "full_attention", "conv", "full_attention"],
            num_attention_heads=6,
            num_key_value_heads=3,
            num_dense_layers=2,
            num_experts=8,
            num_experts_per_tok=3,
            norm_topk_prob=False,
            use_expert_bias=True,
            routed_scaling_factor=2.5,
            conv_L_cache=3,
            conv_bias=False,
            norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False,
            max_position_embeddings=512,
        ),
    ),
    "tiny_c": dict(
        base_seed=3000,
        disk_dtype="f16",
        prompt_len=150,
        config=dict(
            vocab_size=320,
            hidden_size=128,
            intermediate_size=96,
            moe_intermediate_size=24,
            num_hidden_layers=5,
            layer_types=["conv", "full_attention", "conv", "conv", "full_attention"],
            num_attention_heads=4,
            num_key_value_heads=1,
            num_dense_layers=0,
            num_experts=32,
            num_experts_per_tok=4,
            norm_topk_prob=True,
            use_expert_bias=True,
            routed_scaling_factor=1.0,
            conv_L_cache=4,
            conv_bias=True,
            norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 5e5},
            tie_word_embeddings=True,
            max_position_embeddings=512,
        ),
    ),
    "tiny_d": dict(
        base_seed=4000,
        disk_dtype="bf16",
        prompt_len=33,
        config=dict(
            vocab_size=200,
            hidden_size=48,
            intermediate_size=64,
            moe_intermediate_size=40,
            num_hidden_layers=3,
            layer_types=["conv", "full_attention", "conv"],
            num_attention_heads=3,
            num_key_value_heads=3,
            num_dense_layers=1,
            num_experts=6,
            num_experts_per_tok=1,
            norm_topk_prob=True,
            use_expert_bias=False,
            routed_scaling_factor=1.0,
            conv_L_cache=2,
            conv_bias=False,
            norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6},
            tie_word_embeddings=True,
            max_position_embeddings=512,
        ),
    ),
}

N_GREEDY = 32  # greedy continuation length
ROUTER_MARGIN_MIN = 1e-4  # min gap between k-th and (k+1)-th routing score
GREEDY_GAP_MIN = 1e-3  # min gap between best and second-best logit at each greedy step
MAX_SEED_TRIES = 200
MAX_FIXTURE_BYTES = 5 * 1024 * 1024

EXPERT_BIAS_STD = 0.3
NORM_WEIGHT_STD = 0.1
CONV_BIAS_STD = 0.1

DTYPES = {"bf16": torch.bfloat16, "f32": torch.float32, "f16": torch.float16}
SAFETENSORS_DTYPE_NAMES = {"bf16": "BF16", "f32": "F32", "f16": "F16"}
DTYPE_CONFIG_NAMES = {"bf16": "bfloat16", "f32": "float32", "f16": "float16"}

NORM_SUFFIXES = (
    "operator_norm.weight",
    "ffn_norm.weight",
    "embedding_norm.weight",
    "q_layernorm.weight",
    "k_layernorm.weight",
)
CONV_BIAS_SUFFIXES = ("conv.conv.bias", "conv.in_proj.bias", "conv.out_proj.bias")
# In-memory (fused) expert tensors; on disk they are the per-expert 2-D w1/w3/w2 ".weight" keys.
FUSED_EXPERT_SUFFIXES = ("experts.gate_up_proj", "experts.down_proj")


# --------------------------------------------------------------------------------------------
# Model construction
# --------------------------------------------------------------------------------------------


def build_config(spec: dict) -> Lfm2MoeConfig:
    return Lfm2MoeConfig(
        **spec["config"],
        **COMMON,
        attn_implementation="eager",
        experts_implementation="eager",
    )


def round_params_(model: torch.nn.Module, dtype: torch.dtype, select) -> int:
    """Round (in place) every floating parameter whose name passes `select` to `dtype` and back."""
    n = 0
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied lm_head appears once (as embed_tokens)
            if p.is_floating_point() and select(name, p):
                p.copy_(p.to(dtype).to(torch.float32))
                n += 1
    return n


def is_f16w_weight(name: str, p: torch.Tensor) -> bool:
    """Tensors stored as f16 in the engine's f16 mode: every 2-D ``*.weight`` of the checkpoint.

    That is embed_tokens / lm_head, all projections, the router gate, the dense MLP and the experts
    (fused 3-D in memory, per-expert 2-D on disk). Not the [H,1,K] conv weight, not norms, biases
    or expert_bias.
    """
    if name.endswith(FUSED_EXPERT_SUFFIXES):
        return True
    return name.endswith(".weight") and p.dim() == 2


def build_model(spec: dict, seed: int) -> Lfm2MoeForCausalLM:
    """Random float32 model, made sensitive, with weights rounded to the disk dtype."""
    config = build_config(spec)
    torch.manual_seed(seed)
    model = Lfm2MoeForCausalLM(config).eval()
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    assert model.config._experts_implementation == "eager", model.config._experts_implementation

    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(NORM_SUFFIXES):
                p.copy_(1.0 + NORM_WEIGHT_STD * torch.randn(p.shape, generator=gen))
            elif name.endswith(CONV_BIAS_SUFFIXES):
                p.copy_(CONV_BIAS_STD * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("expert_bias"):
                b.copy_(EXPERT_BIAS_STD * torch.randn(b.shape, generator=gen))
        # HF zeroes the padding_idx row at init; give it ordinary random values.
        emb = model.model.embed_tokens.weight
        pad = config.pad_token_id
        emb[pad].copy_(config.initializer_range * torch.randn(emb.shape[1], generator=gen))

    if spec["disk_dtype"] != "f32":
        round_params_(model, DTYPES[spec["disk_dtype"]], lambda n, p: True)
    return model


def make_prompt(spec: dict, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 104729 + 3)
    vocab = spec["config"]["vocab_size"]
    ids = torch.randint(0, vocab, (spec["prompt_len"],), generator=gen, dtype=torch.long)
    ids[0] = COMMON["bos_token_id"]
    return ids


def moe_blocks(model: Lfm2MoeForCausalLM) -> list[Lfm2MoeSparseMoeBlock]:
    return [l.feed_forward for l in model.model.layers if isinstance(l.feed_forward, Lfm2MoeSparseMoeBlock)]


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def greedy_by_hand(model: Lfm2MoeForCausalLM, prompt: torch.Tensor, n: int):
    """Prefill with the cache, then feed one token at a time. Returns (ids [n], logits [n, V])."""
    out = model(input_ids=prompt[None], use_cache=True)
    past = out.past_key_values
    logits = out.logits[0, -1]
    ids, rows = [], []
    for j in range(n):
        rows.append(logits.clone())
        tok = int(torch.argmax(logits))
        ids.append(tok)
        if j == n - 1:
            break
        out = model(input_ids=torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1]
    return torch.tensor(ids, dtype=torch.long), torch.stack(rows)


@torch.no_grad()
def min_router_margin(model: Lfm2MoeForCausalLM, ids: torch.Tensor) -> float:
    """Smallest gap between the k-th and (k+1)-th selection score over all MoE layers and tokens."""
    cfg = model.config
    blocks = moe_blocks(model)
    if not blocks:
        return float("inf")
    out = model(input_ids=ids[None], output_router_logits=True)
    router_logits = out.router_logits
    assert len(router_logits) == len(blocks), (len(router_logits), len(blocks))
    k = cfg.num_experts_per_tok
    margin = float("inf")
    for block, logits in zip(blocks, router_logits):
        assert logits.shape == (ids.numel(), cfg.num_experts), logits.shape
        scores = logits.sigmoid()
        if cfg.use_expert_bias:
            scores = scores + block.expert_bias
        top = torch.sort(scores.double(), dim=-1, descending=True).values
        margin = min(margin, float((top[:, k - 1] - top[:, k]).min()))
    return margin


def min_greedy_gap(step_logits: torch.Tensor) -> float:
    top2 = torch.topk(step_logits.double(), 2, dim=-1).values
    return float((top2[:, 0] - top2[:, 1]).min())


@torch.no_grad()
def run_references(model: Lfm2MoeForCausalLM, prompt: torch.Tensor, with_hidden: bool) -> dict:
    res = {}
    out = model(input_ids=prompt[None], output_hidden_states=with_hidden)
    res["prefill_logits"] = out.logits[0].clone()
    if with_hidden:
        hs = torch.stack([h[0] for h in out.hidden_states])
        L = model.config.num_hidden_layers
        assert hs.shape == (L + 1, prompt.numel(), model.config.hidden_size), hs.shape
        assert torch.equal(hs[0], model.model.embed_tokens.weight[prompt]), "hidden_states[0] != embeddings"
        res["hidden_states"] = hs
    greedy, step_logits = greedy_by_hand(model, prompt, N_GREEDY)
    # The cached prefill's last row must be the uncached prefill's last row.
    d0 = (step_logits[0] - res["prefill_logits"][-1]).abs().max().item()
    assert d0 < 1e-5, f"cached vs uncached prefill differ by {d0}"
    # Sanity check of HF's cache path: one full prefill of prompt + fed tokens.
    full_ids = torch.cat([prompt, greedy[:-1]])
    full = model(input_ids=full_ids[None]).logits[0, prompt.numel() - 1 :]
    d = (full - step_logits).abs().max().item()
    assert d < 1e-4, f"step-by-step decode vs full prefill differ by {d}"
    res["greedy_ids"] = greedy
    res["step_logits"] = step_logits
    res["decode_vs_full_maxdiff"] = d
    res["min_router_margin"] = min_router_margin(model, full_ids)
    res["min_greedy_gap"] = min_greedy_gap(step_logits)
    return res


# --------------------------------------------------------------------------------------------
# Saving and verification
# --------------------------------------------------------------------------------------------


def save_checkpoint(model: Lfm2MoeForCausalLM, out_dir: str, disk_dtype: str) -> None:
    """save_pretrained in the disk dtype, with expert_bias kept float32."""
    m = copy.deepcopy(model)
    m.to(DTYPES[disk_dtype])
    with torch.no_grad():
        for (name, b), (_, b32) in zip(m.named_buffers(), model.named_buffers()):
            if name.endswith("expert_bias"):
                setattr_buffer(m, name, b32.detach().clone())
    m.config.dtype = DTYPE_CONFIG_NAMES[disk_dtype]
    m.save_pretrained(out_dir)
    gen_cfg = os.path.join(out_dir, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)


def setattr_buffer(root: torch.nn.Module, dotted: str, value: torch.Tensor) -> None:
    *path, leaf = dotted.split(".")
    mod = root
    for p in path:
        mod = getattr(mod, p)
    mod.register_buffer(leaf, value)


def expected_disk_shapes(cfg: Lfm2MoeConfig) -> dict[str, tuple[int, ...]]:
    """The official HF key layout (spec section 3.1) for a config."""
    H, V = cfg.hidden_size, cfg.vocab_size
    d = H // cfg.num_attention_heads
    shapes = {"model.embed_tokens.weight": (V, H), "model.embedding_norm.weight": (H,)}
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, H)
    for i, kind in enumerate(cfg.layer_types):
        p = f"model.layers.{i}."
        shapes[p + "operator_norm.weight"] = (H,)
        shapes[p + "ffn_norm.weight"] = (H,)
        if kind == "conv":
            shapes[p + "conv.in_proj.weight"] = (3 * H, H)
            shapes[p + "conv.conv.weight"] = (H, 1, cfg.conv_L_cache)
            shapes[p + "conv.out_proj.weight"] = (H, H)
            if cfg.conv_bias:
                shapes[p + "conv.in_proj.bias"] = (3 * H,)
                shapes[p + "conv.conv.bias"] = (H,)
                shapes[p + "conv.out_proj.bias"] = (H,)
        else:
            shapes[p + "self_attn.q_proj.weight"] = (cfg.num_attention_heads * d, H)
            shapes[p + "self_attn.k_proj.weight"] = (cfg.num_key_value_heads * d, H)
            shapes[p + "self_attn.v_proj.weight"] = (cfg.num_key_value_heads * d, H)
            shapes[p + "self_attn.out_proj.weight"] = (H, cfg.num_attention_heads * d)
            shapes[p + "self_attn.q_layernorm.weight"] = (d,)
            shapes[p + "self_attn.k_layernorm.weight"] = (d,)
        if i < cfg.num_dense_layers:
            I = cfg.intermediate_size
            shapes[p + "feed_forward.w1.weight"] = (I, H)
            shapes[p + "feed_forward.w3.weight"] = (I, H)
            shapes[p + "feed_forward.w2.weight"] = (H, I)
        else:
            Im, E = cfg.moe_intermediate_size, cfg.num_experts
            shapes[p + "feed_forward.gate.weight"] = (E, H)
            if cfg.use_expert_bias:
                shapes[p + "feed_forward.expert_bias"] = (E,)
            for e in range(E):
                shapes[p + f"feed_forward.experts.{e}.w1.weight"] = (Im, H)
                shapes[p + f"feed_forward.experts.{e}.w3.weight"] = (Im, H)
                shapes[p + f"feed_forward.experts.{e}.w2.weight"] = (H, Im)
    return shapes


def verify_checkpoint_file(path: str, model: Lfm2MoeForCausalLM, disk_dtype: str) -> None:
    """Keys, shapes and dtypes are the official layout; expert_bias values are bit-exact f32."""
    cfg = model.config
    expected = expected_disk_shapes(cfg)
    buffers = dict(model.named_buffers())
    with safe_open(path, "pt") as f:
        keys = set(f.keys())
        missing, extra = sorted(set(expected) - keys), sorted(keys - set(expected))
        assert not missing and not extra, f"key mismatch: missing {missing[:5]} extra {extra[:5]}"
        for k in keys:
            sl = f.get_slice(k)
            assert tuple(sl.get_shape()) == expected[k], (k, sl.get_shape(), expected[k])
            want = "F32" if k.endswith("expert_bias") else SAFETENSORS_DTYPE_NAMES[disk_dtype]
            assert sl.get_dtype() == want, (k, sl.get_dtype(), want)
            if k.endswith("expert_bias"):  # only affects selection, so check the values directly
                assert torch.equal(f.get_tensor(k), buffers[k]), k


def write_safetensors(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Minimal safetensors writer with a deterministic header (sorted keys).

    ``safetensors.torch.save_file`` serialises the metadata map in a random order, which would make
    regenerated files differ byte-wise; this writer produces identical bytes for identical inputs.
    """
    st_dtypes = {torch.float32: ("F32", "<f4"), torch.int32: ("I32", "<i4")}
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        st_name, np_dtype = st_dtypes[t.dtype]
        blob = t.numpy().astype(np_dtype, copy=False).tobytes()
        header[name] = {"dtype": st_name, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # keep the data section 8-byte aligned
    with open(path, "wb") as fh:
        fh.write(len(head).to_bytes(8, "little"))
        fh.write(head)
        for blob in blobs:
            fh.write(blob)
    # Read it back with the official reader.
    with safe_open(path, "pt") as f:
        assert f.metadata() == metadata
        assert set(f.keys()) == set(tensors)
        for name, t in tensors.items():
            assert torch.equal(f.get_tensor(name), t), name


def load_f32(path: str) -> Lfm2MoeForCausalLM:
    return Lfm2MoeForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    ).eval()


@torch.no_grad()
def check_reload(path: str, model: Lfm2MoeForCausalLM, prompt: torch.Tensor, what: str) -> float:
    re = load_f32(path)
    a = model(input_ids=prompt[None]).logits
    b = re(input_ids=prompt[None]).logits
    d = (a - b).abs().max().item()
    assert d < 1e-6, f"{what}: reloaded logits differ by {d}"
    return d


def rewrite_legacy_rope_theta(config_path: str) -> float:
    """Replace rope_parameters by the legacy top-level rope_theta (as in older real configs)."""
    with open(config_path) as fh:
        cfg = json.load(fh)
    rp = cfg.pop("rope_parameters")
    assert rp.get("rope_type", "default") == "default", rp
    theta = float(rp["rope_theta"])
    cfg["rope_theta"] = theta
    with open(config_path, "w") as fh:
        fh.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return theta


@torch.no_grad()
def verify_f16w_selection(model32: Lfm2MoeForCausalLM, model16: Lfm2MoeForCausalLM) -> int:
    """Check on the on-disk key layout that exactly the 2-D *.weight tensors were f16-rounded."""
    with tempfile.TemporaryDirectory() as tmp:
        d32, d16 = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        model32.save_pretrained(d32)
        model16.save_pretrained(d16)
        n = 0
        with safe_open(os.path.join(d32, "model.safetensors"), "pt") as f32, safe_open(
            os.path.join(d16, "model.safetensors"), "pt"
        ) as f16:
            assert set(f32.keys()) == set(f16.keys())
            for k in f32.keys():
                a, b = f32.get_tensor(k), f16.get_tensor(k)
                if k.endswith(".weight") and a.dim() == 2:
                    assert torch.equal(b, a.half().float()), k
                    n += 1
                else:
                    assert torch.equal(a, b), k
    return n


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def make_fixture(name: str, spec: dict, out_root: str) -> None:
    out_dir = os.path.join(out_root, name)
    chosen = None
    for attempt in range(MAX_SEED_TRIES):
        seed = spec["base_seed"] + attempt
        model = build_model(spec, seed)
        prompt = make_prompt(spec, seed)
        ref = run_references(model, prompt, with_hidden=True)

        model16 = copy.deepcopy(model)
        round_params_(model16, torch.float16, is_f16w_weight)
        ref16 = run_references(model16, prompt, with_hidden=False)

        guards = {
            "router_margin": min(ref["min_router_margin"], ref16["min_router_margin"]),
            "greedy_gap": min(ref["min_greedy_gap"], ref16["min_greedy_gap"]),
        }
        if guards["router_margin"] >= ROUTER_MARGIN_MIN and guards["greedy_gap"] >= GREEDY_GAP_MIN:
            chosen = (seed, model, model16, prompt, ref, ref16)
            break
        print(
            f"  {name}: seed {seed} rejected (router margin {guards['router_margin']:.3g}, "
            f"greedy gap {guards['greedy_gap']:.3g})",
            file=sys.stderr,
        )
    if chosen is None:
        raise RuntimeError(f"{name}: no acceptable seed in {MAX_SEED_TRIES} tries")
    seed, model, model16, prompt, ref, ref16 = chosen
    cfg = model.config

    n_f16w = verify_f16w_selection(model, model16)

    # --- checkpoint ---------------------------------------------------------------------------
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    save_checkpoint(model, out_dir, spec["disk_dtype"])
    verify_checkpoint_file(os.path.join(out_dir, "model.safetensors"), model, spec["disk_dtype"])
    check_reload(out_dir, model, prompt, name)
    if spec.get("legacy_rope_theta"):
        theta = rewrite_legacy_rope_theta(os.path.join(out_dir, "config.json"))
        re_cfg = Lfm2MoeConfig.from_pretrained(out_dir)
        assert re_cfg.rope_parameters["rope_theta"] == theta, re_cfg.rope_parameters
        check_reload(out_dir, model, prompt, name + " (legacy rope_theta)")

    # --- references ---------------------------------------------------------------------------
    tensors = {
        "prompt_ids": prompt.to(torch.int32),
        "prefill_logits": ref["prefill_logits"],
        "hidden_states": ref["hidden_states"],
        "greedy_ids": ref["greedy_ids"].to(torch.int32),
        "step_logits": ref["step_logits"],
        "prefill_logits_f16w": ref16["prefill_logits"],
        "greedy_ids_f16w": ref16["greedy_ids"].to(torch.int32),
        "step_logits_f16w": ref16["step_logits"],
    }
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    metadata = {
        "fixture": name,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "seed": str(seed),
        "disk_dtype": spec["disk_dtype"],
        "min_router_margin": repr(ref["min_router_margin"]),
        "min_router_margin_f16w": repr(ref16["min_router_margin"]),
        "min_greedy_gap": repr(ref["min_greedy_gap"]),
        "min_greedy_gap_f16w": repr(ref16["min_greedy_gap"]),
        "decode_vs_full_maxdiff": repr(ref["decode_vs_full_maxdiff"]),
        "decode_vs_full_maxdiff_f16w": repr(ref16["decode_vs_full_maxdiff"]),
        "prompt_len": str(prompt.numel()),
        "n_greedy": str(N_GREEDY),
    }
    write_safetensors(os.path.join(out_dir, "reference.safetensors"), tensors, metadata)

    # --- summary ------------------------------------------------------------------------------
    sizes = {f: os.path.getsize(os.path.join(out_dir, f)) for f in sorted(os.listdir(out_dir))}
    total = sum(sizes.values())
    assert total < MAX_FIXTURE_BYTES, f"{name}: {total} bytes"
    n_params = sum(p.numel() for p in model.parameters())
    max_logit = max(
        ref["prefill_logits"].abs().max().item(), ref["step_logits"].abs().max().item()
    )
    f16w_diff = (ref16["prefill_logits"] - ref["prefill_logits"]).abs().max().item()
    n_same = int((ref16["greedy_ids"] == ref["greedy_ids"]).sum())
    print(
        f"{name}: seed={seed} params={n_params} disk={spec['disk_dtype']} T={prompt.numel()} "
        f"max|logit|={max_logit:.3f} min_router_margin={ref['min_router_margin']:.3g} "
        f"(f16w {ref16['min_router_margin']:.3g}) min_greedy_gap={ref['min_greedy_gap']:.3g} "
        f"(f16w {ref16['min_greedy_gap']:.3g}) decode_vs_full={ref['decode_vs_full_maxdiff']:.2g} "
        f"f16w_prefill_diff={f16w_diff:.3g} f16w_greedy_same={n_same}/{N_GREEDY} "
        f"f16w_tensors={n_f16w} files="
        + ",".join(f"{f}:{s}" for f, s in sizes.items())
        + f" total={total}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data", help="output root (default: tests/data)")
    ap.add_argument("--only", nargs="*", help="fixture names to build (default: all)")
    args = ap.parse_args()

    if transformers.__version__ != "5.23.0":
        print(f"warning: built for transformers 5.23.0, running {transformers.__version__}", file=sys.stderr)
    torch.set_num_threads(1)  # reproducible float32 reductions on CPU
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    names = args.only or list(FIXTURES)
    for name in names:
        make_fixture(name, FIXTURES[name], args.out)


if __name__ == "__main__":
    main()

//! `lfm2moe.*` metadata (as llama.cpp's converter writes it) → [`Config`].
//!
//! | HF config.json | GGUF (`lfm2moe.` …) | when absent |
//! |---|---|---|
//! | num_hidden_layers, hidden_size | block_count, embedding_length | error |
//! | layer_types, num_key_value_heads | attention.head_count_kv (per layer, 0 = conv; or a scalar) | error |
//! | num_attention_heads, head_dim | attention.head_count, attention.key_length | 0; H / heads |
//! | intermediate_size, moe_intermediate_size | feed_forward_length, expert_feed_forward_length | from `ffn_gate` / `ffn_gate_exps` |
//! | num_dense_layers, num_experts | leading_dense_block_count, expert_count | from the tensors present |
//! | num_experts_per_tok | expert_used_count | 0 (an error for MoE layers) |
//! | norm_topk_prob, routed_scaling_factor | expert_weights_norm, expert_weights_scale | true, 1.0 |
//! | conv_L_cache, norm_eps, rope_theta | shortconv.l_cache, attention.layer_norm_rms_epsilon, rope.freq_base | 3, 1e-5, 1e6 |
//! | vocab_size, max_position_embeddings | vocab_size, context_length | token count; 128000 |
//! | bos / eos_token_id | tokenizer.ggml.bos_token_id / eos_token_id | none |
//! | tie_word_embeddings, use_expert_bias, conv_bias | no `output`, an `exp_probs_b`, a `shortconv.conv.bias` tensor | — |
//!
//! `expert_gating_func` must be sigmoid (2) when present. The result is written as the HF
//! config.json it stands for and parsed by `Config::from_json`: the same defaults and checks.

use super::reader::{GgufFile, Value};
use crate::error::{Error, Result};
use crate::model::config::{Config, LayerKind};

/// The architecture this engine runs.
pub const ARCH: &str = "lfm2moe";

/// Typed access to `{ARCH}.*` keys and to tensor dims, with errors naming the file.
struct Meta<'a>(&'a GgufFile);

impl Meta<'_> {
    fn err(&self, msg: String) -> Error {
        Error::Gguf {
            path: self.0.path.clone(),
            msg,
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(&format!("{ARCH}.{key}"))
    }

    fn uint(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.err(format!(
                        "{ARCH}.{key} is a {} {v:?}, expected an unsigned integer",
                        v.type_name()
                    ))
                }),
        }
    }

    fn required(&self, key: &str) -> Result<usize> {
        self.uint(key)?
            .ok_or_else(|| self.err(format!("metadata {ARCH}.{key} is missing")))
    }

    /// A scalar, or a per-layer array (its largest entry).
    fn width(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            Some(Value::Array(a)) => Ok(Some(a.iter().filter_map(Value::as_u64).max().unwrap_or(0) as usize)),
            _ => self.uint(key),
        }
    }

    fn float(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.err(format!("{ARCH}.{key} is a {}, expected a number", v.type_name()))),
        }
    }

    /// ne[axis] of tensor `name`, if present.
    fn dim(&self, name: &str, axis: usize) -> Option<usize> {
        self.0.tensor(name).and_then(|t| t.dims.get(axis)).map(|&d| d as usize)
    }

    fn has(&self, name: &str) -> bool {
        self.0.tensor(name).is_some()
    }
}

/// Builds and checks the config of `f` (see the module docs for each field's source).
pub fn config_from_gguf(f: &GgufFile) -> Result<Config> {
    let m = Meta(f);
    let arch = f.get_str("general.architecture")?;
    if arch != ARCH {
        return Err(m.err(format!(
            "architecture {arch:?} is not supported (this engine runs {ARCH:?}, LFM2-MoE)"
        )));
    }
    let n_layers = m.required("block_count")?;
    if n_layers > 4096 {
        return Err(m.err(format!("{ARCH}.block_count {n_layers} is implausible")));
    }
    let hidden = m.required("embedding_length")?;
    let (layer_types, n_kv) = layer_kinds(&m, n_layers)?;
    let n_heads = m.width("attention.head_count")?.unwrap_or(0);
    let head_dim = match m.uint("attention.key_length")? {
        Some(d) => d,
        None => hidden.checked_div(n_heads).unwrap_or(0),
    };
    if head_dim.checked_mul(n_heads) != Some(hidden) && layer_types.contains(&LayerKind::Attention) {
        return Err(m.err(format!(
            "head size {head_dim} × {n_heads} heads != embedding_length {hidden}"
        )));
    }
    if let Some(g) = m.uint("expert_gating_func")?.filter(|&g| g != 2) {
        return Err(m.err(format!(
            "{ARCH}.expert_gating_func {g} is not supported (LFM2-MoE routes with sigmoid, 2)"
        )));
    }
    let dense = match m.uint("leading_dense_block_count")? {
        Some(n) => n,
        None => (0..n_layers)
            .take_while(|i| m.has(&format!("blk.{i}.ffn_gate.weight")))
            .count(),
    };
    let first_moe = dense.min(n_layers.saturating_sub(1));
    let experts = m
        .uint("expert_count")?
        .or(m.dim(&format!("blk.{first_moe}.ffn_gate_inp.weight"), 1));
    let expert_width = m
        .uint("expert_feed_forward_length")?
        .or(m.dim(&format!("blk.{first_moe}.ffn_gate_exps.weight"), 1))
        .unwrap_or(0);
    let ffn_width = m.width("feed_forward_length")?.or(m.dim("blk.0.ffn_gate.weight", 1));
    let vocab = match (m.uint("vocab_size")?, f.get("tokenizer.ggml.tokens")) {
        (Some(v), _) => v,
        (None, Some(Value::Array(a))) => a.len(),
        _ => m
            .dim("token_embd.weight", 1)
            .ok_or_else(|| m.err(format!("metadata {ARCH}.vocab_size is missing")))?,
    };
    // A dimension no tensor of this file can have is a lying header: refused before any
    // arithmetic on it (no supported type holds more than 2 values per byte).
    let limit = 8 * f.file_len();
    let sizes = [
        ("embedding_length", Some(hidden)),
        ("feed_forward_length", ffn_width),
        ("expert_feed_forward_length", Some(expert_width)),
        ("vocab_size", Some(vocab)),
        ("attention.head_count", Some(n_heads)),
        ("attention.head_count_kv", Some(n_kv)),
        ("expert_count", experts),
    ];
    if let Some((key, Some(v))) = sizes.into_iter().find(|(_, v)| v.is_some_and(|v| v as u64 > limit)) {
        return Err(m.err(format!(
            "{ARCH}.{key} {v} is impossible for a file of {} bytes",
            f.file_len()
        )));
    }
    let first_conv = layer_types.iter().position(|k| *k == LayerKind::Conv);
    let kinds: Vec<&str> = layer_types
        .iter()
        .map(|k| match k {
            LayerKind::Conv => "conv",
            LayerKind::Attention => "full_attention",
        })
        .collect();
    let id = |key: &str| f.get(key).and_then(Value::as_u64);
    let json = serde_json::json!({
        "model_type": "lfm2_moe",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": ffn_width.unwrap_or(expert_width),
        "moe_intermediate_size": expert_width,
        "num_hidden_layers": n_layers,
        "layer_types": kinds,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "num_dense_layers": dense,
        "num_experts": experts.unwrap_or(0),
        "num_experts_per_tok": m.uint("expert_used_count")?.unwrap_or(0),
        "norm_topk_prob": m.get("expert_weights_norm").and_then(Value::as_bool).unwrap_or(true),
        "use_expert_bias": m.has(&format!("blk.{first_moe}.exp_probs_b.bias")),
        "routed_scaling_factor": m.float("expert_weights_scale", 1.0)? as f32,
        "conv_L_cache": m.uint("shortconv.l_cache")?.unwrap_or(3),
        "conv_bias": first_conv.is_some_and(|i| m.has(&format!("blk.{i}.shortconv.conv.bias"))),
        "norm_eps": m.float("attention.layer_norm_rms_epsilon", 1e-5)? as f32,
        "rope_parameters": {"rope_type": "default", "rope_theta": m.float("rope.freq_base", 1_000_000.0)?},
        "tie_word_embeddings": !m.has("output.weight"),
        "max_position_embeddings": m.uint("context_length")?.unwrap_or(128_000),
        "bos_token_id": id("tokenizer.ggml.bos_token_id"),
        "eos_token_id": id("tokenizer.ggml.eos_token_id").into_iter().collect::<Vec<_>>(),
    });
    Config::from_json(&json.to_string(), &f.path).map_err(|e| match e {
        Error::Config { msg, .. } => m.err(format!("the config from the {ARCH} metadata is invalid: {msg}")),
        other => other,
    })
}

/// Per-layer operators and the kv head count, from `attention.head_count_kv` (an array with 0
/// for conv layers, or a scalar with the kinds taken from which layers have `attn_q`).
fn layer_kinds(m: &Meta, n: usize) -> Result<(Vec<LayerKind>, usize)> {
    let key = format!("{ARCH}.attention.head_count_kv");
    let kv: Vec<u64> = match m.get("attention.head_count_kv") {
        Some(Value::Array(a)) => {
            let v: Option<Vec<u64>> = a.iter().map(Value::as_u64).collect();
            let v = v.ok_or_else(|| m.err(format!("{key} holds a non-integer")))?;
            if v.len() != n {
                return Err(m.err(format!("{key} has {} entries for {n} blocks", v.len())));
            }
            v
        }
        Some(v) => {
            let x = v
                .as_u64()
                .ok_or_else(|| m.err(format!("{key} is a {}, expected an integer", v.type_name())))?;
            (0..n)
                .map(|i| if m.has(&format!("blk.{i}.attn_q.weight")) { x } else { 0 })
                .collect()
        }
        None => return Err(m.err(format!("metadata {key} is missing"))),
    };
    let kinds = kv
        .iter()
        .map(|&k| if k == 0 { LayerKind::Conv } else { LayerKind::Attention })
        .collect();
    let mut heads = kv.iter().copied().filter(|&k| k > 0);
    let first = heads.next().unwrap_or(0);
    if heads.any(|k| k != first) {
        return Err(m.err(format!(
            "{key}: attention layers with different kv head counts ({kv:?})"
        )));
    }
    let first = usize::try_from(first).map_err(|_| m.err(format!("{key} {first} is too large")))?;
    Ok((kinds, first))
}

//! `config.json` of an HF `lfm2_moe` checkpoint, with every field that changes the math.
//!
//! Field names are Hugging Face's. Older spellings real files use are accepted:
//! `tie_embedding` for `tie_word_embeddings`, a top-level `rope_theta` instead of
//! `rope_parameters.rope_theta`, `full_attn_idxs` when `layer_types` is absent.

use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// The operator of one layer (docs §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Gated short convolution (docs §6).
    Conv,
    /// Grouped-query attention with per-head q/k norms and NeoX RoPE (docs §7).
    Attention,
}

/// Model hyperparameters, checked for consistency at parse time.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub vocab_size: usize,
    /// H
    pub hidden_size: usize,
    /// Dense SwiGLU width (layers below `num_dense_layers`).
    pub intermediate_size: usize,
    /// Width of one routed expert.
    pub moe_intermediate_size: usize,
    pub layer_types: Vec<LayerKind>,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub num_dense_layers: usize,
    pub num_experts: usize,
    pub num_experts_per_tok: usize,
    pub norm_topk_prob: bool,
    pub use_expert_bias: bool,
    pub routed_scaling_factor: f32,
    /// K, the short-conv kernel length.
    pub conv_l_cache: usize,
    pub conv_bias: bool,
    pub norm_eps: f32,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

/// Longest short-conv kernel the kernels support (history kept in registers).
pub const MAX_CONV_L_CACHE: usize = 8;
/// Widest head the attention kernels support.
pub const MAX_HEAD_DIM: usize = 256;
/// Most experts per token the router kernel supports.
pub const MAX_TOPK: usize = 8;
/// Most experts per layer the router kernel supports.
pub const MAX_EXPERTS: usize = 256;
/// Largest vocabulary: the sampler counts tokens exactly in f32.
pub const MAX_VOCAB: usize = 1 << 24;
/// Bounds on the other sizes a config may give (far above any LFM2 model; they keep every
/// product the kernels index with u32 in range and every allocation plausible).
pub const MAX_LAYERS: usize = 512;
pub const MAX_HIDDEN: usize = 1 << 16;
pub const MAX_INTERMEDIATE: usize = 1 << 18;
pub const MAX_HEADS: usize = 1024;
pub const MAX_POSITIONS: usize = 1 << 24;

impl Config {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, path)
    }

    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let err = |msg: String| Error::Config {
            path: path.to_path_buf(),
            msg,
        };
        let v: Value = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
        if model_type != "lfm2_moe" {
            return Err(Error::ModelType {
                path: path.to_path_buf(),
                found: model_type.to_string(),
            });
        }
        let usize_field = |name: &str| -> Result<usize> {
            v.get(name)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| err(format!("missing or non-integer field `{name}`")))
        };
        let usize_or = |name: &str, default: usize| -> Result<usize> {
            match v.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x
                    .as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| err(format!("field `{name}` must be a non-negative integer"))),
            }
        };
        let bool_or = |names: &[&str], default: bool| -> Result<bool> {
            for name in names {
                if let Some(x) = v.get(*name) {
                    return x
                        .as_bool()
                        .ok_or_else(|| err(format!("field `{name}` must be a boolean")));
                }
            }
            Ok(default)
        };
        let f64_or = |name: &str, default: f64| -> Result<f64> {
            match v.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x
                    .as_f64()
                    .ok_or_else(|| err(format!("field `{name}` must be a number"))),
            }
        };

        let hidden_size = usize_field("hidden_size")?;
        let num_hidden_layers = usize_field("num_hidden_layers")?;
        let num_attention_heads = usize_field("num_attention_heads")?;
        let num_key_value_heads = usize_or("num_key_value_heads", num_attention_heads)?;

        let layer_types = match v.get("layer_types") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, t)| match t.as_str() {
                    Some("conv") => Ok(LayerKind::Conv),
                    Some("full_attention") | Some("attention") => Ok(LayerKind::Attention),
                    other => Err(err(format!(
                        "layer_types[{i}] = {other:?}: expected \"conv\" or \"full_attention\""
                    ))),
                })
                .collect::<Result<Vec<_>>>()?,
            _ => match v.get("full_attn_idxs") {
                Some(Value::Array(idx)) => {
                    let mut kinds = vec![LayerKind::Conv; num_hidden_layers];
                    for i in idx {
                        let i = i.as_u64().map(|i| i as usize).filter(|&i| i < num_hidden_layers);
                        let i = i.ok_or_else(|| err("full_attn_idxs holds an invalid layer index".into()))?;
                        kinds[i] = LayerKind::Attention;
                    }
                    kinds
                }
                _ => return Err(err("missing field `layer_types`".into())),
            },
        };
        if layer_types.len() != num_hidden_layers {
            return Err(err(format!(
                "layer_types has {} entries but num_hidden_layers is {num_hidden_layers}",
                layer_types.len()
            )));
        }

        let rope_theta = match v.get("rope_parameters").and_then(|p| p.get("rope_theta")) {
            Some(t) => t
                .as_f64()
                .ok_or_else(|| err("rope_parameters.rope_theta must be a number".into()))?,
            None => f64_or("rope_theta", 1_000_000.0)?,
        };
        if let Some(kind) = v
            .get("rope_parameters")
            .and_then(|p| p.get("rope_type"))
            .and_then(Value::as_str)
        {
            if kind != "default" {
                return Err(err(format!("rope_type {kind:?} is not supported (only \"default\")")));
            }
        }
        let eos_token_ids = match v.get("eos_token_id") {
            Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect(),
            Some(x) => x.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
            None => vec![],
        };

        let head_dim = match v.get("head_dim").and_then(Value::as_u64) {
            Some(d) => d as usize,
            None if num_attention_heads > 0 => hidden_size / num_attention_heads,
            None => 0,
        };

        let cfg = Config {
            vocab_size: usize_field("vocab_size")?,
            hidden_size,
            intermediate_size: usize_field("intermediate_size")?,
            moe_intermediate_size: usize_field("moe_intermediate_size")?,
            layer_types,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            num_dense_layers: usize_or("num_dense_layers", 0)?,
            num_experts: usize_field("num_experts")?,
            num_experts_per_tok: usize_field("num_experts_per_tok")?,
            norm_topk_prob: bool_or(&["norm_topk_prob"], true)?,
            use_expert_bias: bool_or(&["use_expert_bias"], true)?,
            routed_scaling_factor: f64_or("routed_scaling_factor", 1.0)? as f32,
            conv_l_cache: usize_or("conv_L_cache", 3)?,
            conv_bias: bool_or(&["conv_bias"], false)?,
            norm_eps: f64_or("norm_eps", 1e-5)? as f32,
            rope_theta,
            tie_word_embeddings: bool_or(&["tie_word_embeddings", "tie_embedding"], true)?,
            max_position_embeddings: usize_or("max_position_embeddings", 128_000)?,
            bos_token_id: v.get("bos_token_id").and_then(Value::as_u64).map(|x| x as u32),
            eos_token_ids,
        };
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// Constraints the math and the kernels rely on, each with a readable message.
    fn validate(&self) -> std::result::Result<(), String> {
        let c = self;
        let by8 = |name: &str, x: usize| {
            if x == 0 || !x.is_multiple_of(8) {
                Err(format!(
                    "{name} = {x} must be a non-zero multiple of 8 (weights are read 8 at a time)"
                ))
            } else {
                Ok(())
            }
        };
        let at_most = |name: &str, x: usize, max: usize| match x <= max {
            true => Ok(()),
            false => Err(format!("{name} = {x} exceeds the supported maximum {max}")),
        };
        at_most("vocab_size", c.vocab_size, MAX_VOCAB)?;
        at_most("num_hidden_layers", c.layer_types.len(), MAX_LAYERS)?;
        at_most("hidden_size", c.hidden_size, MAX_HIDDEN)?;
        at_most("intermediate_size", c.intermediate_size, MAX_INTERMEDIATE)?;
        at_most("moe_intermediate_size", c.moe_intermediate_size, MAX_INTERMEDIATE)?;
        at_most("num_attention_heads", c.num_attention_heads, MAX_HEADS)?;
        at_most("num_key_value_heads", c.num_key_value_heads, MAX_HEADS)?;
        at_most("head_dim", c.head_dim, MAX_HEAD_DIM)?;
        at_most("max_position_embeddings", c.max_position_embeddings, MAX_POSITIONS)?;
        by8("hidden_size", c.hidden_size)?;
        by8("intermediate_size", c.intermediate_size)?;
        by8("moe_intermediate_size", c.moe_intermediate_size)?;
        if c.layer_types.is_empty() {
            return Err("num_hidden_layers must be positive".into());
        }
        if c.vocab_size == 0 {
            return Err("vocab_size must be positive".into());
        }
        // Every matrix is indexed with u32 element offsets.
        let e = c.num_experts.max(1);
        for (what, dims) in [
            ("vocab_size × hidden_size", [c.vocab_size, c.hidden_size, 1]),
            ("qkv rows × hidden_size", [c.qkv_dim(), c.hidden_size, 1]),
            ("3 × hidden_size²", [3 * c.hidden_size, c.hidden_size, 1]),
            (
                "intermediate_size × hidden_size",
                [c.intermediate_size, c.hidden_size, 1],
            ),
            (
                "num_experts × moe_intermediate_size × hidden_size",
                [e, c.moe_intermediate_size, c.hidden_size],
            ),
        ] {
            let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if n.is_none_or(|n| n > u32::MAX as usize) {
                return Err(format!("{what} ({dims:?}) exceeds 2^32 elements in one matrix"));
            }
        }
        if c.layer_types.contains(&LayerKind::Attention) {
            if c.num_attention_heads == 0 || c.num_key_value_heads == 0 {
                return Err("attention layers need num_attention_heads and num_key_value_heads > 0".into());
            }
            if !c.num_attention_heads.is_multiple_of(c.num_key_value_heads) {
                return Err(format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    c.num_attention_heads, c.num_key_value_heads
                ));
            }
            if c.head_dim * c.num_attention_heads != c.hidden_size {
                return Err(format!(
                    "head_dim {} × heads {} != hidden_size {}",
                    c.head_dim, c.num_attention_heads, c.hidden_size
                ));
            }
            by8("num_attention_heads × head_dim", c.num_attention_heads * c.head_dim)?;
            if !c.head_dim.is_multiple_of(4) || c.head_dim > MAX_HEAD_DIM {
                return Err(format!(
                    "head_dim {} must be a multiple of 4 and at most {MAX_HEAD_DIM}",
                    c.head_dim
                ));
            }
        }
        if c.num_dense_layers > c.layer_types.len() {
            return Err(format!(
                "num_dense_layers {} exceeds num_hidden_layers {}",
                c.num_dense_layers,
                c.layer_types.len()
            ));
        }
        if c.num_dense_layers < c.layer_types.len() {
            if c.num_experts == 0 || c.num_experts > MAX_EXPERTS {
                return Err(format!("num_experts {} must be in 1..={MAX_EXPERTS}", c.num_experts));
            }
            if c.num_experts_per_tok == 0 || c.num_experts_per_tok > c.num_experts || c.num_experts_per_tok > MAX_TOPK {
                return Err(format!(
                    "num_experts_per_tok {} must be in 1..=min(num_experts, {MAX_TOPK})",
                    c.num_experts_per_tok
                ));
            }
        }
        if c.conv_l_cache < 2 || c.conv_l_cache > MAX_CONV_L_CACHE {
            return Err(format!(
                "conv_L_cache {} must be in 2..={MAX_CONV_L_CACHE}",
                c.conv_l_cache
            ));
        }
        if !(c.norm_eps > 0.0 && c.norm_eps < 1.0) {
            return Err(format!("norm_eps = {} must be in (0, 1)", c.norm_eps));
        }
        if !(c.rope_theta > 0.0 && c.rope_theta.is_finite()) {
            return Err(format!("rope theta = {} must be finite and positive", c.rope_theta));
        }
        if !(c.routed_scaling_factor > 0.0 && c.routed_scaling_factor <= 1e4) {
            return Err(format!(
                "routed_scaling_factor = {} must be in (0, 10000]",
                c.routed_scaling_factor
            ));
        }
        Ok(())
    }

    /// LFM2-8B-A1B's shape (docs §1) with the first `layers` layers of its schedule
    /// (attention at 2, 6, 10, 14, 18, 21; 24 is the real model). A shorter stack keeps
    /// dense layers in proportion (2 of 24, at least one).
    pub fn lfm2_8b_a1b(layers: usize) -> Result<Self> {
        const ATTENTION: [usize; 6] = [2, 6, 10, 14, 18, 21];
        let bad = |msg: String| Error::Config {
            path: "<built-in LFM2-8B-A1B shape>".into(),
            msg,
        };
        if !(1..=24).contains(&layers) {
            return Err(Error::Invalid(format!("{layers} layers: LFM2-8B-A1B has 1 to 24")));
        }
        let cfg = Config {
            vocab_size: 65536,
            hidden_size: 2048,
            intermediate_size: 7168,
            moe_intermediate_size: 1792,
            layer_types: (0..layers)
                .map(|i| match ATTENTION.contains(&i) {
                    true => LayerKind::Attention,
                    false => LayerKind::Conv,
                })
                .collect(),
            num_attention_heads: 32,
            num_key_value_heads: 8,
            head_dim: 64,
            num_dense_layers: (2 * layers).div_ceil(24),
            num_experts: 32,
            num_experts_per_tok: 4,
            norm_topk_prob: true,
            use_expert_bias: true,
            routed_scaling_factor: 1.0,
            conv_l_cache: 3,
            conv_bias: false,
            norm_eps: 1e-5,
            rope_theta: 1_000_000.0,
            tie_word_embeddings: true,
            max_position_embeddings: 128_000,
            bos_token_id: Some(1),
            eos_token_ids: vec![7],
        };
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    /// (total parameters, parameters active per token: the top-k experts of each MoE layer,
    /// the tied embedding counted once).
    pub fn parameter_counts(&self) -> (u64, u64) {
        let (h, v) = (self.hidden_size as u64, self.vocab_size as u64);
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        let (mut total, mut active) = (v * h + head + h, v * h + head + h);
        for (i, kind) in self.layer_types.iter().enumerate() {
            let mut common = 2 * h;
            common += match kind {
                LayerKind::Conv => {
                    let bias = if self.conv_bias { 5 * h } else { 0 };
                    3 * h * h + h * self.conv_l_cache as u64 + h * h + bias
                }
                LayerKind::Attention => {
                    let d = self.head_dim as u64;
                    self.qkv_dim() as u64 * h + 2 * d + h * self.num_attention_heads as u64 * d
                }
            };
            let (e, k) = (self.num_experts as u64, self.num_experts_per_tok as u64);
            let expert = 3 * h * self.moe_intermediate_size as u64;
            let (t, a) = match self.is_moe(i) {
                true => {
                    let router = e * h + if self.use_expert_bias { e } else { 0 };
                    (router + e * expert, router + k * expert)
                }
                false => (
                    3 * h * self.intermediate_size as u64,
                    3 * h * self.intermediate_size as u64,
                ),
            };
            total += common + t;
            active += common + a;
        }
        (total, active)
    }

    /// The config as an HF `config.json` (what [`Config::from_json`] reads back).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let kinds: Vec<&str> = self
            .layer_types
            .iter()
            .map(|k| match k {
                LayerKind::Conv => "conv",
                LayerKind::Attention => "full_attention",
            })
            .collect();
        serde_json::json!({
            "architectures": ["Lfm2MoeForCausalLM"], "model_type": "lfm2_moe",
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "moe_intermediate_size": self.moe_intermediate_size,
            "num_hidden_layers": self.num_layers(), "layer_types": kinds,
            "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_key_value_heads,
            "num_dense_layers": self.num_dense_layers, "num_experts": self.num_experts,
            "num_experts_per_tok": self.num_experts_per_tok, "norm_topk_prob": self.norm_topk_prob,
            "use_expert_bias": self.use_expert_bias, "routed_scaling_factor": self.routed_scaling_factor,
            "conv_L_cache": self.conv_l_cache, "conv_bias": self.conv_bias, "norm_eps": self.norm_eps,
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "bos_token_id": self.bos_token_id, "eos_token_id": self.eos_token_ids,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.layer_types.len()
    }

    pub fn is_moe(&self, layer: usize) -> bool {
        layer >= self.num_dense_layers
    }

    /// Width of the fused q|k|v projection output.
    pub fn qkv_dim(&self) -> usize {
        (self.num_attention_heads + 2 * self.num_key_value_heads) * self.head_dim
    }

    /// RoPE inverse frequencies θ_i = 1 / theta^(2i/d), in f32 as transformers computes them.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        (0..d / 2)
            .map(|i| 1.0 / (self.rope_theta as f32).powf((2 * i) as f32 / d as f32))
            .collect()
    }

    /// cos/sin of position `pos`: angle = f32(pos)·θ_i in f32 (as HF), trig in f64.
    pub fn rope_cos_sin(&self, inv_freq: &[f32], pos: usize) -> (Vec<f32>, Vec<f32>) {
        inv_freq
            .iter()
            .map(|&f| {
                let a = (pos as f32 * f) as f64;
                (a.cos() as f32, a.sin() as f32)
            })
            .unzip()
    }
}

//! An `lfm2moe` GGUF file as a weight [`Source`]: its config from the `lfm2moe.*` metadata, and
//! the HF tensor names [`Weights::load`](crate::model::weights::Weights::load) asks for mapped
//! onto llama.cpp's (`docs/gguf.md` in the shared docs):
//!
//! | HF (`model.layers.{i}.` …) | GGUF (`blk.{i}.` …) | GGUF ne (innermost first) |
//! |---|---|---|
//! | `model.embed_tokens.weight` [V, H] | `token_embd.weight` | {H, V} |
//! | `model.embedding_norm.weight` [H] (final norm) | `token_embd_norm.weight` | {H} |
//! | `lm_head.weight` [V, H] (untied only) | `output.weight` | {H, V} |
//! | `operator_norm.weight`, `ffn_norm.weight` | `attn_norm.weight`, `ffn_norm.weight` | {H} |
//! | `conv.in_proj` / `conv.out_proj` `.weight`/`.bias` | `shortconv.in_proj` / `shortconv.out_proj` | {H, 3H}, {H, H} |
//! | `conv.conv.weight` [H, 1, K] | `shortconv.conv.weight` | {K, H} |
//! | `self_attn.{q,k,v,out}_proj.weight` | `attn_{q,k,v,output}.weight` | {H, rows} |
//! | `self_attn.{q,k}_layernorm.weight` | `attn_{q,k}_norm.weight` | {d} |
//! | `feed_forward.w1/w3/w2.weight` (dense) | `ffn_gate/ffn_up/ffn_down.weight` | {H, I}, {I, H} |
//! | `feed_forward.gate.weight` [E, H] | `ffn_gate_inp.weight` | {H, E} |
//! | `feed_forward.expert_bias` [E] | `exp_probs_b.bias` | {E} |
//! | `feed_forward.experts.{e}.w1/w3/w2.weight` | slice e of `ffn_gate_exps/ffn_up_exps/ffn_down_exps.weight` | {H, Im, E}, {Im, H, E} |
//!
//! The element order is the same on both sides (GGUF's innermost dimension is HF's last), so a
//! tensor is dequantized straight into the engine's row-major buffer; an expert's read touches
//! only its own slice of the stacked tensor.

use super::reader::{GgufFile, TensorInfo, Value};
use crate::chat::{ChatTemplate, SpecialTokens};
use crate::error::{Error, Result};
use crate::model::config::{Config, LayerKind};
use crate::model::weights::{MatSpec, Source, WeightSink, Weights};
use crate::tokenizer::Tokenizer;
use std::path::Path;

/// The architecture this engine runs.
pub const ARCH: &str = "lfm2moe";

/// An opened `lfm2moe` GGUF file with its config.
#[derive(Debug)]
pub struct GgufModel {
    pub file: GgufFile,
    pub config: Config,
}

impl GgufModel {
    /// Opens `path`, checks its architecture, builds the config from its metadata, and checks
    /// that every tensor the config calls for is present with its shape and a supported type
    /// (nothing is read or allocated for that).
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_file(GgufFile::open(path)?)
    }

    pub fn from_file(file: GgufFile) -> Result<Self> {
        let config = config_from_gguf(&file)?;
        let model = GgufModel { file, config };
        Weights::<(), ()>::load(&model, &mut ShapeCheck(&model))?;
        Ok(model)
    }

    /// The tokenizer stored in the file (`tokenizer.ggml.*`).
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        Tokenizer::from_gguf(&self.file)
    }

    /// The file's chat template; see [`chat_template`].
    pub fn chat_template(&self, tok: &Tokenizer) -> Result<Option<ChatTemplate>> {
        chat_template(&self.file, tok)
    }

    fn err(&self, msg: String) -> Error {
        Error::Gguf {
            path: self.file.path.clone(),
            msg,
        }
    }

    /// The GGUF tensor behind HF tensor `name` and the ne it must have for HF `shape`, with the
    /// expert index when `name` is one expert of a stacked tensor.
    fn locate(&self, name: &str, shape: &[usize]) -> Result<(&TensorInfo, Vec<usize>, Option<usize>)> {
        let (gguf, expert) = gguf_name(name).ok_or_else(|| self.err(format!("no GGUF tensor is known for {name}")))?;
        let t = self.file.tensor(&gguf).ok_or_else(|| Error::MissingTensor {
            name: format!("{gguf} (HF {name})"),
            dir: self.file.path.clone(),
        })?;
        let mut want: Vec<usize> = shape.iter().rev().copied().collect();
        if name.ends_with("conv.conv.weight") {
            want.retain(|&d| d != 1);
        }
        if expert.is_some() {
            want.push(self.config.num_experts);
        }
        if t.shape() != want {
            return Err(Error::Shape {
                name: format!("{gguf} (HF {name}, GGUF ne innermost first)"),
                found: t.shape(),
                expected: want,
            });
        }
        Ok((t, want, expert))
    }
}

/// `tokenizer.chat_template` (with `tokenizer.chat_template.tool_use` when present) compiled
/// with the bos/eos/pad tokens of `tok`; None when the file has no template.
pub fn chat_template(f: &GgufFile, tok: &Tokenizer) -> Result<Option<ChatTemplate>> {
    let Some(source) = f.get("tokenizer.chat_template").and_then(Value::as_str) else {
        return Ok(None);
    };
    let tool_use = f.get("tokenizer.chat_template.tool_use").and_then(Value::as_str);
    let name = |id: Option<u32>| id.and_then(|i| tok.token(i));
    let special = SpecialTokens {
        bos_token: name(tok.bos_id()),
        eos_token: name(tok.eos_id()),
        pad_token: name(tok.pad_id()),
        unk_token: None,
    };
    let origin = format!("{} (tokenizer.chat_template)", f.path.display());
    ChatTemplate::new(source, tool_use, &origin, special).map(Some)
}

/// A [`WeightSink`] that only checks: each tensor exists with its shape and a supported type.
struct ShapeCheck<'a>(&'a GgufModel);

impl ShapeCheck<'_> {
    fn check(&self, name: &str, shape: &[usize]) -> Result<()> {
        let (t, _, _) = self.0.locate(name, shape)?;
        match t.ty.is_supported() {
            true => Ok(()),
            false => Err(self.0.err(format!(
                "tensor {} has type {}, which is not supported (supported: {})",
                t.name,
                t.ty,
                super::GgmlType::supported_list()
            ))),
        }
    }
}

impl WeightSink for ShapeCheck<'_> {
    type Matrix = ();
    type Vector = ();

    fn matrix(&mut self, _src: &dyn Source, spec: &MatSpec) -> Result<()> {
        spec.parts.iter().try_for_each(|p| self.check(&p.name, &p.shape))
    }

    fn vector(&mut self, _src: &dyn Source, name: &str, shape: &[usize]) -> Result<()> {
        self.check(name, shape)
    }
}

/// HF name → (GGUF name, expert index).
pub fn gguf_name(hf: &str) -> Option<(String, Option<usize>)> {
    let top = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.embedding_norm.weight" => Some("token_embd_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some((t.to_string(), None));
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (i, rest) = rest.split_once('.')?;
    let i: usize = i.parse().ok()?;
    if let Some(x) = rest.strip_prefix("feed_forward.experts.") {
        let (e, w) = x.split_once('.')?;
        let e: usize = e.parse().ok()?;
        let stacked = match w {
            "w1.weight" => "ffn_gate_exps",
            "w3.weight" => "ffn_up_exps",
            "w2.weight" => "ffn_down_exps",
            _ => return None,
        };
        return Some((format!("blk.{i}.{stacked}.weight"), Some(e)));
    }
    let (module, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" && module != "feed_forward" {
        return None;
    }
    let g = match (module, suffix) {
        ("feed_forward", "expert_bias") => return Some((format!("blk.{i}.exp_probs_b.bias"), None)),
        ("operator_norm", _) => "attn_norm",
        ("ffn_norm", _) => "ffn_norm",
        ("conv.in_proj", _) => "shortconv.in_proj",
        ("conv.out_proj", _) => "shortconv.out_proj",
        ("conv.conv", _) => "shortconv.conv",
        ("self_attn.q_proj", _) => "attn_q",
        ("self_attn.k_proj", _) => "attn_k",
        ("self_attn.v_proj", _) => "attn_v",
        ("self_attn.out_proj", _) => "attn_output",
        ("self_attn.q_layernorm", _) => "attn_q_norm",
        ("self_attn.k_layernorm", _) => "attn_k_norm",
        ("feed_forward.w1", _) => "ffn_gate",
        ("feed_forward.w3", _) => "ffn_up",
        ("feed_forward.w2", _) => "ffn_down",
        ("feed_forward.gate", _) => "ffn_gate_inp",
        _ => return None,
    };
    Some((format!("blk.{i}.{g}.{suffix}"), None))
}

impl Source for GgufModel {
    fn config(&self) -> &Config {
        &self.config
    }

    fn read_f32(&self, name: &str, shape: &[usize], out: &mut [f32]) -> Result<()> {
        let (t, want, expert) = self.locate(name, shape)?;
        let n: usize = shape.iter().product();
        if out.len() != n {
            return Err(Error::Invalid(format!(
                "read_f32({name}): buffer of {} values for shape {shape:?}",
                out.len()
            )));
        }
        let bytes = self.file.tensor_bytes(t);
        let bytes = match expert {
            None => bytes,
            Some(e) => {
                let per = bytes.len() / want[want.len() - 1];
                bytes
                    .get(e * per..(e + 1) * per)
                    .ok_or_else(|| self.err(format!("{name}: expert {e} is outside {} ({want:?})", t.name)))?
            }
        };
        self.file.dequantize(t, bytes, out)?;
        if expert.is_none_or(|e| e + 1 == self.config.num_experts) {
            self.file.drop_pages(t);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.file.path.display().to_string()
    }

    fn release(&self, _spec: &MatSpec) {}
}

/// Metadata `{ARCH}.{key}`.
fn arch_key<'a>(f: &'a GgufFile, key: &str) -> Option<&'a Value> {
    f.get(&format!("{ARCH}.{key}"))
}

/// Builds the config from the `lfm2moe.*` metadata and the tensors present (tied head: no
/// `output`; expert bias: `exp_probs_b` present; conv bias: `shortconv.conv.bias` present), as
/// the HF config.json it stands for, and parses that with `Config::from_json`: the same
/// defaults and checks as a checkpoint directory.
pub fn config_from_gguf(f: &GgufFile) -> Result<Config> {
    let err = |msg: String| Error::Gguf {
        path: f.path.clone(),
        msg,
    };
    let arch = f.get_str("general.architecture")?;
    if arch != ARCH {
        return Err(err(format!(
            "architecture {arch:?} is not supported (this engine runs {ARCH:?}, LFM2-MoE)"
        )));
    }
    let uint = |key: &str| -> Result<Option<usize>> {
        match arch_key(f, key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| {
                    err(format!(
                        "{ARCH}.{key} is a {} {v:?}, expected an unsigned integer",
                        v.type_name()
                    ))
                }),
        }
    };
    let required = |key: &str| uint(key)?.ok_or_else(|| err(format!("metadata {ARCH}.{key} is missing")));
    let float = |key: &str, default: f64| -> Result<f64> {
        match arch_key(f, key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| err(format!("{ARCH}.{key} is a {}, expected a number", v.type_name()))),
        }
    };
    let dim = |name: &str, axis: usize| f.tensor(name).and_then(|t| t.dims.get(axis)).map(|&d| d as usize);
    let has = |name: String| f.tensor(&name).is_some();

    let n_layers = required("block_count")?;
    let hidden = required("embedding_length")?;
    if n_layers > 4096 {
        return Err(err(format!("{ARCH}.block_count {n_layers} is implausible")));
    }
    let (layer_types, n_kv) = layer_kinds(f, n_layers, &err)?;
    let n_heads = match arch_key(f, "attention.head_count") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).max().unwrap_or(0) as usize,
        Some(_) => required("attention.head_count")?,
        None => 0,
    };
    let head_dim = match uint("attention.key_length")? {
        Some(d) => d,
        None if n_heads > 0 => hidden / n_heads,
        None => 0,
    };
    if head_dim * n_heads != hidden && layer_types.contains(&LayerKind::Attention) {
        return Err(err(format!(
            "head size {head_dim} × {n_heads} heads != embedding_length {hidden}"
        )));
    }
    let dense = match uint("leading_dense_block_count")? {
        Some(n) => n,
        None => (0..n_layers)
            .take_while(|i| has(format!("blk.{i}.ffn_gate.weight")))
            .count(),
    };
    let first_moe = dense.min(n_layers.saturating_sub(1));
    let experts = match uint("expert_count")? {
        Some(e) => e,
        None => dim(&format!("blk.{first_moe}.ffn_gate_inp.weight"), 1).unwrap_or(0),
    };
    let expert_width = match uint("expert_feed_forward_length")? {
        Some(w) => w,
        None => dim(&format!("blk.{first_moe}.ffn_gate_exps.weight"), 1).unwrap_or(0),
    };
    let ffn_width = match arch_key(f, "feed_forward_length") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).max().unwrap_or(0) as usize,
        Some(_) => required("feed_forward_length")?,
        None => dim("blk.0.ffn_gate.weight", 1).unwrap_or(expert_width),
    };
    if let Some(g) = uint("expert_gating_func")? {
        if g != 2 {
            return Err(err(format!(
                "{ARCH}.expert_gating_func {g} is not supported (LFM2-MoE routes with sigmoid, 2)"
            )));
        }
    }
    let vocab = match uint("vocab_size")? {
        Some(v) => v,
        None => match f.get("tokenizer.ggml.tokens") {
            Some(Value::Array(a)) => a.len(),
            _ => dim("token_embd.weight", 1).ok_or_else(|| err(format!("metadata {ARCH}.vocab_size is missing")))?,
        },
    };
    let first_conv = layer_types.iter().position(|k| *k == LayerKind::Conv);
    let kinds: Vec<&str> = layer_types
        .iter()
        .map(|k| match k {
            LayerKind::Conv => "conv",
            LayerKind::Attention => "full_attention",
        })
        .collect();
    let id = |key: &str| f.get(key).and_then(Value::as_u64);
    // The config as the config.json it was converted from, checked by the same code.
    let json = serde_json::json!({
        "model_type": "lfm2_moe",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": ffn_width,
        "moe_intermediate_size": expert_width,
        "num_hidden_layers": n_layers,
        "layer_types": kinds,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "num_dense_layers": dense,
        "num_experts": experts,
        "num_experts_per_tok": uint("expert_used_count")?.unwrap_or(0),
        "norm_topk_prob": arch_key(f, "expert_weights_norm").and_then(Value::as_bool).unwrap_or(true),
        "use_expert_bias": has(format!("blk.{first_moe}.exp_probs_b.bias")),
        "routed_scaling_factor": float("expert_weights_scale", 1.0)? as f32,
        "conv_L_cache": uint("shortconv.l_cache")?.unwrap_or(3),
        "conv_bias": first_conv.is_some_and(|i| has(format!("blk.{i}.shortconv.conv.bias"))),
        "norm_eps": float("attention.layer_norm_rms_epsilon", 1e-5)? as f32,
        "rope_parameters": {"rope_type": "default", "rope_theta": float("rope.freq_base", 1_000_000.0)?},
        "tie_word_embeddings": f.tensor("output.weight").is_none(),
        "max_position_embeddings": uint("context_length")?.unwrap_or(128_000),
        "bos_token_id": id("tokenizer.ggml.bos_token_id"),
        "eos_token_id": id("tokenizer.ggml.eos_token_id").into_iter().collect::<Vec<_>>(),
    });
    Config::from_json(&json.to_string(), &f.path).map_err(|e| match e {
        Error::Config { msg, .. } => err(format!("the config from the {ARCH} metadata is invalid: {msg}")),
        other => other,
    })
}

/// Per-layer operators and the kv head count, from `attention.head_count_kv` (an array with 0
/// for conv layers, or a scalar with the kinds taken from which layers have `attn_q`).
fn layer_kinds(f: &GgufFile, n: usize, err: &dyn Fn(String) -> Error) -> Result<(Vec<LayerKind>, usize)> {
    let key = format!("{ARCH}.attention.head_count_kv");
    let kv: Vec<u64> = match f.get(&key) {
        Some(Value::Array(a)) => {
            let v: Option<Vec<u64>> = a.iter().map(Value::as_u64).collect();
            let v = v.ok_or_else(|| err(format!("{key} holds a non-integer")))?;
            if v.len() != n {
                return Err(err(format!("{key} has {} entries for {n} blocks", v.len())));
            }
            v
        }
        Some(v) => {
            let x = v
                .as_u64()
                .ok_or_else(|| err(format!("{key} is a {}, expected an integer", v.type_name())))?;
            (0..n)
                .map(|i| match f.tensor(&format!("blk.{i}.attn_q.weight")) {
                    Some(_) => x,
                    None => 0,
                })
                .collect()
        }
        None => return Err(err(format!("metadata {key} is missing"))),
    };
    let kinds = kv
        .iter()
        .map(|&k| match k {
            0 => LayerKind::Conv,
            _ => LayerKind::Attention,
        })
        .collect();
    let mut heads = kv.iter().copied().filter(|&k| k > 0);
    let first = heads.next().unwrap_or(0);
    if heads.any(|k| k != first) {
        return Err(err(format!(
            "{key}: attention layers with different kv head counts ({kv:?})"
        )));
    }
    Ok((
        kinds,
        usize::try_from(first).map_err(|_| err(format!("{key} {first} is too large")))?,
    ))
}

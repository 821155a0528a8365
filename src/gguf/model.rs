//! An `lfm2moe` GGUF file as a weight [`Source`]: its config from the `lfm2moe.*` metadata, and
//! the HF tensor names [`Weights::load`](crate::model::weights::Weights::load) asks for mapped
//! onto llama.cpp's (`docs/gguf.md` in the shared docs):
//!
//! | HF (`model.layers.{i}.` …) | GGUF (`blk.{i}.` …) | GGUF ne (innermost first) |
//! |---|---|---|
//! | `model.embed_tokens.weight` `[V, H]` | `token_embd.weight` | {H, V} |
//! | `model.embedding_norm.weight` `[H]` (final norm) | `token_embd_norm.weight` | {H} |
//! | `lm_head.weight` `[V, H]` (untied only) | `output.weight` | {H, V} |
//! | `operator_norm.weight`, `ffn_norm.weight` | `attn_norm.weight`, `ffn_norm.weight` | {H} |
//! | `conv.in_proj` / `conv.out_proj` `.weight`/`.bias` | `shortconv.in_proj` / `shortconv.out_proj` | {H, 3H}, {H, H} |
//! | `conv.conv.weight` `[H, 1, K]` | `shortconv.conv.weight` | {K, H} |
//! | `self_attn.{q,k,v,out}_proj.weight` | `attn_{q,k,v,output}.weight` | {H, rows} |
//! | `self_attn.{q,k}_layernorm.weight` | `attn_{q,k}_norm.weight` | {d} |
//! | `feed_forward.w1/w3/w2.weight` (dense) | `ffn_gate/ffn_up/ffn_down.weight` | {H, I}, {I, H} |
//! | `feed_forward.gate.weight` `[E, H]` | `ffn_gate_inp.weight` | {H, E} |
//! | `feed_forward.expert_bias` `[E]` | `exp_probs_b.bias` | {E} |
//! | `feed_forward.experts.{e}.w1/w3/w2.weight` | slice e of `ffn_gate_exps/ffn_up_exps/ffn_down_exps.weight` | {H, Im, E}, {Im, H, E} |
//!
//! The element order is the same on both sides (GGUF's innermost dimension is HF's last), so a
//! tensor is dequantized straight into the engine's row-major buffer; an expert's read touches
//! only its own slice of the stacked tensor.

use super::reader::{GgufFile, TensorInfo, Value};
use crate::chat::{ChatTemplate, SpecialTokens};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::model::config::Config;
use crate::model::weights::{MatSpec, Part, Pieces, Source, Streamable, WeightSink, Weights};
use crate::tokenizer::Tokenizer;
use std::path::Path;

pub use super::config::{config_from_gguf, ARCH};

/// An opened `lfm2moe` GGUF file with its config.
#[derive(Debug)]
pub struct GgufModel {
    pub file: GgufFile,
    pub config: Config,
    /// Matrices go to the GPU in their own block formats (the default). False: they are
    /// dequantized and converted to the format the loader asks for (`--dtype`).
    pub native: bool,
}

impl GgufModel {
    /// Opens `path`, checks its architecture, builds the config from its metadata, and checks
    /// that every tensor the config calls for is present with its shape and a supported type
    /// (nothing is read or allocated for that).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_file(GgufFile::open(path)?)
    }

    /// A GGUF file arriving in pieces, of which `head` (its first bytes) is here: None when
    /// its header runs past `head` (ask again with more; see [`GgufFile::streamed`]).
    pub fn streamed(path: &Path, head: Vec<u8>, len: u64) -> Result<Option<Self>> {
        match GgufFile::streamed(path, head, len)? {
            None => Ok(None),
            Some(file) => Self::from_file(file).map(Some),
        }
    }

    pub fn from_file(file: GgufFile) -> Result<Self> {
        let config = config_from_gguf(&file)?;
        let model = GgufModel {
            file,
            config,
            native: true,
        };
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

    /// The format holding most of the matrices' bytes (Q4_K in a Q4_K_M file): what the
    /// model is called when loaded as it is.
    pub fn main_dtype(&self) -> DType {
        let mut bytes: Vec<(DType, u64)> = Vec::new();
        for t in self.file.tensors().iter().filter(|t| t.dims.len() >= 2) {
            let Some(d) = t.ty.dtype() else { continue };
            match bytes.iter_mut().find(|(x, _)| *x == d) {
                Some(e) => e.1 += t.n_bytes,
                None => bytes.push((d, t.n_bytes)),
            }
        }
        bytes.into_iter().max_by_key(|e| e.1).map_or(DType::F32, |e| e.0)
    }

    /// The bytes of HF tensor `name` (one expert's slice of a stacked one), with its info.
    fn part_bytes(&self, name: &str, shape: &[usize]) -> Result<(&TensorInfo, &[u8], Option<usize>)> {
        let (t, range, expert) = self.part_range(name, shape)?;
        Ok((t, self.file.bytes(range, name)?, expert))
    }

    /// The GGUF tensor behind HF tensor `name`, the file bytes of `name` in it (one expert's
    /// slice of a stacked tensor), and the expert.
    fn part_range(&self, name: &str, shape: &[usize]) -> Result<(&TensorInfo, std::ops::Range<u64>, Option<usize>)> {
        let (t, want, expert) = self.locate(name, shape)?;
        let all = self.file.tensor_range(t);
        let range = match expert {
            None => all,
            Some(e) => {
                let per = t.n_bytes / want[want.len() - 1] as u64;
                let start = all.start + e as u64 * per;
                if start + per > all.end {
                    return Err(self.err(format!("{name}: expert {e} is outside {} ({want:?})", t.name)));
                }
                start..start + per
            }
        };
        Ok((t, range, expert))
    }

    /// The GGUF type of HF tensor `name`'s gated partner (gate ↔ up), if it has one.
    fn partner_type(&self, name: &str) -> Option<super::GgmlType> {
        let (g, _) = gguf_name(name)?;
        let other = match () {
            _ if g.ends_with(".ffn_gate.weight") => g.replace(".ffn_gate.", ".ffn_up."),
            _ if g.ends_with(".ffn_up.weight") => g.replace(".ffn_up.", ".ffn_gate."),
            _ if g.ends_with(".ffn_gate_exps.weight") => g.replace(".ffn_gate_exps.", ".ffn_up_exps."),
            _ if g.ends_with(".ffn_up_exps.weight") => g.replace(".ffn_up_exps.", ".ffn_gate_exps."),
            _ => return None,
        };
        self.file.tensor(&other).map(|t| t.ty)
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
        self.0.file.check_supported(t)
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

impl Streamable for GgufModel {
    fn range(&self, name: &str, shape: &[usize]) -> Result<std::ops::Range<u64>> {
        Ok(self.part_range(name, shape)?.1)
    }

    fn pieces(&mut self) -> Option<&mut Pieces> {
        self.file.pieces()
    }
}

impl Source for GgufModel {
    fn config(&self) -> &Config {
        &self.config
    }

    fn read_f32(&self, name: &str, shape: &[usize], out: &mut [f32]) -> Result<()> {
        let (t, bytes, expert) = self.part_bytes(name, shape)?;
        let n: usize = shape.iter().product();
        if out.len() != n {
            return Err(Error::Invalid(format!(
                "read_f32({name}): buffer of {} values for shape {shape:?}",
                out.len()
            )));
        }
        self.file.dequantize(t, bytes, out)?;
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            let slice = expert.map(|e| format!(", expert {e}")).unwrap_or_default();
            return Err(self.err(format!(
                "tensor {} (HF {name}{slice}): value {} at index {i} is not finite (the file is corrupt)",
                t.name, out[i]
            )));
        }
        if expert.is_none_or(|e| e + 1 == self.config.num_experts) {
            self.file.drop_pages(t);
        }
        Ok(())
    }

    fn native(&self, spec: &MatSpec) -> Result<Option<Vec<DType>>> {
        if !self.native {
            return Ok(None);
        }
        let mut formats = Vec::with_capacity(spec.parts.len());
        for part in &spec.parts {
            let (t, _, _) = self.locate(&part.name, &part.shape)?;
            self.file.check_supported(t)?;
            let Some(d) = t.ty.dtype().filter(|d| d.fits_cols(spec.cols)) else {
                return Ok(None);
            };
            // A gated pair is read by one kernel: both must be in one format.
            if self.partner_type(&part.name).is_some_and(|p| p != t.ty) {
                log::warn!(
                    "{}: its gate and up projections differ in type; converting both to {}",
                    t.name,
                    d.conversion_target()
                );
                return Ok(None);
            }
            formats.push(d);
        }
        Ok(Some(formats))
    }

    fn read_native(&self, part: &Part, dtype: DType, row0: usize, quants: &mut [u8], scales: &mut [u8]) -> Result<()> {
        let (t, bytes, expert) = self.part_bytes(&part.name, &part.shape)?;
        if row0 == 0 && expert.is_none_or(|e| e == 0) {
            // Stream the file from disk, and read this tensor and the next one ahead, while
            // this one is repacked.
            self.file.prefetch();
            self.file.will_need(t);
            if let Some(next) = self.file.next_in_file(t) {
                self.file.will_need(next);
            }
        }
        if t.ty.dtype() != Some(dtype) {
            return Err(self.err(format!("{} is {}, not {dtype}", t.name, t.ty)));
        }
        let cols = part.shape[part.shape.len() - 1];
        let (rq, _) = crate::layout::stored_row_bytes(dtype, cols);
        let src_row = cols / t.ty.block_size() as usize * t.ty.type_size() as usize;
        let rows = quants.len() / rq.max(1);
        let src = bytes.get(row0 * src_row..(row0 + rows) * src_row).ok_or_else(|| {
            self.err(format!(
                "{}: rows {row0}..{} are outside the tensor",
                t.name,
                row0 + rows
            ))
        })?;
        crate::blocks::repack_ggml(dtype, src, quants, scales).map_err(|m| self.err(format!("{}: {m}", t.name)))?;
        if let Some(i) = crate::blocks::first_non_finite(dtype, quants, scales) {
            let slice = expert.map(|e| format!(", expert {e}")).unwrap_or_default();
            return Err(self.err(format!(
                "tensor {} (HF {}{slice}): the value at index {} is not finite (the file is corrupt)",
                t.name,
                part.name,
                row0 * cols + i
            )));
        }
        if row0 + rows == part.shape[0] && expert.is_none_or(|e| e + 1 == self.config.num_experts) {
            self.file.drop_pages(t);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.file.path.display().to_string()
    }

    fn release(&self, _spec: &MatSpec) {}
}

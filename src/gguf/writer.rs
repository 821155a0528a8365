//! Writes an `lfm2moe` GGUF v3 file of synthetic weights for a [`Config`]: the metadata
//! [`config_from_gguf`](super::config_from_gguf) reads back to the same config, every tensor
//! llama.cpp's converter writes (experts stacked), matrices as random valid GGML blocks of
//! the types a [`Mix`] or one format gives them, vectors as the synthetic source's values.
//!
//! It exists to measure loading at the full shape without a download
//! (`wgpu-bench --write-gguf`); it writes no tokenizer.

use super::mix::Mix;
use super::model::gguf_name;
use super::GgmlType;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::files::AtomicFile;
use crate::model::config::{Config, LayerKind};
use crate::model::synthetic::Synthetic;
use crate::model::weights::{MatSpec, Source, WeightSink, Weights};
use half::f16;
use std::io::Write;
use std::path::Path;

const ALIGN: u64 = 32;

/// The types of the matrices: one format, or llama.cpp's mix.
#[derive(Clone, Copy, Debug)]
pub enum Types {
    All(DType),
    Mix(Mix),
}

/// One tensor to write: GGUF name, ne (innermost first), type, and the HF tensor(s) whose
/// values it holds (vectors only; matrices are random blocks).
struct Planned {
    name: String,
    ne: Vec<u64>,
    ty: DType,
    hf: Option<(String, Vec<usize>)>,
}

/// Collects the file's tensors from the engine's load order.
struct Plan<'a> {
    cfg: &'a Config,
    types: Types,
    tensors: Vec<Planned>,
}

impl WeightSink for Plan<'_> {
    type Matrix = ();
    type Vector = ();

    fn matrix(&mut self, _: &dyn Source, spec: &MatSpec) -> Result<()> {
        for part in &spec.parts {
            let (name, expert) =
                gguf_name(&part.name).ok_or_else(|| Error::Invalid(format!("no GGUF name for {}", part.name)))?;
            if expert.is_some_and(|e| e > 0) {
                continue; // experts 1.. live in the tensor expert 0 created
            }
            let mut ne: Vec<u64> = part.shape.iter().rev().map(|&d| d as u64).collect();
            if expert.is_some() {
                ne.push(self.cfg.num_experts as u64);
            }
            let ty = match self.types {
                Types::All(d) => d,
                Types::Mix(m) => m.matrix_type(&name, self.cfg),
            };
            self.tensors.push(Planned { name, ne, ty, hf: None });
        }
        Ok(())
    }

    fn vector(&mut self, _: &dyn Source, name: &str, shape: &[usize]) -> Result<()> {
        let (g, _) = gguf_name(name).ok_or_else(|| Error::Invalid(format!("no GGUF name for {name}")))?;
        let mut ne: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        if name.ends_with("conv.conv.weight") {
            ne.retain(|&d| d != 1);
        }
        self.tensors.push(Planned {
            name: g,
            ne,
            ty: DType::F32,
            hf: Some((name.to_string(), shape.to_vec())),
        });
        Ok(())
    }
}

/// GGUF-encoded metadata.
#[derive(Default)]
struct Meta {
    bytes: Vec<u8>,
    count: u64,
}

impl Meta {
    fn key(&mut self, k: &str, ty: u32) {
        self.bytes.extend((k.len() as u64).to_le_bytes());
        self.bytes.extend(k.as_bytes());
        self.bytes.extend(ty.to_le_bytes());
        self.count += 1;
    }
    fn u32(&mut self, k: &str, v: usize) {
        self.key(k, 4);
        self.bytes.extend((v as u32).to_le_bytes());
    }
    fn f32(&mut self, k: &str, v: f32) {
        self.key(k, 6);
        self.bytes.extend(v.to_le_bytes());
    }
    fn str(&mut self, k: &str, v: &str) {
        self.key(k, 8);
        self.bytes.extend((v.len() as u64).to_le_bytes());
        self.bytes.extend(v.as_bytes());
    }
    fn u32s(&mut self, k: &str, v: &[usize]) {
        self.key(k, 9);
        self.bytes.extend(4u32.to_le_bytes());
        self.bytes.extend((v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| self.bytes.extend((*x as u32).to_le_bytes()));
    }
}

fn metadata(cfg: &Config, name: &str) -> Meta {
    let a = |k: &str| format!("lfm2moe.{k}");
    let mut m = Meta::default();
    m.str("general.architecture", "lfm2moe");
    m.str("general.name", name);
    m.u32("general.alignment", ALIGN as usize);
    m.u32(&a("block_count"), cfg.num_layers());
    m.u32(&a("context_length"), cfg.max_position_embeddings);
    m.u32(&a("embedding_length"), cfg.hidden_size);
    m.u32(&a("feed_forward_length"), cfg.intermediate_size);
    m.u32(&a("expert_feed_forward_length"), cfg.moe_intermediate_size);
    m.u32(&a("attention.head_count"), cfg.num_attention_heads);
    let kv: Vec<usize> = cfg
        .layer_types
        .iter()
        .map(|k| match k {
            LayerKind::Attention => cfg.num_key_value_heads,
            LayerKind::Conv => 0,
        })
        .collect();
    m.u32s(&a("attention.head_count_kv"), &kv);
    m.f32(&a("attention.layer_norm_rms_epsilon"), cfg.norm_eps);
    m.f32(&a("rope.freq_base"), cfg.rope_theta as f32);
    m.u32(&a("shortconv.l_cache"), cfg.conv_l_cache);
    m.u32(&a("expert_count"), cfg.num_experts);
    m.u32(&a("expert_used_count"), cfg.num_experts_per_tok);
    m.u32(&a("expert_gating_func"), 2);
    m.f32(&a("expert_weights_scale"), cfg.routed_scaling_factor);
    m.u32(&a("leading_dense_block_count"), cfg.num_dense_layers);
    m.u32(&a("vocab_size"), cfg.vocab_size);
    m
}

/// The GGML type of a format.
fn ggml_type(d: DType) -> GgmlType {
    GgmlType::SUPPORTED
        .into_iter()
        .find(|t| t.dtype() == Some(d))
        .expect("every format is a GGML type")
}

/// Writes the synthetic model of `cfg` (seed `seed`) to `path` (refusing to replace a file
/// unless `force`); returns the file's size.
pub fn write_synthetic(path: &Path, cfg: &Config, types: Types, seed: u64, force: bool) -> Result<u64> {
    crate::files::check_output_file(path)?;
    if !force && path.exists() {
        return Err(Error::Invalid(format!(
            "{} exists; pass --force to replace it",
            path.display()
        )));
    }
    let src = Synthetic::new(cfg.clone(), DType::F32, seed);
    let mut plan = Plan {
        cfg,
        types,
        tensors: Vec::new(),
    };
    Weights::load(&src, &mut plan)?;
    let label = match types {
        Types::All(d) => d.name().to_string(),
        Types::Mix(m) => m.name().to_string(),
    };
    let meta = metadata(cfg, &format!("synthetic LFM2-MoE ({label})"));
    let mut head = Vec::new();
    head.extend(b"GGUF");
    head.extend(3u32.to_le_bytes());
    head.extend((plan.tensors.len() as u64).to_le_bytes());
    head.extend(meta.count.to_le_bytes());
    head.extend(&meta.bytes);
    let mut offset = 0u64;
    let mut sizes = Vec::new();
    for t in &plan.tensors {
        let ty = ggml_type(t.ty);
        let n: u64 = t.ne.iter().product();
        let bytes = n / ty.block_size() * ty.type_size();
        head.extend((t.name.len() as u64).to_le_bytes());
        head.extend(t.name.as_bytes());
        head.extend((t.ne.len() as u32).to_le_bytes());
        t.ne.iter().for_each(|d| head.extend(d.to_le_bytes()));
        head.extend(ty.id().to_le_bytes());
        head.extend(offset.to_le_bytes());
        sizes.push(bytes);
        offset = (offset + bytes).next_multiple_of(ALIGN);
    }
    head.resize((head.len() as u64).next_multiple_of(ALIGN) as usize, 0);
    let mut out = AtomicFile::create(path)?;
    let io = |e: std::io::Error| Error::io(path, e);
    out.write_all(&head).map_err(io)?;
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64*: fast enough to write gigabytes.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    };
    for (t, &bytes) in plan.tensors.iter().zip(&sizes) {
        let data = match &t.hf {
            Some((name, shape)) => {
                let mut v = vec![0f32; shape.iter().product()];
                src.read_f32(name, shape, &mut v)?;
                v.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
            None => {
                let cols = t.ne[0] as usize;
                let blocks = (bytes as usize) / crate::blocks::ggml_block_bytes(t.ty);
                random_ggml(t.ty, blocks, 1.0 / (cols as f32).sqrt(), &mut next)
            }
        };
        out.write_all(&data).map_err(io)?;
        let pad = bytes.next_multiple_of(ALIGN) - bytes;
        out.write_all(&vec![0u8; pad as usize]).map_err(io)?;
    }
    out.commit()?;
    Ok(head.len() as u64 + offset)
}

/// Random valid GGML blocks (AoS, as GGUF stores them) with values of about `sigma`: random
/// quant and packed-scale bytes, finite f16 scale fields.
pub fn random_ggml(dtype: DType, blocks: usize, sigma: f32, next: &mut dyn FnMut() -> u32) -> Vec<u8> {
    if !dtype.is_block() {
        return crate::blocks::random(dtype, blocks, sigma, next).0;
    }
    let gb = crate::blocks::ggml_block_bytes(dtype);
    let mut out = vec![0u8; blocks * gb];
    for w in out.chunks_mut(4) {
        let r = next().to_le_bytes();
        w.copy_from_slice(&r[..w.len()]);
    }
    // (offset of d; offset of the offset field and its ratio to d, which centres the values;
    // the standard deviation of the quants in units of d)
    let (d_at, m_at, steps) = match dtype {
        DType::Q8_0 => (0, None, 73.6),
        DType::Q4_0 => (0, None, 4.6),
        DType::Q5_0 => (0, None, 9.2),
        DType::Q4_1 => (0, Some((2, -7.5)), 4.6),
        DType::Q5_1 => (0, Some((2, -15.5)), 9.2),
        // Random 6-bit sub-scales and mins average 31.5: dmin·m then centres d·sc·q.
        DType::Q4_K => (0, Some((2, 7.5)), 4.6 * 31.5),
        DType::Q5_K => (0, Some((2, 15.5)), 9.2 * 31.5),
        // Q6_K: random i8 scales average 64 in magnitude.
        _ => (208, None, 18.5 * 64.0),
    };
    for b in out.chunks_exact_mut(gb) {
        let jitter = 1.0 + 0.25 * (next() as f32 / u32::MAX as f32);
        let d = sigma / steps * jitter;
        b[d_at..d_at + 2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        if let Some((m_at, ratio)) = m_at {
            b[m_at..m_at + 2].copy_from_slice(&f16::from_f32(ratio * d).to_le_bytes());
        }
    }
    out
}

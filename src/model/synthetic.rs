//! Synthetic weights: any config (by default LFM2-8B-A1B's shape) with deterministic random
//! tensors generated on the fly, so the benchmark needs no download.
//!
//! Matrices arrive already in the engine's layout for the requested format (random quant
//! bytes with realistic f16 scales, or random f16 / f32 values), so loading costs about what
//! uploading a prequantized checkpoint costs. Scales keep activations O(1) through the
//! stack: each matrix has standard deviation 1/√cols, norms are ≈1, the router and the
//! selection bias are random so that tokens spread over the experts.

use super::config::Config;
use super::quantize::{create_safetensors, Entry};
use super::weights::{storage_format, MatSpec, Part, Source};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gguf::mix::Mix;
use crate::gguf::model::gguf_name;
use crate::layout::StoredMatrix;

/// A weight source that generates every tensor from `(seed, tensor name)`.
pub struct Synthetic {
    pub config: Config,
    /// Storage format matrices are generated in (the load's `--dtype`).
    pub dtype: DType,
    pub seed: u64,
    /// A GGUF type mix (Q4_K_M): matrices are then generated as random valid blocks of the
    /// types llama.cpp would give them, handed over as they are (see [`Source::native`]).
    pub mix: Option<Mix>,
}

/// SplitMix64: fast, and good enough for weights.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, name: &str) -> Self {
        // FNV-1a of the name, mixed with the seed.
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        Rng(h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        crate::blocks::splitmix64(&mut self.0)
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Uniform in ±√3·σ has standard deviation σ.
const SQRT3: f32 = 1.732_050_8;

impl Synthetic {
    pub fn new(config: Config, dtype: DType, seed: u64) -> Self {
        Synthetic {
            config,
            dtype,
            seed,
            mix: None,
        }
    }

    /// Weights with llama.cpp's type mix `mix` (its base type is the model's dtype).
    pub fn with_mix(config: Config, mix: Mix, seed: u64) -> Self {
        Synthetic {
            config,
            dtype: mix.base(),
            seed,
            mix: Some(mix),
        }
    }

    /// Random valid `rows × cols` data of `dtype` in the engine layout (quants or values, scales)
    /// with a standard deviation of 1/√cols, from `(seed, name)`.
    fn random(&self, name: &str, dtype: DType, rows: usize, cols: usize) -> (Vec<u8>, Vec<u8>) {
        let mut rng = Rng::new(self.seed, name);
        let sigma = 1.0 / (cols as f32).sqrt();
        let blocks = rows * cols / dtype.block().0;
        crate::blocks::random(dtype, blocks, sigma, &mut || (rng.next() >> 32) as u32)
    }

    /// Standard deviation of the tensor `name` of `shape` (vectors by what they are).
    fn sigma(name: &str, shape: &[usize]) -> (f32, f32) {
        // (centre, spread)
        if name.ends_with("norm.weight") || name.ends_with("layernorm.weight") {
            (1.0, 0.1)
        } else if name.ends_with("expert_bias") {
            (0.0, 0.2)
        } else if name.ends_with("conv.conv.weight") {
            (0.0, 0.5)
        } else if name.ends_with("bias") {
            (0.0, 0.02)
        } else {
            let cols = shape.last().copied().unwrap_or(1).max(1);
            (0.0, 1.0 / (cols as f32).sqrt())
        }
    }
}

impl Source for Synthetic {
    fn config(&self) -> &Config {
        &self.config
    }

    fn read_f32(&self, name: &str, shape: &[usize], out: &mut [f32]) -> Result<()> {
        let n: usize = shape.iter().product();
        if out.len() != n {
            return Err(Error::Shape {
                name: name.to_string(),
                found: vec![out.len()],
                expected: shape.to_vec(),
            });
        }
        let (centre, sigma) = Self::sigma(name, shape);
        let mut rng = Rng::new(self.seed, name);
        for o in out.iter_mut() {
            *o = centre + rng.uniform() * SQRT3 * sigma;
        }
        Ok(())
    }

    fn native(&self, spec: &MatSpec) -> Result<Option<Vec<DType>>> {
        let Some(mix) = self.mix else { return Ok(None) };
        let formats = spec.parts.iter().map(|p| match gguf_name(&p.name) {
            Some((g, _)) => mix.matrix_type(&g, &self.config),
            None => mix.base(),
        });
        Ok(Some(formats.collect()))
    }

    fn read_native(&self, part: &Part, dtype: DType, row0: usize, quants: &mut [u8], scales: &mut [u8]) -> Result<()> {
        let cols = part.shape[part.shape.len() - 1];
        let (rq, _) = crate::layout::stored_row_bytes(dtype, cols);
        let (q, s) = self.random(&format!("{}@{row0}", part.name), dtype, quants.len() / rq, cols);
        quants.copy_from_slice(&q);
        scales.copy_from_slice(&s);
        Ok(())
    }

    fn stored(&self, spec: &MatSpec) -> Result<Option<StoredMatrix<'_>>> {
        let dtype = storage_format(spec, self.dtype);
        let (data, scales) = self.random(&spec.label, dtype, spec.rows, spec.cols);
        Ok(Some(StoredMatrix {
            dtype,
            data: data.into(),
            scales: scales.into(),
        }))
    }

    fn describe(&self) -> String {
        format!("synthetic weights (seed {})", self.seed)
    }
}

/// Collects the HF tensors of a model in load order: matrices bf16, vectors f32.
struct HfPlan(Vec<Entry>);

impl HfPlan {
    fn push(&mut self, name: &str, shape: &[usize], dtype: &'static str) {
        let size = if dtype == "BF16" { 2 } else { 4 };
        self.0.push(Entry {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            bytes: shape.iter().product::<usize>() * size,
        });
    }
}

impl super::weights::WeightSink for HfPlan {
    type Matrix = ();
    type Vector = ();
    fn matrix(&mut self, _: &dyn Source, spec: &MatSpec) -> Result<()> {
        for part in &spec.parts {
            self.push(&part.name, &part.shape, "BF16");
        }
        Ok(())
    }
    fn vector(&mut self, _: &dyn Source, name: &str, shape: &[usize]) -> Result<()> {
        self.push(name, shape, "F32");
        Ok(())
    }
}

impl Synthetic {
    /// Writes these weights as a Hugging Face checkpoint (`config.json` + one
    /// `model.safetensors`, matrices bf16, vectors f32) — a full-size file to measure loading
    /// and `lfm quantize` without a download. Values are the f32 ones `read_f32` gives.
    /// `dir` must be new or empty unless `force` (then its weights are replaced).
    pub fn write_hf_checkpoint(&self, dir: &std::path::Path, force: bool) -> Result<u64> {
        use std::io::Write;
        crate::files::prepare_output_dir(dir, None, force)?;
        let cfg_path = dir.join("config.json");
        let text = serde_json::to_string_pretty(&self.config.to_hf_json()).expect("json");
        crate::files::write_atomic(&cfg_path, text.as_bytes())?;
        let mut plan = HfPlan(Vec::new());
        super::weights::Weights::load(self, &mut plan)?;
        let path = dir.join("model.safetensors");
        let mut file = create_safetensors(&path, &Default::default(), &plan.0)?;
        let io = |e| Error::io(&path, e);
        let mut buf = Vec::new();
        for e in &plan.0 {
            buf.resize(e.shape.iter().product(), 0.0);
            self.read_f32(&e.name, &e.shape, &mut buf)?;
            let bytes: Vec<u8> = match e.dtype {
                "BF16" => buf
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
                _ => buf.iter().flat_map(|v| v.to_le_bytes()).collect(),
            };
            file.out.write_all(&bytes).map_err(io)?;
        }
        file.out.commit()?;
        Ok(file.header_bytes + file.data_bytes)
    }
}

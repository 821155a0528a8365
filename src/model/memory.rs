//! GPU memory a model needs, computed from its config before anything is allocated, and
//! the refusal (with what would fit) when the adapter cannot hold it.
//!
//! The numbers are the byte sizes the loader and [`State::new`](super::state::State::new)
//! allocate — same chunking, same rounding — so the estimate is what ends up resident
//! (tests check the two agree).

use super::config::Config;
use super::state::StateSizes;
use super::synthetic::Synthetic;
use super::weights::{storage_format, MatSpec, Source, WeightSink, Weights};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::layout::plan_segments;
use crate::units::gib;

/// Resident GPU memory of one model and one sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryEstimate {
    pub dtype: DType,
    pub kv_dtype: DType,
    pub ctx: usize,
    /// Weight matrices (in their storage formats) and f32 vectors.
    pub weights: u64,
    /// K and V caches of the attention layers for `ctx` tokens.
    pub kv: u64,
    /// Activations for one ubatch, conv states, routing, logits, RoPE table, staging.
    pub scratch: u64,
}

/// The KV-cache type used when none is asked for: f32 next to f32 weights, else f16.
pub fn default_kv_dtype(weights: DType) -> DType {
    match weights {
        DType::F32 => DType::F32,
        _ => DType::F16,
    }
}

/// Counts the bytes the GPU loader would allocate, reading nothing.
struct SizeSink {
    dtype: DType,
    max_binding: u64,
    bytes: u64,
}

impl WeightSink for SizeSink {
    type Matrix = ();
    type Vector = ();

    fn matrix(&mut self, src: &dyn Source, spec: &MatSpec) -> Result<()> {
        let segments: Vec<(usize, DType)> = match src.native(spec)? {
            Some(formats) => spec.parts.iter().zip(formats).map(|(p, d)| (p.shape[0], d)).collect(),
            None => vec![(spec.rows, storage_format(spec, self.dtype))],
        };
        for (_, rows, f) in plan_segments(&spec.label, &segments, spec.cols, spec.group_rows, self.max_binding)? {
            self.bytes += f.layout(rows, spec.cols).0;
        }
        Ok(())
    }

    fn vector(&mut self, _: &dyn Source, _: &str, shape: &[usize]) -> Result<()> {
        self.bytes += shape.iter().product::<usize>() as u64 * 4;
        Ok(())
    }
}

impl MemoryEstimate {
    /// `max_binding`: the chunk size weights are split at; `max_state_binding`: the largest
    /// state buffer allowed (both from the [`Gpu`], or any plausible value for a table).
    pub fn new(
        cfg: &Config,
        dtype: DType,
        kv_dtype: DType,
        ctx: usize,
        ubatch: usize,
        max_binding: u64,
        max_state_binding: u64,
    ) -> Result<Self> {
        // The synthetic source only supplies the config here: the sink reads nothing.
        let src = Synthetic::new(cfg.clone(), dtype, 0);
        Self::of_source(&src, dtype, kv_dtype, ctx, ubatch, max_binding, max_state_binding)
    }

    /// As [`Self::new`] for the weights of `src` (matrices it hands over as they are keep
    /// their formats; the others are converted to `dtype`).
    pub fn of_source(
        src: &dyn Source,
        dtype: DType,
        kv_dtype: DType,
        ctx: usize,
        ubatch: usize,
        max_binding: u64,
        max_state_binding: u64,
    ) -> Result<Self> {
        let cfg = src.config();
        let mut sink = SizeSink {
            dtype,
            max_binding,
            bytes: 0,
        };
        Weights::load(src, &mut sink)?;
        let st = StateSizes::new(cfg, ctx, ubatch, kv_dtype, max_state_binding)?;
        Ok(MemoryEstimate {
            dtype,
            kv_dtype,
            ctx,
            weights: sink.bytes,
            kv: st.kv_bytes(cfg),
            scratch: st.scratch_bytes(cfg),
        })
    }

    /// As [`Self::new`] with the limits `gpu` granted.
    pub fn for_gpu(gpu: &Gpu, cfg: &Config, dtype: DType, kv_dtype: DType, ctx: usize, ubatch: usize) -> Result<Self> {
        let src = Synthetic::new(cfg.clone(), dtype, 0);
        Self::for_gpu_source(gpu, &src, dtype, kv_dtype, ctx, ubatch)
    }

    /// As [`Self::of_source`] with the limits `gpu` granted.
    pub fn for_gpu_source(
        gpu: &Gpu,
        src: &dyn Source,
        dtype: DType,
        kv_dtype: DType,
        ctx: usize,
        ubatch: usize,
    ) -> Result<Self> {
        let state_max = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        Self::of_source(src, dtype, kv_dtype, ctx, ubatch, gpu.max_binding, state_max)
    }

    pub fn total(&self) -> u64 {
        self.weights + self.kv + self.scratch
    }

    /// Checks the estimate against the adapter's memory (when known) before anything is
    /// allocated. Refuses with what is needed, what the adapter has, and which `--dtype` /
    /// `--ctx` would fit; warns above 90%.
    pub fn check(&self, gpu: &Gpu, cfg: &Config, ubatch: usize) -> Result<()> {
        let Some(available) = gpu.memory else {
            return Ok(());
        };
        if self.total() <= available {
            if self.total() > available / 10 * 9 {
                log::warn!(
                    "the model needs {} of the adapter's {}: other programs' GPU memory may make it fail",
                    gib(self.total()),
                    gib(available)
                );
            }
            return Ok(());
        }
        let mut fits = Vec::new();
        let smaller: Vec<DType> = [DType::Q8_0, DType::Q4_0]
            .into_iter()
            .filter(|d| d.row_bytes(256) < self.dtype.row_bytes(256))
            .collect();
        if let Some(e) = first_fitting(gpu, cfg, &smaller, None, self.ctx, ubatch, available)? {
            fits.push(format!("--dtype {} ({})", e.dtype, gib(e.total())));
        }
        let mut ctx = self.ctx / 2;
        while ctx >= 256 {
            let e = MemoryEstimate::for_gpu(gpu, cfg, self.dtype, self.kv_dtype, ctx, ubatch)?;
            if e.total() <= available {
                fits.push(format!("--ctx {ctx} ({})", gib(e.total())));
                break;
            }
            ctx /= 2;
        }
        let advice = match fits.is_empty() {
            true => "no smaller --dtype or --ctx fits either: use an adapter with more memory".to_string(),
            false => format!("would fit: {}", fits.join(" or ")),
        };
        Err(Error::OutOfMemory {
            needed: self.total(),
            available,
            detail: format!(
                "{} weights {}, {} KV cache for {} tokens {}, scratch {}; {advice}",
                self.dtype,
                gib(self.weights),
                self.kv_dtype,
                self.ctx,
                gib(self.kv),
                gib(self.scratch)
            ),
        })
    }
}

/// The first of `dtypes` whose model, with a KV cache of `kv` (default: the dtype's), fits in
/// `available` bytes.
fn first_fitting(
    gpu: &Gpu,
    cfg: &Config,
    dtypes: &[DType],
    kv: Option<DType>,
    ctx: usize,
    ubatch: usize,
    available: u64,
) -> Result<Option<MemoryEstimate>> {
    for &d in dtypes {
        let e = MemoryEstimate::for_gpu(gpu, cfg, d, kv.unwrap_or(default_kv_dtype(d)), ctx, ubatch)?;
        if e.total() <= available {
            return Ok(Some(e));
        }
    }
    Ok(None)
}

/// The most precise of f16, q8_0, q4_0 that fits the adapter's memory; None when the memory
/// is unknown or none fits (loading then refuses with advice, see [`MemoryEstimate::check`]).
pub fn most_precise_fitting(
    gpu: &Gpu,
    cfg: &Config,
    kv: Option<DType>,
    ctx: usize,
    ubatch: usize,
) -> Result<Option<DType>> {
    let Some(available) = gpu.memory else {
        return Ok(None);
    };
    let fit = first_fitting(
        gpu,
        cfg,
        &[DType::F16, DType::Q8_0, DType::Q4_0],
        kv,
        ctx,
        ubatch,
        available,
    )?;
    Ok(fit.map(|e| e.dtype))
}

/// Peak resident host memory of this process so far (Linux `VmHWM`), if the OS tells.
pub fn peak_host_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

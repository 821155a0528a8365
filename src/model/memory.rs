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
use crate::gpu::{AdapterMemory, Gpu};
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
        let state_max = gpu.max_state_binding();
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

/// Share of the adapter's memory a default dtype may fill (the rest is left to other
/// programs and the driver): the line above which loading warns.
pub const DEFAULT_FILL: (u64, u64) = (9, 10);

/// The weight dtype used when none is asked for, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultDtype {
    pub dtype: DType,
    /// The memory figure it was chosen against (None: nothing known).
    pub memory: Option<AdapterMemory>,
    /// False when even q4_0 needs more than [`DEFAULT_FILL`] of it (loading then refuses
    /// or warns, with advice).
    pub fits: bool,
}

/// The most precise of f16, q8_0, q4_0 whose model with a `ctx`-token cache fills at most
/// [`DEFAULT_FILL`] of `memory`; q4_0 when none does; q8_0 when the memory is unknown (half
/// of f16's memory at nearly its accuracy). A pure function of the memory figure and the
/// model's shape (`max_binding` / `max_state_binding` as in [`MemoryEstimate::new`]), so it
/// is tested without a GPU.
pub fn default_dtype(
    memory: Option<AdapterMemory>,
    cfg: &Config,
    kv: Option<DType>,
    ctx: usize,
    ubatch: usize,
    max_binding: u64,
    max_state_binding: u64,
) -> Result<DefaultDtype> {
    let Some(m) = memory else {
        return Ok(DefaultDtype {
            dtype: DType::Q8_0,
            memory,
            fits: true,
        });
    };
    let budget = m.bytes / DEFAULT_FILL.1 * DEFAULT_FILL.0;
    for d in [DType::F16, DType::Q8_0, DType::Q4_0] {
        let kv = kv.unwrap_or(default_kv_dtype(d));
        let e = MemoryEstimate::new(cfg, d, kv, ctx, ubatch, max_binding, max_state_binding)?;
        if e.total() <= budget {
            return Ok(DefaultDtype {
                dtype: d,
                memory,
                fits: true,
            });
        }
    }
    Ok(DefaultDtype {
        dtype: DType::Q4_0,
        memory,
        fits: false,
    })
}

/// [`default_dtype`] for the adapter `gpu` (its memory figure and granted limits).
pub fn default_dtype_for(
    gpu: &Gpu,
    cfg: &Config,
    kv: Option<DType>,
    ctx: usize,
    ubatch: usize,
) -> Result<DefaultDtype> {
    let state_max = gpu.max_state_binding();
    default_dtype(gpu.memory_info, cfg, kv, ctx, ubatch, gpu.max_binding, state_max)
}

/// Peak resident host memory of this process so far (Linux `VmHWM`), if the OS tells.
pub fn peak_host_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::memory::{choose, from_metal, from_vulkan_heaps, Heap};
    const GIB: u64 = 1 << 30;

    /// The full LFM2-8B-A1B shape, `lfm chat`'s default context and ubatch, and wgpu's
    /// largest binding.
    fn pick(memory: Option<AdapterMemory>) -> DefaultDtype {
        let cfg = Config::lfm2_8b_a1b(24).unwrap();
        let max = (2u64 << 30) - 256;
        default_dtype(memory, &cfg, None, 4096, 512, max, max).unwrap()
    }

    #[test]
    fn a_16_gb_mac_gets_q8_0_never_f16() {
        // recommendedMaxWorkingSetSize of a 16 GB M1/M2/M3 (about two thirds of the RAM).
        let d = pick(from_metal(11_453_251_584));
        assert_eq!((d.dtype, d.fits), (DType::Q8_0, true));
        // The same Mac when Metal tells nothing: system RAM less the margin.
        let d = pick(choose(None, None, Some(16 * GIB)));
        assert_eq!(d.dtype, DType::Q8_0);
    }

    #[test]
    fn small_and_large_unified_memory() {
        // 8 GB Mac: about 5.3 GiB of working set, only q4_0 fits.
        assert_eq!(pick(from_metal(5_726_623_744)).dtype, DType::Q4_0);
        // 36 GB Mac: about 27 GiB, f16 fits.
        assert_eq!(pick(from_metal(28_991_029_248)).dtype, DType::F16);
        // 4 GiB: nothing fits; q4_0, flagged.
        let d = pick(from_metal(4 * GIB));
        assert_eq!((d.dtype, d.fits), (DType::Q4_0, false));
    }

    #[test]
    fn vulkan_figures_and_unknown_memory() {
        let dgpu = from_vulkan_heaps(
            &[Heap {
                size: 24 * GIB,
                device_local: true,
            }],
            false,
            None,
        );
        assert_eq!(pick(dgpu).dtype, DType::F16);
        let dgpu8 = from_vulkan_heaps(
            &[Heap {
                size: 8 * GIB,
                device_local: true,
            }],
            false,
            None,
        );
        assert_eq!(pick(dgpu8).dtype, DType::Q4_0, "q8_0's 8.3 GiB is over 90% of 8 GiB");
        // A 32 GB laptop iGPU: 512 MiB carve-out + 15.5 GiB host heap.
        let igpu = from_vulkan_heaps(
            &[
                Heap {
                    size: GIB / 2,
                    device_local: true,
                },
                Heap {
                    size: 31 * GIB / 2,
                    device_local: false,
                },
            ],
            true,
            Some(32 * GIB),
        );
        assert_eq!(pick(igpu).dtype, DType::Q8_0);
        assert_eq!(
            pick(None),
            DefaultDtype {
                dtype: DType::Q8_0,
                memory: None,
                fits: true
            }
        );
    }

    #[test]
    fn the_choice_follows_the_estimate_at_the_budget_edge() {
        let cfg = Config::lfm2_8b_a1b(24).unwrap();
        let max = (2u64 << 30) - 256;
        let f16 = MemoryEstimate::new(&cfg, DType::F16, DType::F16, 4096, 512, max, max)
            .unwrap()
            .total();
        let just = |bytes: u64| choose(Some(bytes), None, None);
        let at = f16.div_ceil(DEFAULT_FILL.0) * DEFAULT_FILL.1 + DEFAULT_FILL.1;
        assert_eq!(pick(just(at)).dtype, DType::F16);
        assert_eq!(
            pick(just(f16)).dtype,
            DType::Q8_0,
            "f16 at 100% of the memory is not a default"
        );
    }
}

//! Compute kernels: typed pipeline keys (one `Kernel` variant per WGSL file), a lazy pipeline
//! cache, the per-op recording methods (`ops.rs`; the linear ops in `linear.rs`), device
//! probes (`probe.rs`), a uniform arena for per-dispatch parameters, and [`Program`] — a
//! recorded list of dispatches (pipeline, bind group, grid) built once and replayed every step.
//!
//! Shaders are assembled from `shaders/lib` snippets: the step uniform, the weight and KV
//! storage snippets (f32 / native f16 / f16 packed in u32, same function names) and the
//! reduction snippet (subgroup or workgroup memory), then the kernel's own file.

pub mod bindings;
pub mod linear;
pub mod ops;
pub mod params;
// Device probes (wgpu-bench), native only: they block on their readbacks.
#[cfg(not(target_arch = "wasm32"))]
pub mod probe;

use crate::error::{Error, Result};
use crate::gpu::{Caps, DType, Gpu};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Every kernel and its compile-time variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Embed,
    RmsNorm {
        last_only: bool,
    },
    Matmul(Linear),
    Matvec(Linear),
    /// The decode mat-vec on int8 activations (block formats; never NORM).
    MatvecQ8(Linear),
    /// Activations → int8 blocks for `MatvecQ8`, RMS-normalised first when `norm`.
    QuantizeX {
        norm: bool,
    },
    ShortConv,
    QkRope,
    Attention,
    /// Prefill attention tiled over queries (writes o directly).
    AttentionPrefill,
    AttnMerge,
    Router,
    MoeRoute,
    MoeCombine,
    Argmax {
        last_row: bool,
    },
    /// Temperature / top-k / top-p / min-p / repetition-penalty draw from logits row 0.
    Sample,
    /// Device probe: FMA throughput (wgpu-bench).
    FmaPeak,
}

/// Whether a linear op runs for a prompt (tiled GEMM) or one token (mat-vec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Prefill,
    Decode,
}

/// Variant switches of the linear kernels (see shaders/lib/linear.wgsl).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Linear {
    pub glu: bool,
    pub gather: bool,
    pub bias: bool,
    pub scale: bool,
    pub acc: bool,
    /// RMSNorm of x fused in (decode mat-vec).
    pub norm: bool,
    /// Decode mat-vec over routed experts (with `gather`): one row per token, its top-k
    /// pairs summed in the workgroup (the experts' down projection and the combine in one).
    pub combine: bool,
    /// Output columns per decode mat-vec workgroup: [`MATVEC_ROWS`], or 1 for a mat-vec of
    /// few columns (the router's), so that its few workgroups do not each walk eight rows in
    /// turn (`Gpu::matvec_rows` may set fewer for all).
    pub rows: u8,
}

pub use crate::gpu::MATVEC_ROWS;
/// Dense decode mat-vecs of at most this many output columns take one per workgroup.
pub const NARROW_MAX_ROWS: usize = 64;

impl Linear {
    /// Output columns of a decode mat-vec workgroup.
    pub fn matvec_rows(&self) -> u32 {
        self.rows as u32
    }

    /// Rows (tokens, or pairs of one expert) of a prefill GEMM tile (shaders/matmul.wgsl,
    /// 16 threads × TM rows): 64 for dense projections, 32 for experts, which get fewer rows.
    pub fn matmul_rows(&self) -> u32 {
        match self.gather {
            true => 32,
            false => 64,
        }
    }
}

/// A pipeline's identity: kernel variant, storage types and device capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    /// Weight storage (kernels that read weight pairs).
    pub weights: DType,
    /// KV-cache storage (attention kernels).
    pub kv: DType,
    pub caps: Caps,
}

impl fmt::Display for PipelineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} w={} kv={}", self.kernel, self.weights, self.kv)?;
        if self.caps.subgroups {
            f.write_str(" sg")?;
        }
        if self.caps.f16 {
            f.write_str(" f16")?;
        }
        Ok(())
    }
}

/// What a binding slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Uniform,
    Read,
    ReadWrite,
}

struct Source {
    file: &'static str,
    text: &'static str,
    uses_weights: bool,
    uses_kv: bool,
    uses_reduce: bool,
}

macro_rules! shader {
    ($name:literal) => {
        (
            concat!($name, ".wgsl"),
            include_str!(concat!("../../shaders/", $name, ".wgsl")),
        )
    };
}

impl Kernel {
    /// Every kernel variant the engine can create (for checks that need no device).
    pub fn all_variants() -> Vec<Kernel> {
        let mut v = vec![
            Kernel::Embed,
            Kernel::RmsNorm { last_only: false },
            Kernel::RmsNorm { last_only: true },
            Kernel::ShortConv,
            Kernel::QkRope,
            Kernel::Attention,
            Kernel::AttentionPrefill,
            Kernel::AttnMerge,
            Kernel::Router,
            Kernel::MoeRoute,
            Kernel::MoeCombine,
            Kernel::Argmax { last_row: false },
            Kernel::Argmax { last_row: true },
            Kernel::Sample,
            Kernel::FmaPeak,
            Kernel::QuantizeX { norm: false },
            Kernel::QuantizeX { norm: true },
        ];
        for bits in 0..64u32 {
            let l = Linear {
                glu: bits & 1 != 0,
                gather: bits & 2 != 0,
                bias: bits & 4 != 0,
                scale: bits & 8 != 0,
                acc: bits & 16 != 0,
                norm: bits & 32 != 0,
                combine: false,
                rows: MATVEC_ROWS,
            };
            v.push(Kernel::Matmul(l));
            for rows in [MATVEC_ROWS, 4, 2, 1] {
                let l = Linear { rows, ..l };
                v.push(Kernel::Matvec(l));
                if !l.norm {
                    v.push(Kernel::MatvecQ8(l));
                }
                if l.gather && !l.glu && !l.norm {
                    v.push(Kernel::Matvec(Linear { combine: true, ..l }));
                    v.push(Kernel::MatvecQ8(Linear { combine: true, ..l }));
                }
            }
        }
        v
    }

    /// The weight formats the variant has pipelines for: every one, except the integer-dot
    /// mat-vec (block formats only).
    pub fn weight_formats(&self) -> Vec<DType> {
        match self {
            Kernel::MatvecQ8(_) => DType::ALL.into_iter().filter(|d| d.is_block()).collect(),
            _ => DType::ALL.to_vec(),
        }
    }

    /// Whether the variant reads weights (its pipelines differ by weight format) and the KV
    /// cache (they differ by KV format).
    pub fn storage_dependent(&self) -> (bool, bool) {
        let s = self.source();
        (s.uses_weights, s.uses_kv)
    }

    fn source(&self) -> Source {
        let ((file, text), w, kv, red) = match self {
            Kernel::Embed => (shader!("embed"), true, false, false),
            Kernel::RmsNorm { .. } => (shader!("rmsnorm"), false, false, true),
            Kernel::Matmul(_) => (shader!("matmul"), true, false, false),
            Kernel::Matvec(_) => (shader!("matvec"), true, false, true),
            Kernel::MatvecQ8(_) => (shader!("matvec_q8"), true, false, true),
            Kernel::QuantizeX { .. } => (shader!("quantize_x"), false, false, true),
            Kernel::ShortConv => (shader!("short_conv"), false, false, false),
            Kernel::QkRope => (shader!("qk_rope"), false, true, true),
            Kernel::Attention => (shader!("attention"), false, true, true),
            Kernel::AttentionPrefill => (shader!("attention_prefill"), false, true, true),
            Kernel::AttnMerge => (shader!("attn_merge"), false, false, false),
            Kernel::Router => (shader!("router"), false, false, false),
            Kernel::MoeRoute => (shader!("moe_route"), false, false, false),
            Kernel::MoeCombine => (shader!("moe_combine"), false, false, false),
            Kernel::Argmax { .. } => (shader!("argmax"), false, false, false),
            Kernel::Sample => (shader!("sample"), false, false, true),
            Kernel::FmaPeak => (shader!("fma_peak"), false, false, false),
        };
        Source {
            file,
            text,
            uses_weights: w,
            uses_kv: kv,
            uses_reduce: red,
        }
    }

    /// The storage bindings' slots and WGSL names, from binding 2 on ([`bindings`]).
    pub fn storage_bindings(&self) -> (&'static [Slot], &'static [&'static str]) {
        use bindings::*;
        fn of<'a, B: Bindings<'a>>() -> (&'static [Slot], &'static [&'static str]) {
            (B::SLOTS, B::NAMES)
        }
        match self {
            Kernel::Embed => of::<EmbedBindings>(),
            Kernel::RmsNorm { .. } => of::<RmsNormBindings>(),
            Kernel::Matmul(_) | Kernel::Matvec(_) | Kernel::MatvecQ8(_) => of::<LinearBindings>(),
            Kernel::QuantizeX { .. } => of::<QuantizeXBindings>(),
            Kernel::ShortConv => of::<ShortConvBindings>(),
            Kernel::QkRope => of::<QkRopeBindings>(),
            Kernel::Attention => of::<AttentionBindings>(),
            Kernel::AttentionPrefill => of::<AttentionPrefillBindings>(),
            Kernel::AttnMerge => of::<AttnMergeBindings>(),
            Kernel::Router => of::<RouterBindings>(),
            Kernel::MoeRoute => of::<MoeRouteBindings>(),
            Kernel::MoeCombine => of::<MoeCombineBindings>(),
            Kernel::Argmax { .. } => of::<ArgmaxBindings>(),
            Kernel::Sample => of::<SampleBindings>(),
            Kernel::FmaPeak => of::<FmaPeakBindings>(),
        }
    }

    /// Every binding's slot: the step uniform (0), the kernel's parameters (1), then its
    /// storage bindings.
    pub fn slots(&self) -> Vec<Slot> {
        [Slot::Uniform, Slot::Uniform]
            .into_iter()
            .chain(self.storage_bindings().0.iter().copied())
            .collect()
    }

    /// The pipeline-overridable constants this variant sets (`override` in its WGSL).
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        let b = |x: bool| if x { 1.0 } else { 0.0 };
        match self {
            Kernel::RmsNorm { last_only } => vec![("LAST_ONLY", b(*last_only))],
            Kernel::Argmax { last_row } => vec![("LAST_ROW", b(*last_row))],
            Kernel::QuantizeX { norm } => vec![("NORM", b(*norm))],
            Kernel::Matmul(l) | Kernel::Matvec(l) | Kernel::MatvecQ8(l) => vec![
                ("GLU", b(l.glu)),
                ("GATHER", b(l.gather)),
                ("BIAS", b(l.bias)),
                ("SCALE", b(l.scale)),
                ("ACC", b(l.acc)),
                ("NORM", b(l.norm)),
                ("COMBINE", b(l.combine)),
            ]
            .into_iter()
            .chain(matches!(self, Kernel::Matmul(_)).then_some(("TM", (l.matmul_rows() / 16) as f64)))
            .collect(),
            _ => vec![],
        }
    }
}

/// The KV-cache storage snippet (f32 / f16 pairs).
fn kv_snippet(dtype: DType, native_f16: bool) -> String {
    let text = match (dtype, native_f16) {
        (DType::F16, true) => include_str!("../../shaders/lib/pair_f16.wgsl"),
        (DType::F16, false) => include_str!("../../shaders/lib/pair_f16_packed.wgsl"),
        _ => include_str!("../../shaders/lib/pair_f32.wgsl"),
    };
    text.replace("PAIR", "KV")
}

/// The weight-format snippet: its switches, its shared part once, its loader once per weight
/// binding, with the wider dots it does not give composed from its narrower ones
/// (`w_composed.wgsl`). With `int` (the integer-dot mat-vec) the loaders are its `// @int`
/// section instead, over the word accessors of `x_q8.wgsl`: a `// @int vec4` format binds
/// its weights as vec4<u32> (four words a load), the others as u32. Formats that differ only
/// in their scales share a file (Q4_0/Q4_1, Q5_0/Q5_1, Q4_K/Q5_K), told apart by a constant.
fn weight_snippet(dtype: DType, native_f16: bool, buffers: &[&str], int: bool) -> String {
    let (text, switch) = match (dtype, native_f16) {
        (DType::F32, _) => (include_str!("../../shaders/lib/w_f32.wgsl"), ""),
        (DType::F16, true) => (include_str!("../../shaders/lib/w_f16.wgsl"), ""),
        (DType::F16, false) => (include_str!("../../shaders/lib/w_f16_packed.wgsl"), ""),
        (DType::BF16, _) => (include_str!("../../shaders/lib/w_bf16.wgsl"), ""),
        (DType::Q8_0, _) => (include_str!("../../shaders/lib/w_q8_0.wgsl"), ""),
        (DType::Q4_0, _) => (include_str!("../../shaders/lib/w_q4.wgsl"), "WITH_MIN: bool = false"),
        (DType::Q4_1, _) => (include_str!("../../shaders/lib/w_q4.wgsl"), "WITH_MIN: bool = true"),
        (DType::Q5_0, _) => (include_str!("../../shaders/lib/w_q5.wgsl"), "WITH_MIN: bool = false"),
        (DType::Q5_1, _) => (include_str!("../../shaders/lib/w_q5.wgsl"), "WITH_MIN: bool = true"),
        (DType::Q4_K, _) => (include_str!("../../shaders/lib/w_qk.wgsl"), "FIFTH_BIT: bool = false"),
        (DType::Q5_K, _) => (include_str!("../../shaders/lib/w_qk.wgsl"), "FIFTH_BIT: bool = true"),
        (DType::Q6_K, _) => (include_str!("../../shaders/lib/w_q6_k.wgsl"), ""),
    };
    let (shared, per_buffer) = text
        .split_once("// @per-buffer")
        .expect("snippet has a per-buffer part");
    let (per_buffer, int_part) = per_buffer.split_once("// @int").unwrap_or((per_buffer, ""));
    let mut s = match switch {
        "" => String::new(),
        c => format!("const {c};\n"),
    };
    if int {
        let (view, body) = int_part.split_once('\n').unwrap_or(("", int_part));
        let vec4 = view.trim() == "vec4";
        let accessors = include_str!("../../shaders/lib/x_q8.wgsl")
            .split("// @per-buffer ")
            .find(|part| part.starts_with(if vec4 { "vec4" } else { "u32" }))
            .expect("x_q8.wgsl has both views");
        let accessors = accessors.split_once('\n').map_or("", |(_, a)| a);
        let composed = include_str!("../../shaders/lib/x_q8.wgsl")
            .split_once("// @per-buffer composed\n")
            .map_or("", |(_, c)| c);
        let paired = body.contains("fn qdot64_BUF(");
        s.push_str(&match vec4 {
            true => shared.replace("alias W_T = u32;", "alias W_T = vec4<u32>;"),
            false => shared.to_string(),
        });
        for b in buffers {
            s.push_str(&accessors.replace("BUF", b));
            s.push_str(&body.replace("BUF", b));
            if !paired {
                s.push_str(&composed.replace("BUF", b));
            }
        }
        return s;
    }
    // The wider dots a snippet does not give itself, composed from its narrower ones.
    let mut per_buffer = per_buffer.to_string();
    for composed in include_str!("../../shaders/lib/w_composed.wgsl")
        .split("// @per-buffer")
        .skip(1)
    {
        let name = composed
            .split("fn ")
            .nth(1)
            .and_then(|f| f.split('(').next())
            .expect("a function");
        if !per_buffer.contains(&format!("fn {name}(")) {
            per_buffer.push_str(composed);
        }
    }
    s.push_str(shared);
    for b in buffers {
        s.push_str(&per_buffer.replace("BUF", b));
    }
    s
}

/// The Rust limits the kernels size their arrays by, as WGSL constants (one source of truth:
/// `model::config`).
fn limits_header() -> String {
    use crate::model::config::{MAX_CONV_L_CACHE, MAX_EXPERTS, MAX_HEAD_DIM, MAX_TOPK};
    format!(
        "const MAX_HEAD_DIM: u32 = {MAX_HEAD_DIM}u;\nconst MAX_TOPK: u32 = {MAX_TOPK}u;\n\
         const MAX_EXPERTS: u32 = {MAX_EXPERTS}u;\nconst MAX_CONV_L_CACHE: u32 = {MAX_CONV_L_CACHE}u;\n"
    )
}

/// The full WGSL text of a pipeline.
pub fn assemble(key: &PipelineKey) -> String {
    let src = key.kernel.source();
    let mut s = String::new();
    let needs_f16 =
        key.caps.f16 && ((src.uses_weights && key.weights == DType::F16) || (src.uses_kv && key.kv == DType::F16));
    if needs_f16 {
        s.push_str("enable f16;\n");
    }
    s.push_str(&limits_header());
    s.push_str(include_str!("../../shaders/lib/step.wgsl"));
    if src.uses_weights {
        s.push_str(include_str!("../../shaders/lib/weights.wgsl"));
        let int = matches!(key.kernel, Kernel::MatvecQ8(_));
        if int {
            let x_q8 = include_str!("../../shaders/lib/x_q8.wgsl");
            s.push_str(x_q8.split("// @per-buffer").next().expect("shared part"));
        }
        let buffers: &[&str] = match key.kernel {
            Kernel::Embed => &["w"],
            _ => &["w", "w_up"],
        };
        s.push_str(&weight_snippet(key.weights, key.caps.f16, buffers, int));
    }
    if src.uses_kv {
        s.push_str(&kv_snippet(key.kv, key.caps.f16));
    }
    if matches!(key.kernel, Kernel::Attention | Kernel::AttentionPrefill) {
        s.push_str(include_str!("../../shaders/lib/attention.wgsl"));
    }
    if src.uses_reduce {
        s.push_str(match key.caps.subgroups {
            true => include_str!("../../shaders/lib/reduce_subgroup.wgsl"),
            false => include_str!("../../shaders/lib/reduce_shared.wgsl"),
        });
    }
    if matches!(key.kernel, Kernel::Matmul(_) | Kernel::Matvec(_) | Kernel::MatvecQ8(_)) {
        // x: f32 activations, or the int8 blocks of lib/x_q8.wgsl.
        s.push_str(match key.kernel {
            Kernel::MatvecQ8(_) => "alias X_T = vec4<u32>;\n",
            _ => "alias X_T = vec4<f32>;\n",
        });
        s.push_str(include_str!("../../shaders/lib/linear.wgsl"));
    }
    if let Kernel::Matvec(l) | Kernel::MatvecQ8(l) = key.kernel {
        s.push_str(&format!("const R: u32 = {}u;\n", l.matvec_rows()));
        s.push_str(include_str!("../../shaders/lib/matvec_rows.wgsl"));
    }
    s.push_str(&format!("// ---- {}\n", src.file));
    s.push_str(src.text);
    s
}

pub struct Pipeline {
    pub key: PipelineKey,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Creates pipelines on first use and keeps them.
pub struct Kernels {
    pub gpu: Arc<Gpu>,
    cache: RefCell<HashMap<PipelineKey, Arc<Pipeline>>>,
}

impl Kernels {
    pub fn new(gpu: Arc<Gpu>) -> Self {
        Kernels {
            gpu,
            cache: RefCell::new(HashMap::new()),
        }
    }

    pub fn key(&self, kernel: Kernel, weights: DType, kv: DType) -> PipelineKey {
        PipelineKey {
            kernel,
            weights,
            kv,
            caps: self.gpu.caps,
        }
    }

    pub fn get(&self, key: PipelineKey) -> Result<Arc<Pipeline>> {
        if let Some(p) = self.cache.borrow().get(&key) {
            return Ok(p.clone());
        }
        let label = key.to_string();
        let device = &self.gpu.device;
        let p = self.gpu.scoped(&format!("creating pipeline {label}"), || {
            let entries: Vec<wgpu::BindGroupLayoutEntry> = key
                .kernel
                .slots()
                .iter()
                .enumerate()
                .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
                    binding: i as u32,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: match slot {
                            Slot::Uniform => wgpu::BufferBindingType::Uniform,
                            Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                            Slot::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                })
                .collect();
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&label),
                entries: &entries,
            });
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(assemble(&key).into()),
            });
            let constants = key.kernel.constants();
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&pl),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: true,
                },
                cache: None,
            });
            Ok(Pipeline { key, pipeline, layout })
        })?;
        let p = Arc::new(p);
        self.cache.borrow_mut().insert(key, p.clone());
        Ok(p)
    }
}

/// Every dispatch's parameters at aligned offsets in uniform pages of [`UNIFORM_PAGE`] bytes,
/// written once at build time; a page is added when the last is full, so nothing has to
/// count the dispatches of a program in advance.
pub struct Uniforms {
    label: String,
    align: u64,
    pages: RefCell<Vec<wgpu::Buffer>>,
    /// Next free offset in the last page.
    next: Cell<u64>,
}

/// Bytes of one uniform page.
pub const UNIFORM_PAGE: u64 = 64 << 10;

/// Where one dispatch's parameters live.
pub struct UniformSlot {
    pub buffer: wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl UniformSlot {
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.size),
        })
    }
}

impl Uniforms {
    pub fn new(gpu: &Gpu, label: &str) -> Self {
        Uniforms {
            label: label.to_string(),
            align: gpu.limits.min_uniform_buffer_offset_alignment.max(16) as u64,
            pages: RefCell::new(Vec::new()),
            next: Cell::new(UNIFORM_PAGE),
        }
    }

    /// Bytes allocated (whole pages).
    pub fn bytes(&self) -> u64 {
        self.pages.borrow().len() as u64 * UNIFORM_PAGE
    }

    /// Stores `params` and returns where they are.
    pub fn push<T: bytemuck::Pod>(&self, gpu: &Gpu, params: &T) -> Result<UniformSlot> {
        let bytes = bytemuck::bytes_of(params);
        let size = (bytes.len() as u64).next_multiple_of(16);
        if size > UNIFORM_PAGE {
            return Err(Error::Invalid(format!("{} parameters of {size} bytes", self.label)));
        }
        if self.next.get() + size > UNIFORM_PAGE {
            let mut pages = self.pages.borrow_mut();
            let label = format!("{}[{}]", self.label, pages.len());
            pages.push(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&label),
                size: UNIFORM_PAGE,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
            self.next.set(0);
        }
        let at = self.next.get();
        let buffer = self.pages.borrow().last().expect("a page").clone();
        let mut padded = bytes.to_vec();
        padded.resize(size as usize, 0);
        gpu.queue.write_buffer(&buffer, at, &padded);
        self.next.set(at + size.next_multiple_of(self.align));
        Ok(UniformSlot {
            buffer,
            offset: at,
            size,
        })
    }
}

/// How one grid dimension follows the step: a constant, T, ceil(T / n), T·n, or the
/// number of attention splits.
#[derive(Clone, Copy, Debug)]
pub enum Dim {
    Fixed(u32),
    Tokens,
    TokensDiv(u32),
    TokensMul(u32),
    Splits,
}

/// The shape of a step, from which grids are sized.
#[derive(Clone, Copy, Debug)]
pub struct StepShape {
    pub n_tokens: u32,
    pub splits: u32,
}

impl Dim {
    fn eval(self, s: StepShape) -> u32 {
        match self {
            Dim::Fixed(n) => n,
            Dim::Tokens => s.n_tokens,
            Dim::TokensDiv(n) => s.n_tokens.div_ceil(n),
            Dim::TokensMul(n) => s.n_tokens * n,
            Dim::Splits => s.splits,
        }
    }
}

pub struct Dispatch {
    pub label: String,
    pub pipeline: Arc<Pipeline>,
    pub bind_group: wgpu::BindGroup,
    pub grid: [Dim; 3],
    /// Weight bytes one execution reads for one token (expected value for routed experts);
    /// activations and caches not counted. For bandwidth reports.
    pub weight_bytes: u64,
}

/// A recorded sequence of dispatches (one forward pass), replayed for each step.
#[derive(Default)]
pub struct Program {
    pub dispatches: Vec<Dispatch>,
    /// Named intermediates that can be read back (`lfm logits --dump`): after the first
    /// `after` dispatches, `buffer` holds `row_values` values per token.
    pub taps: Vec<Tap>,
}

/// An intermediate of a program, named after the HF module that produces it.
pub struct Tap {
    pub name: String,
    pub after: usize,
    pub buffer: wgpu::Buffer,
    pub row_values: usize,
}

/// Most timestamp queries one profiled step uses (two per dispatch).
pub const MAX_PROFILE_QUERIES: u32 = 4096;

impl Kernel {
    /// The kernel's family, for grouping a profile (variants of one WGSL file together,
    /// except matvec / matmul which are told apart by what they compute).
    pub fn family(&self) -> String {
        match self {
            Kernel::Matmul(l) | Kernel::Matvec(l) | Kernel::MatvecQ8(l) => {
                let base = match self {
                    Kernel::Matmul(_) => "matmul",
                    Kernel::MatvecQ8(_) => "matvec int8",
                    _ => "matvec",
                };
                let what = match (l.gather, l.glu) {
                    (true, true) => "experts gate+up",
                    (true, false) => "experts down",
                    (false, true) => "dense gate+up",
                    (false, false) => "dense",
                };
                format!("{base} {what}")
            }
            other => {
                let s = format!("{other:?}");
                s.split([' ', '{']).next().unwrap_or("").to_string()
            }
        }
    }
}

impl Program {
    /// Weight bytes one step reads (see [`Dispatch::weight_bytes`]).
    pub fn weight_bytes(&self) -> u64 {
        self.dispatches.iter().map(|d| d.weight_bytes).sum()
    }

    /// Records each dispatch in a pass of its own with begin/end timestamps into `queries`
    /// from index `first` on (TIMESTAMP_QUERY only; no in-pass timestamps needed). Returns,
    /// per timed dispatch, its label, its kernel family, the weight format it read and its
    /// weight bytes.
    pub fn record_profiled(
        &self,
        enc: &mut wgpu::CommandEncoder,
        queries: &wgpu::QuerySet,
        first: u32,
        shape: StepShape,
    ) -> Vec<(String, String, DType, u64)> {
        let mut timed = Vec::new();
        for d in &self.dispatches {
            let [x, y, z] = d.grid.map(|g| g.eval(shape));
            let i = first + 2 * timed.len() as u32;
            if x == 0 || y == 0 || z == 0 || i + 2 > MAX_PROFILE_QUERIES {
                continue;
            }
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&d.label),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: queries,
                    beginning_of_pass_write_index: Some(i),
                    end_of_pass_write_index: Some(i + 1),
                }),
            });
            pass.set_pipeline(&d.pipeline.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(x, y, z);
            timed.push((
                d.label.clone(),
                d.pipeline.key.kernel.family(),
                d.pipeline.key.weights,
                d.weight_bytes,
            ));
        }
        timed
    }

    /// Records every dispatch into `pass` with grids sized for `shape`; returns how many
    /// (empty grids are skipped).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, shape: StepShape) -> usize {
        self.record_range(pass, shape, 0..self.dispatches.len())
    }

    /// Records dispatches `range` into `pass`; returns how many (empty grids are skipped).
    pub fn record_range(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        shape: StepShape,
        range: std::ops::Range<usize>,
    ) -> usize {
        let mut recorded = 0;
        for d in &self.dispatches[range] {
            let [x, y, z] = d.grid.map(|g| g.eval(shape));
            if x == 0 || y == 0 || z == 0 {
                continue;
            }
            pass.set_pipeline(&d.pipeline.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(x, y, z);
            recorded += 1;
        }
        recorded
    }
}

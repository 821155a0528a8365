//! The GPU context: adapter choice, negotiated limits and features (error scopes and readback:
//! `readback.rs`).
//!
//! Knows nothing of models. Every option that changes which kernels run lives in
//! [`GpuOptions`], exposed as CLI flags and, for tests, as environment variables.

use super::memory::AdapterMemory;
use crate::error::{Error, Result};
use std::sync::Arc;

/// How to pick and configure the device.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Adapter index (as listed by `lfm info`) or a case-insensitive substring of its name.
    pub adapter: Option<String>,
    /// Restrict to one backend (vulkan, metal, dx12, gl).
    pub backend: Option<wgpu::Backends>,
    /// Do not use SHADER_F16 even when present (f16 data is then unpacked from u32).
    pub no_f16: bool,
    /// Do not use SUBGROUP even when present (workgroup-memory reductions instead).
    pub no_subgroups: bool,
    /// Lower the storage-binding size the engine plans with (forces the split path).
    pub max_binding_bytes: Option<u64>,
    /// Output columns per decode mat-vec workgroup: 8 (default), 4, 2 or 1
    /// (`LFM_MATVEC_ROWS`).
    pub matvec_rows: Option<u8>,
    /// GPU memory to plan with instead of what the driver reports (`LFM_GPU_MEMORY`).
    pub memory_bytes: Option<u64>,
}

impl GpuOptions {
    /// Options from the environment: `LFM_ADAPTER`, `LFM_BACKEND`, `LFM_NO_F16=1`,
    /// `LFM_NO_SUBGROUPS=1`, `LFM_MAX_BINDING_BYTES=N`, `LFM_MATVEC_ROWS=8|4|2|1`.
    pub fn from_env() -> Result<Self> {
        let flag = |name: &str| std::env::var(name).map(|v| v != "0" && !v.is_empty()).unwrap_or(false);
        let backend = match std::env::var("LFM_BACKEND") {
            Ok(b) => Some(parse_backend(&b)?),
            Err(_) => None,
        };
        let max_binding_bytes = match std::env::var("LFM_MAX_BINDING_BYTES") {
            Ok(v) => Some(
                v.parse()
                    .map_err(|_| Error::Invalid(format!("LFM_MAX_BINDING_BYTES={v} is not a byte count")))?,
            ),
            Err(_) => None,
        };
        let matvec_rows = match std::env::var("LFM_MATVEC_ROWS") {
            Ok(v) => Some(matvec_rows_arg(&v).map_err(|e| Error::Invalid(format!("LFM_MATVEC_ROWS: {e}")))?),
            Err(_) => None,
        };
        let memory_bytes = match std::env::var("LFM_GPU_MEMORY") {
            Ok(v) => Some(crate::units::parse_bytes(&v).ok_or_else(|| {
                Error::Invalid(format!("LFM_GPU_MEMORY={v} is not a size (e.g. 6GiB, 8000MB, 123456)"))
            })?),
            Err(_) => None,
        };
        Ok(GpuOptions {
            adapter: std::env::var("LFM_ADAPTER").ok(),
            backend,
            no_f16: flag("LFM_NO_F16"),
            no_subgroups: flag("LFM_NO_SUBGROUPS"),
            max_binding_bytes,
            matvec_rows,
            memory_bytes,
        })
    }
}

/// The memory the adapter has for a model and where the figure came from: the user's
/// figure, else the backend's (Vulkan heaps, Metal working set, DXGI), else the system RAM
/// less a margin (see [`super::memory`]).
pub fn adapter_memory(adapter: &wgpu::Adapter, user: Option<u64>) -> Option<AdapterMemory> {
    super::memory::adapter_memory(adapter, user)
}

/// Rows per decode mat-vec workgroup as `--matvec-rows` / `LFM_MATVEC_ROWS` give them.
pub fn matvec_rows_arg(s: &str) -> std::result::Result<u8, String> {
    match s.trim() {
        "8" => Ok(8),
        "4" => Ok(4),
        "2" => Ok(2),
        "1" => Ok(1),
        _ => Err(format!("{s:?}: rows per mat-vec workgroup are 8, 4, 2 or 1")),
    }
}

pub fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "metal" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        // wgpu's no-op device: validates and records, runs nothing (structure tests).
        "noop" => Ok(wgpu::Backends::NOOP),
        other => Err(Error::Invalid(format!(
            "unknown backend {other:?} (vulkan, metal, dx12, gl, noop)"
        ))),
    }
}

/// Output columns per decode mat-vec workgroup by default (`R` in
/// shaders/lib/matvec_rows.wgsl; see [`Gpu::matvec_rows`]).
pub const MATVEC_ROWS: u8 = 8;

/// Optional features the kernels use, as granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Caps {
    pub f16: bool,
    pub subgroups: bool,
    pub timestamps: bool,
}

/// An open device and what it allows.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub caps: Caps,
    /// Largest binding a weight matrix chunk may take (≤ the granted limit; lowered by
    /// `max_binding_bytes` to exercise the split path), a multiple of 256.
    pub max_binding: u64,
    /// Memory for the model: `LFM_GPU_MEMORY` / `--gpu-memory`, else what the backend
    /// reports, else the system RAM less a margin; None when nothing is known.
    pub memory: Option<u64>,
    /// That figure with its source (`lfm info` shows it).
    pub memory_info: Option<AdapterMemory>,
    /// Weights are uploaded into buffers mapped directly (MAP_WRITE storage buffers), with no
    /// staging copy: on a CPU or integrated Vulkan adapter (memory shared with the host) whose
    /// driver allows it (`MAPPABLE_PRIMARY_BUFFERS`); at the full shape this saves the 0.75 GiB
    /// of staging copies in flight. Extra usage flags for weight buffers.
    pub weight_usage: wgpu::BufferUsages,
    /// Shaders may use `dot4I8Packed` (the integer-dot mat-vec on int8 activations).
    pub int_dot: bool,
    /// Output columns per decode mat-vec workgroup (8; `LFM_MATVEC_ROWS` = 4, 2 or 1 gives
    /// more, smaller workgroups: a tuning knob for devices of many compute units).
    pub matvec_rows: u8,
    /// Set by the driver's device-lost callback: why the device is gone.
    pub(super) lost: Arc<std::sync::Mutex<Option<String>>>,
    /// The first error an error scope reported after its step returned (in a browser, where
    /// scopes are popped without blocking); the next readback or step returns it.
    pub(super) deferred: Arc<std::sync::Mutex<Option<Error>>>,
}

/// All adapters wgpu finds for `backends` (async: a web page cannot block on it).
pub async fn find_adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    find_adapters_and_wgsl(backends).await.0
}

/// The adapters, and whether their shaders may use packed 4×8-bit integer dot products
/// (WGSL's `packed_4x8_integer_dot_product`; natively naga lowers it where the device has no
/// such instruction).
pub async fn find_adapters_and_wgsl(backends: wgpu::Backends) -> (Vec<wgpu::Adapter>, bool) {
    let mut desc = wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    };
    // The no-op device is only there when asked for by name.
    desc.backend_options.noop.enable = backends == wgpu::Backends::NOOP;
    let instance = wgpu::Instance::new(desc);
    let int_dot = instance
        .wgsl_language_features()
        .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
    (instance.enumerate_adapters(backends).await, int_dot)
}

/// [`find_adapters_and_wgsl`], blocking (native programs).
#[cfg(not(target_arch = "wasm32"))]
pub fn adapters_and_int_dot(backends: wgpu::Backends) -> (Vec<wgpu::Adapter>, bool) {
    pollster::block_on(find_adapters_and_wgsl(backends))
}

/// [`find_adapters`], blocking (native programs).
#[cfg(not(target_arch = "wasm32"))]
pub fn adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    pollster::block_on(find_adapters(backends))
}

/// The adapter `selector` names (an index in `list`, or a case-insensitive substring of its
/// name), else the highest-performance one: discrete, integrated, virtual, other, CPU.
fn choose_adapter(mut list: Vec<wgpu::Adapter>, selector: Option<&str>) -> Result<wgpu::Adapter> {
    let Some(sel) = selector else {
        list.sort_by_key(|a| rank(a.get_info().device_type));
        return match list.is_empty() {
            true => Err(Error::NoAdapter { detail: String::new() }),
            false => Ok(list.remove(0)),
        };
    };
    let names: Vec<String> = list.iter().map(|a| a.get_info().name).collect();
    let idx = match sel.parse::<usize>() {
        Ok(i) if i < list.len() => Some(i),
        _ => names
            .iter()
            .position(|n| n.to_lowercase().contains(&sel.to_lowercase())),
    };
    let idx = idx.ok_or_else(|| Error::NoAdapter {
        detail: format!(" matching {sel:?} (found: {})", names.join(", ")),
    })?;
    Ok(list.swap_remove(idx))
}

/// The features and limits the engine asks of an adapter.
struct DevicePlan {
    caps: Caps,
    features: wgpu::Features,
    limits: wgpu::Limits,
    /// Weights uploaded through mapped buffers (see [`Gpu::weight_usage`]).
    direct_upload: bool,
}

impl DevicePlan {
    fn for_adapter(adapter: &wgpu::Adapter, info: &wgpu::AdapterInfo, opts: &GpuOptions) -> Result<DevicePlan> {
        let have = adapter.features();
        let offered = adapter.limits();
        let mut wanted = wgpu::Features::empty();
        let caps = Caps {
            f16: have.contains(wgpu::Features::SHADER_F16) && !opts.no_f16,
            subgroups: have.contains(wgpu::Features::SUBGROUP) && !opts.no_subgroups,
            timestamps: have.contains(wgpu::Features::TIMESTAMP_QUERY),
        };
        if caps.f16 {
            wanted |= wgpu::Features::SHADER_F16;
        }
        if caps.subgroups {
            wanted |= wgpu::Features::SUBGROUP;
        }
        if caps.timestamps {
            wanted |= wgpu::Features::TIMESTAMP_QUERY;
        }
        // Vulkan only: there host-visible memory of a shared-memory adapter is its ordinary
        // memory; elsewhere (a DX12 upload heap) it could be slower for the shaders to read.
        let shared_memory = matches!(
            info.device_type,
            wgpu::DeviceType::Cpu | wgpu::DeviceType::IntegratedGpu
        ) && info.backend == wgpu::Backend::Vulkan;
        let direct_upload = shared_memory && have.contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS);
        if direct_upload {
            wanted |= wgpu::Features::MAPPABLE_PRIMARY_BUFFERS;
        }
        // What the model needs, raised from the defaults up to what the adapter offers.
        let defaults = wgpu::Limits::default();
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: offered.max_storage_buffer_binding_size,
            max_buffer_size: offered.max_buffer_size,
            max_compute_workgroup_storage_size: offered.max_compute_workgroup_storage_size,
            max_storage_buffers_per_shader_stage: offered.max_storage_buffers_per_shader_stage.min(16),
            max_compute_workgroups_per_dimension: offered.max_compute_workgroups_per_dimension,
            ..defaults
        };
        if offered.max_compute_invocations_per_workgroup < 256 {
            return Err(Error::Limit {
                what: "compute invocations per workgroup".into(),
                needed: 256,
                limit: offered.max_compute_invocations_per_workgroup as u64,
            });
        }
        Ok(DevicePlan {
            caps,
            features: wanted,
            limits,
            direct_upload,
        })
    }
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl Gpu {
    /// Largest state buffer (KV cache, scratch): never split, so the granted binding size.
    pub fn max_state_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Opens the device `opts` choose, with the limits and features the engine uses (async:
    /// a web page cannot block on the adapter and device requests).
    pub async fn request(opts: &GpuOptions) -> Result<Arc<Gpu>> {
        let backends = opts.backend.unwrap_or(wgpu::Backends::PRIMARY);
        let (adapters, int_dot) = find_adapters_and_wgsl(backends).await;
        let adapter = choose_adapter(adapters, opts.adapter.as_deref())?;
        let info = adapter.get_info();
        let memory_info = adapter_memory(&adapter, opts.memory_bytes);
        let plan = DevicePlan::for_adapter(&adapter, &info, opts)?;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("lfm-wgpu"),
                required_features: plan.features,
                required_limits: plan.limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice(e.to_string()))?;
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            log::error!("uncaptured wgpu error: {e}");
        }));
        let lost = Arc::new(std::sync::Mutex::new(None));
        {
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                if let Ok(mut l) = lost.lock() {
                    *l = Some(format!("{reason:?}: {msg}"));
                }
            });
        }
        let granted = plan
            .limits
            .max_storage_buffer_binding_size
            .min(plan.limits.max_buffer_size);
        let max_binding = opts.max_binding_bytes.map_or(granted, |m| m.min(granted)) / 256 * 256;
        let gpu = Gpu {
            device,
            queue,
            info,
            limits: plan.limits,
            caps: plan.caps,
            max_binding,
            memory: memory_info.map(|m| m.bytes),
            memory_info,
            weight_usage: match plan.direct_upload {
                true => wgpu::BufferUsages::MAP_WRITE,
                false => wgpu::BufferUsages::empty(),
            },
            int_dot,
            matvec_rows: opts.matvec_rows.unwrap_or(MATVEC_ROWS),
            lost,
            deferred: Default::default(),
        };
        gpu.log();
        Ok(Arc::new(gpu))
    }

    fn log(&self) {
        let (info, limits) = (&self.info, &self.limits);
        log::info!(
            "adapter: {} ({:?}, {:?}, driver {} {})",
            info.name,
            info.device_type,
            info.backend,
            info.driver,
            info.driver_info
        );
        log::info!(
            "limits: storage binding {} B (planning with {}), buffer {} B, workgroup storage {} B",
            limits.max_storage_buffer_binding_size,
            self.max_binding,
            limits.max_buffer_size,
            limits.max_compute_workgroup_storage_size
        );
        if let Some(m) = self.memory_info {
            log::info!("memory: {} B ({})", m.bytes, m.source.describe());
        }
        log::info!(
            "features: shader-f16 {}, subgroups {}, timestamps {}, packed integer dot {}",
            self.caps.f16,
            self.caps.subgroups,
            self.caps.timestamps,
            self.int_dot
        );
    }

    /// [`Gpu::request`], blocking (native programs).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(opts: &GpuOptions) -> Result<Arc<Gpu>> {
        pollster::block_on(Self::request(opts))
    }
}

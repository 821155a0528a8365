//! How much memory an adapter has to hold a model, and where that figure came from.
//!
//! Each backend is asked in its own terms: Vulkan's memory heaps, Metal's working-set
//! budget (`recommendedMaxWorkingSetSize`), DXGI's dedicated and shared memory. A figure the
//! user gives (`LFM_GPU_MEMORY`, `--gpu-memory`) wins; when the backend tells nothing (GL,
//! a driver without the query) the system RAM less a margin stands in, and says so.
//! The rules that turn the raw numbers into one figure are pure functions, tested here.

/// Where an adapter's memory figure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemorySource {
    /// `LFM_GPU_MEMORY` or `--gpu-memory`.
    User,
    /// Vulkan: the device-local heaps (a discrete GPU's VRAM, a CPU adapter's RAM).
    VulkanDeviceLocal,
    /// Vulkan on an integrated GPU: device-local plus host heaps, at most the system RAM
    /// less the margin (the driver splits one shared memory into a carve-out and the rest).
    VulkanUnified,
    /// Metal: the device's `recommendedMaxWorkingSetSize`.
    MetalWorkingSet,
    /// DXGI: the adapter's dedicated video memory (a discrete GPU).
    Dx12Dedicated,
    /// DXGI on an integrated GPU: dedicated plus shared system memory.
    Dx12Shared,
    /// Nothing from the backend: the system RAM less [`SYSTEM_MARGIN`]. An estimate.
    SystemRam,
}

impl MemorySource {
    /// What `lfm info` prints next to the figure.
    pub fn describe(self) -> &'static str {
        match self {
            MemorySource::User => "given by LFM_GPU_MEMORY / --gpu-memory",
            MemorySource::VulkanDeviceLocal => "Vulkan device-local heaps",
            MemorySource::VulkanUnified => "Vulkan heaps of a unified-memory iGPU, capped at system RAM less a margin",
            MemorySource::MetalWorkingSet => "Metal recommendedMaxWorkingSetSize",
            MemorySource::Dx12Dedicated => "DXGI dedicated video memory",
            MemorySource::Dx12Shared => "DXGI dedicated + shared system memory (integrated GPU)",
            MemorySource::SystemRam => "estimate: system RAM less a margin (the backend reports no size)",
        }
    }

    /// True when the figure is the driver's or the user's, false for the RAM estimate.
    pub fn is_reported(self) -> bool {
        self != MemorySource::SystemRam
    }
}

/// Memory an adapter can hold, with its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdapterMemory {
    pub bytes: u64,
    pub source: MemorySource,
}

/// Left to the OS and other programs when the system RAM stands in for GPU memory: a quarter
/// of it, at least 2 GiB and at most 8 GiB.
pub const SYSTEM_MARGIN: (u64, u64) = (2 << 30, 8 << 30);

/// `total` system RAM less the margin.
pub fn ram_less_margin(total: u64) -> u64 {
    let margin = (total / 4).clamp(SYSTEM_MARGIN.0, SYSTEM_MARGIN.1);
    total.saturating_sub(margin)
}

/// One Vulkan memory heap: its size and whether it is device-local.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heap {
    pub size: u64,
    pub device_local: bool,
}

/// The figure Vulkan's heaps give: the device-local heaps, or on an integrated GPU every
/// heap (its memory is the host's) capped at the system RAM less the margin.
pub fn from_vulkan_heaps(heaps: &[Heap], integrated: bool, system_ram: Option<u64>) -> Option<AdapterMemory> {
    let local: u64 = heaps.iter().filter(|h| h.device_local).map(|h| h.size).sum();
    if integrated {
        let all: u64 = heaps.iter().map(|h| h.size).sum();
        let cap = system_ram.map_or(u64::MAX, ram_less_margin);
        let bytes = all.min(cap).max(local);
        return (bytes > 0).then_some(AdapterMemory {
            bytes,
            source: MemorySource::VulkanUnified,
        });
    }
    (local > 0).then_some(AdapterMemory {
        bytes: local,
        source: MemorySource::VulkanDeviceLocal,
    })
}

/// The figure DXGI's adapter description gives: the dedicated memory of a discrete GPU;
/// dedicated plus shared on an integrated one (its dedicated share is a small carve-out).
pub fn from_dxgi(dedicated: u64, shared: u64, integrated: bool) -> Option<AdapterMemory> {
    let (bytes, source) = match integrated {
        true => (dedicated + shared, MemorySource::Dx12Shared),
        false => (dedicated, MemorySource::Dx12Dedicated),
    };
    (bytes > 0).then_some(AdapterMemory { bytes, source })
}

/// The figure Metal's working-set budget gives.
pub fn from_metal(recommended_working_set: u64) -> Option<AdapterMemory> {
    (recommended_working_set > 0).then_some(AdapterMemory {
        bytes: recommended_working_set,
        source: MemorySource::MetalWorkingSet,
    })
}

/// The user's figure, else the backend's, else the system RAM less the margin.
pub fn choose(user: Option<u64>, backend: Option<AdapterMemory>, system_ram: Option<u64>) -> Option<AdapterMemory> {
    if let Some(bytes) = user {
        return Some(AdapterMemory {
            bytes,
            source: MemorySource::User,
        });
    }
    backend.or_else(|| {
        system_ram.map(|r| AdapterMemory {
            bytes: ram_less_margin(r),
            source: MemorySource::SystemRam,
        })
    })
}

/// The machine's total RAM, if the OS tells.
pub fn system_ram() -> Option<u64> {
    let mut sys = sysinfo::System::new().ok()?;
    sys.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
    let total = sys.total_memory();
    (total > 0).then_some(total)
}

/// What the adapter's backend reports (no user figure, no fallback).
pub fn from_backend(adapter: &wgpu::Adapter) -> Option<AdapterMemory> {
    let info = adapter.get_info();
    let integrated = info.device_type == wgpu::DeviceType::IntegratedGpu;
    match info.backend {
        wgpu::Backend::Vulkan => vulkan(adapter, integrated),
        wgpu::Backend::Metal => metal(adapter),
        wgpu::Backend::Dx12 => dx12(adapter, integrated),
        _ => None,
    }
}

/// The adapter's memory: `user`'s figure, else the backend's, else the system RAM estimate.
pub fn adapter_memory(adapter: &wgpu::Adapter, user: Option<u64>) -> Option<AdapterMemory> {
    if user.is_some() {
        return choose(user, None, None);
    }
    choose(None, from_backend(adapter), system_ram())
}

#[cfg(any(target_os = "linux", target_os = "windows", target_os = "android"))]
fn vulkan(adapter: &wgpu::Adapter, integrated: bool) -> Option<AdapterMemory> {
    // SAFETY: the raw handles are only used for a read-only property query while the
    // adapter (and so the instance) is alive.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let props = unsafe {
        hal.shared_instance()
            .raw_instance()
            .get_physical_device_memory_properties(hal.raw_physical_device())
    };
    let heaps: Vec<Heap> = props.memory_heaps[..props.memory_heap_count as usize]
        .iter()
        .map(|h| Heap {
            size: h.size,
            device_local: h.flags.contains(ash::vk::MemoryHeapFlags::DEVICE_LOCAL),
        })
        .collect();
    from_vulkan_heaps(&heaps, integrated, integrated.then(system_ram).flatten())
}

#[cfg(not(any(target_os = "linux", target_os = "windows", target_os = "android")))]
fn vulkan(_: &wgpu::Adapter, _: bool) -> Option<AdapterMemory> {
    None
}

#[cfg(target_vendor = "apple")]
fn metal(adapter: &wgpu::Adapter) -> Option<AdapterMemory> {
    use objc2_metal::MTLDevice;
    // SAFETY: a read-only property of the device, read while the adapter is alive.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Metal>() }?;
    from_metal(hal.raw_device().recommendedMaxWorkingSetSize())
}

#[cfg(not(target_vendor = "apple"))]
fn metal(_: &wgpu::Adapter) -> Option<AdapterMemory> {
    None
}

#[cfg(windows)]
fn dx12(adapter: &wgpu::Adapter, integrated: bool) -> Option<AdapterMemory> {
    // SAFETY: a read-only description of the adapter, read while it is alive.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Dx12>() }?;
    let desc = unsafe { hal.raw_adapter().GetDesc1() }.ok()?;
    from_dxgi(
        desc.DedicatedVideoMemory as u64,
        desc.SharedSystemMemory as u64,
        integrated,
    )
}

#[cfg(not(windows))]
fn dx12(_: &wgpu::Adapter, _: bool) -> Option<AdapterMemory> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    const GIB: u64 = 1 << 30;

    #[test]
    fn discrete_vulkan_counts_only_device_local_heaps() {
        let heaps = [
            Heap {
                size: 8 * GIB,
                device_local: true,
            },
            Heap {
                size: 32 * GIB,
                device_local: false,
            },
            Heap {
                size: GIB / 4,
                device_local: true,
            },
        ];
        let m = from_vulkan_heaps(&heaps, false, Some(64 * GIB)).unwrap();
        assert_eq!(
            (m.bytes, m.source),
            (8 * GIB + GIB / 4, MemorySource::VulkanDeviceLocal)
        );
        assert_eq!(
            from_vulkan_heaps(
                &[Heap {
                    size: 4 * GIB,
                    device_local: false
                }],
                false,
                None
            ),
            None
        );
    }

    #[test]
    fn integrated_vulkan_adds_the_host_heap_up_to_ram_less_margin() {
        // A 512 MiB carve-out and a 15 GiB GTT heap on a 32 GiB laptop.
        let heaps = [
            Heap {
                size: GIB / 2,
                device_local: true,
            },
            Heap {
                size: 15 * GIB,
                device_local: false,
            },
        ];
        let m = from_vulkan_heaps(&heaps, true, Some(32 * GIB)).unwrap();
        assert_eq!((m.bytes, m.source), (15 * GIB + GIB / 2, MemorySource::VulkanUnified));
        // Heaps that add up past the RAM are capped at RAM less the margin (16 GiB: 12).
        let m = from_vulkan_heaps(
            &[
                Heap {
                    size: 16 * GIB,
                    device_local: true,
                },
                Heap {
                    size: 16 * GIB,
                    device_local: false,
                },
            ],
            true,
            Some(16 * GIB),
        )
        .unwrap();
        assert_eq!(m.bytes, 16 * GIB, "never below the device-local heaps");
        let m = from_vulkan_heaps(
            &[
                Heap {
                    size: 2 * GIB,
                    device_local: true,
                },
                Heap {
                    size: 30 * GIB,
                    device_local: false,
                },
            ],
            true,
            Some(16 * GIB),
        )
        .unwrap();
        assert_eq!(m.bytes, 12 * GIB);
    }

    #[test]
    fn dxgi_integrated_adds_shared_memory() {
        let m = from_dxgi(GIB / 2, 8 * GIB, true).unwrap();
        assert_eq!((m.bytes, m.source), (8 * GIB + GIB / 2, MemorySource::Dx12Shared));
        let m = from_dxgi(12 * GIB, 16 * GIB, false).unwrap();
        assert_eq!((m.bytes, m.source), (12 * GIB, MemorySource::Dx12Dedicated));
        assert_eq!(from_dxgi(0, 0, false), None);
    }

    #[test]
    fn margin_is_a_quarter_clamped_to_2_and_8_gib() {
        assert_eq!(ram_less_margin(8 * GIB), 6 * GIB);
        assert_eq!(ram_less_margin(16 * GIB), 12 * GIB);
        assert_eq!(ram_less_margin(64 * GIB), 56 * GIB);
        assert_eq!(ram_less_margin(GIB), 0);
    }

    #[test]
    fn user_figure_wins_then_backend_then_ram() {
        let metal = from_metal(11 * GIB);
        assert_eq!(
            choose(Some(3 * GIB), metal, Some(16 * GIB)).unwrap().source,
            MemorySource::User
        );
        assert_eq!(
            choose(None, metal, Some(16 * GIB)).unwrap().source,
            MemorySource::MetalWorkingSet
        );
        let ram = choose(None, None, Some(16 * GIB)).unwrap();
        assert_eq!((ram.bytes, ram.source), (12 * GIB, MemorySource::SystemRam));
        assert!(!ram.source.is_reported());
        assert_eq!(choose(None, None, None), None);
    }
}

//! Device probes for benchmarks: measured copy bandwidth and FMA peak — the yardsticks
//! wgpu-bench reports the engine's kernels against, measured by the same binary in the same run.

use super::{Kernel, Kernels, Uniforms};
use crate::error::Result;
use crate::gpu::{DType, Gpu};
use std::time::Instant;

/// Copy bandwidth in bytes/s: (bytes read + bytes written) / time of buffer-to-buffer copies
/// of `size` bytes, best of `reps` submissions of 4 copies each.
pub fn copy_bandwidth(gpu: &Gpu, size: u64, reps: usize) -> Result<f64> {
    let size = size.min(gpu.limits.max_buffer_size).next_multiple_of(256);
    let mk = |label| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    };
    let (a, b) = (mk("copy probe a"), mk("copy probe b"));
    let run = |n: usize| -> Result<f64> {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for i in 0..n {
            let (src, dst) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            enc.copy_buffer_to_buffer(src, 0, dst, 0, size);
        }
        let t = Instant::now();
        gpu.queue.submit([enc.finish()]);
        gpu.wait()?;
        Ok(t.elapsed().as_secs_f64())
    };
    run(1)?;
    let mut best = f64::MAX;
    for _ in 0..reps.max(1) {
        best = best.min(run(4)?);
    }
    Ok(2.0 * 4.0 * size as f64 / best)
}

/// f32 FMA throughput in FLOP/s (an FMA counts 2), best of `reps`.
pub fn fma_peak(k: &Kernels, reps: usize) -> Result<f64> {
    let gpu = &k.gpu;
    let groups: u32 = 512;
    let iters: u32 = 2048;
    let pipeline = k.get(k.key(Kernel::FmaPeak, DType::F32, DType::F32))?;
    let uniforms = Uniforms::new(gpu, "fma params", 1);
    let params = uniforms.push(gpu, &[iters, 0u32, 0, 0])?;
    let step = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("fma step"),
        size: 16,
        usage: wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    });
    let out = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("fma out"),
        size: groups as u64 * 256 * 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("fma"),
        layout: &pipeline.layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: step.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::Buffer(params),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: out.as_entire_binding(),
            },
        ],
    });
    let run = || -> Result<f64> {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(groups, 1, 1);
        }
        let t = Instant::now();
        gpu.queue.submit([enc.finish()]);
        gpu.wait()?;
        Ok(t.elapsed().as_secs_f64())
    };
    run()?;
    let mut best = f64::MAX;
    for _ in 0..reps.max(1) {
        best = best.min(run()?);
    }
    // 4 vec4 FMAs per iteration per thread, 2 FLOP each.
    let flop = groups as f64 * 256.0 * iters as f64 * 4.0 * 4.0 * 2.0;
    Ok(flop / best)
}

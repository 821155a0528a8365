//! Device probes for benchmarks: measured copy bandwidth and FMA peak — the yardsticks
//! wgpu-bench reports the engine's kernels against, measured by the same binary in the same run.

use super::linear::LinearOp;
use super::ops::{Recorder, Routing};
use super::Shape;
use super::{Kernel, Kernels, StepShape, Uniforms};
use crate::error::Result;
use crate::gpu::GpuMatrix;
use crate::gpu::{DType, Gpu};
use web_time::Instant;

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
    let uniforms = Uniforms::new(gpu, "fma params");
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
                resource: params.binding(),
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

/// A decode mat-vec to time: `rows × cols` weights; stacked experts when `group_rows > 1`
/// (one token's top-k of them are read); `glu` pairs it with an equal up matrix.
#[derive(Clone, Copy, Debug)]
pub struct MatvecShape {
    pub name: &'static str,
    pub rows: usize,
    pub cols: usize,
    pub group_rows: usize,
    pub glu: bool,
}

/// One timed decode mat-vec.
#[derive(Clone, Debug)]
pub struct KernelTiming {
    /// On int8 activations (the integer-dot mat-vec).
    pub int8: bool,
    pub dtype: DType,
    pub name: &'static str,
    pub rows: usize,
    pub cols: usize,
    /// Weight bytes one run reads.
    pub bytes: u64,
    /// Best time of one run.
    pub seconds: f64,
    /// `seconds` is the mat-vec dispatch alone by GPU timestamps (the int8 path's activation
    /// quantization left out: decode shares it between readers); else the wall clock of
    /// whole runs (quantization and submission included).
    pub timestamps: bool,
}

/// Times each decode mat-vec of `shapes` (routed experts read for one token's `topk`) in each
/// of `dtypes`, on int8 activations (block formats) when `int8`. With timestamp queries: the
/// best of `reps` submissions of 8 runs, the mat-vec dispatch alone timed in each. Without:
/// the best of `reps` submissions of 8 back-to-back runs by the wall clock, waiting for the
/// device before stopping it.
pub fn time_decode_matvecs(
    k: &Kernels,
    shapes: &[MatvecShape],
    topk: u32,
    dtypes: &[DType],
    reps: usize,
    int8: bool,
) -> Result<Vec<KernelTiming>> {
    let gpu = &k.gpu;
    let topk = topk.max(1);
    let experts = shapes.iter().map(|s| s.rows / s.group_rows).max().unwrap_or(1) as u32;
    let maxd = shapes.iter().map(|s| s.rows.max(s.cols)).max().unwrap_or(1);
    let mk = |label: &str, size: u64| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(16),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    };
    let x = mk("x", (topk as usize * maxd * 4) as u64);
    // Int8 blocks: 48 bytes per 32 values (shaders/lib/x_q8.wgsl).
    let xq = mk("xq", (topk as usize * maxd.div_ceil(32) * 48) as u64);
    let y = mk("y", (topk as usize * maxd * 4) as u64);
    let ids = mk("ids", 64);
    let wts = mk("wts", 64);
    gpu.queue.write_buffer(
        &ids,
        0,
        bytemuck::cast_slice(&(0..topk).map(|i| i * 7 % experts).collect::<Vec<_>>()),
    );
    gpu.queue
        .write_buffer(&wts, 0, bytemuck::cast_slice(&vec![0.25f32; topk as usize]));
    let step = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("step"),
        size: 16,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue.write_buffer(&step, 0, bytemuck::cast_slice(&[1u32, 0, 1, 0]));
    let dummy = mk("dummy", 16);
    let mut rows = Vec::new();
    for &dtype in dtypes {
        for &MatvecShape {
            name,
            rows: n,
            cols: kk,
            group_rows: group,
            glu,
        } in shapes
        {
            if !dtype.fits_cols(kk) || (int8 && !dtype.is_block()) {
                continue;
            }
            let sigma = 1.0 / (kk as f32).sqrt();
            let w = GpuMatrix::random(gpu, name, (n, kk, group), dtype, sigma, 1)?;
            let up = match glu {
                true => Some(GpuMatrix::random(gpu, name, (n, kk, group), dtype, sigma, 2)?),
                false => None,
            };
            let uniforms = Uniforms::new(gpu, "params");
            let moe = group > 1;
            let routing = Routing {
                ids: &ids,
                weights: &wts,
                offsets: &dummy,
                rows: &dummy,
                topk,
            };
            let mut r = Recorder::new(k, &uniforms, &step, &dummy, DType::F32);
            r.linear(
                Shape::Decode,
                &LinearOp {
                    x: &x,
                    ldx: kk as u32,
                    w: &w,
                    w_up: up.as_ref(),
                    y: &y,
                    ldy: if moe { group as u32 } else { n as u32 },
                    bias: None,
                    // Experts' down projection as decode runs it: summed into the residual.
                    acc: moe && !glu,
                    moe: moe.then_some((&routing, if glu { topk } else { 1 })),
                    scale: moe && !glu,
                    norm: None,
                    combine: moe && !glu,
                    x_q8: int8.then_some(&xq),
                },
            )?;
            let prog = r.prog;
            let bytes = prog.weight_bytes();
            let run = |iters: usize| -> Result<f64> {
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    for _ in 0..iters {
                        prog.record(&mut pass, StepShape { n_tokens: 1, splits: 1 });
                    }
                }
                let t = Instant::now();
                gpu.queue.submit([enc.finish()]);
                gpu.wait()?;
                Ok(t.elapsed().as_secs_f64())
            };
            run(1)?;
            let iters = 8;
            let mut best = f64::MAX;
            if gpu.caps.timestamps {
                for _ in 0..reps.max(1) {
                    best = best.min(matvec_gpu_seconds(gpu, &prog, iters)?);
                }
            } else {
                for _ in 0..reps.max(1) {
                    best = best.min(run(iters)? / iters as f64);
                }
            }
            rows.push(KernelTiming {
                int8,
                dtype,
                name,
                rows: n,
                cols: kk,
                bytes,
                seconds: best,
                timestamps: gpu.caps.timestamps,
            });
        }
    }
    Ok(rows)
}

/// Best GPU time of one run of `prog`'s mat-vec dispatches over `iters` runs recorded into one
/// submission (each dispatch in a pass of its own between timestamps, so the device stays
/// busy and clocked up; the other dispatches, the int8 path's activation quantization, run
/// untimed).
fn matvec_gpu_seconds(gpu: &Gpu, prog: &super::Program, iters: usize) -> Result<f64> {
    let per_run = 2 * prog.dispatches.len() as u32;
    let count = (per_run * iters as u32).min(super::MAX_PROFILE_QUERIES);
    let iters = (count / per_run.max(1)) as usize;
    let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("kernel probe"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("kernel probe resolve"),
        size: count as u64 * 8,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    let mut runs = Vec::with_capacity(iters);
    for i in 0..iters as u32 {
        let first = i * per_run;
        runs.push((
            first,
            prog.record_profiled(&mut enc, &queries, first, StepShape { n_tokens: 1, splits: 1 }),
        ));
    }
    enc.resolve_query_set(&queries, 0..count, &resolve, 0);
    gpu.queue.submit([enc.finish()]);
    let raw = gpu.read(&resolve, 0, count as u64 * 8)?;
    let ticks: &[u64] = bytemuck::cast_slice(&raw);
    let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
    let run_seconds = |(first, timed): &(u32, Vec<(String, String, DType, u64)>)| -> f64 {
        timed
            .iter()
            .enumerate()
            .filter(|(_, (_, family, _, _))| family.starts_with("matvec"))
            .map(|(j, _)| {
                let q = (*first + 2 * j as u32) as usize;
                ticks[q + 1].saturating_sub(ticks[q]) as f64 * period
            })
            .sum()
    };
    Ok(runs.iter().map(run_seconds).fold(f64::MAX, f64::min))
}

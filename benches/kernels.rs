//! `cargo bench`: the decode mat-vec kernels at LFM2-8B-A1B's shapes (hidden 2048, experts
//! 32 × 1792, top-4, vocab 65536) in each weight format, against this device's copy bandwidth.
//! Every timing waits for the device before the clock stops (see `probe::time_decode_matvecs`).
//! `LFM_BENCH_SMALL=1` quarters the shapes for slow (software) adapters.

use lfm_wgpu::gpu::{DType, Gpu, GpuOptions};
use lfm_wgpu::kernels::probe::{self, MatvecShape};
use lfm_wgpu::kernels::Kernels;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::new(&GpuOptions::from_env()?)?;
    let div = if std::env::var("LFM_BENCH_SMALL").is_ok() { 4 } else { 1 };
    let (h, im, e, vocab) = (2048 / div, 1792 / div, 32, 65536 / div);
    let m = |name, rows, cols, group_rows, glu| MatvecShape {
        name,
        rows,
        cols,
        group_rows,
        glu,
    };
    let shapes = [
        m("conv in_proj", 3 * h, h, 1, false),
        m("out_proj", h, h, 1, false),
        m("experts gate+up", e * im, h, im, true),
        m("experts down", e * h, im, h, false),
        m("head", vocab, h, 1, false),
    ];
    let k = Kernels::new(gpu.clone());
    let copy = probe::copy_bandwidth(&gpu, 256 << 20, 3)?;
    println!(
        "{} — copy bandwidth {:.2} GB/s (shapes ÷{div})",
        gpu.info.name,
        copy / 1e9
    );
    for t in probe::time_decode_matvecs(&k, &shapes, 4, &[DType::Q4_0, DType::Q8_0, DType::F16], 5, false)? {
        let bw = t.bytes as f64 / t.seconds;
        println!(
            "{:<6} {:<16} {:>6}×{:<5} {:>9.1} µs {:>8.2} GB/s {:>6.1}% of copy",
            t.dtype.name(),
            t.name,
            t.rows,
            t.cols,
            t.seconds * 1e6,
            bw / 1e9,
            100.0 * bw / copy
        );
    }
    Ok(())
}

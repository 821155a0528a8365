//! `wgpu-bench`: llama-bench-style prefill (ppN) and decode (tgN) throughput of a checkpoint
//! on one adapter, mean ± sd over repetitions.
//!
//! `wgpu-bench --model DIR [--dtype f16|f32] [-p 512] [-n 128] [-r 3] [--adapter A] [--json]`
//!
//! Prompt tokens are deterministic pseudo-random ids; decode feeds the GPU's own greedy ids
//! back without a host round trip for the input (only the sampled id is read per token).

use anyhow::{bail, Context, Result};
use clap::Parser;
use lfm_wgpu::gpu::{context, DType, Gpu, GpuOptions};
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::session::{Session, SessionOptions};
use lfm_wgpu::model::weights::Checkpoint;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "wgpu-bench",
    version,
    about = "Prefill / decode throughput of LFM2-MoE on a wgpu adapter"
)]
struct Args {
    /// Checkpoint directory (config.json + safetensors)
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// Prompt tokens (pp test)
    #[arg(short = 'p', default_value_t = 512)]
    prompt: usize,
    /// Generated tokens (tg test)
    #[arg(short = 'n', default_value_t = 128)]
    gen: usize,
    /// Repetitions
    #[arg(short = 'r', default_value_t = 3)]
    reps: usize,
    #[arg(long)]
    adapter: Option<String>,
    #[arg(long)]
    backend: Option<String>,
    #[arg(long, default_value_t = 512)]
    ubatch: usize,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

fn mean_sd(x: &[f64]) -> (f64, f64) {
    let m = x.iter().sum::<f64>() / x.len() as f64;
    let v = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len().max(2) - 1) as f64;
    (m, v.sqrt())
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let a = Args::parse();
    let Some(dir) = &a.model else {
        bail!("--model DIR is required for now (synthetic full-size weights are planned, see issue #4); try --model tests/data/tiny_c");
    };
    if a.reps == 0 || a.prompt == 0 {
        bail!("-r and -p must be positive");
    }
    let mut opts = GpuOptions::from_env()?;
    opts.adapter = a.adapter.clone().or(opts.adapter);
    if let Some(b) = &a.backend {
        opts.backend = Some(context::parse_backend(b)?);
    }
    let dtype = DType::parse(&a.dtype)?;
    let ckpt = Checkpoint::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let gpu = Gpu::new(&opts)?;
    let t = Instant::now();
    let model = Arc::new(GpuModel::load(gpu.clone(), &ckpt, dtype)?);
    gpu.wait()?;
    let load_s = t.elapsed().as_secs_f64();
    let sopts = SessionOptions {
        ctx: (a.prompt + a.gen + 1).next_multiple_of(256),
        ubatch: a.ubatch,
        kv_dtype: None,
    };
    let mut s = Session::new(model.clone(), &sopts)?;
    let vocab = model.cfg.vocab_size as u64;
    let mut seed = 0x9e3779b97f4a7c15u64;
    let prompt: Vec<u32> = (0..a.prompt)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % vocab) as u32
        })
        .collect();
    // Warm-up: compiles nothing new (pipelines exist), but lets the driver settle.
    s.prefill(&prompt[..prompt.len().min(8)], false)?;
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for _ in 0..a.reps {
        s.reset();
        let t = Instant::now();
        let (mut next, _) = s.prefill(&prompt, false)?;
        pp.push(a.prompt as f64 / t.elapsed().as_secs_f64());
        if a.gen > 0 {
            let t = Instant::now();
            for _ in 0..a.gen {
                next = s.decode(Some(next), false)?.0;
            }
            tg.push(a.gen as f64 / t.elapsed().as_secs_f64());
        }
    }
    let (ppm, pps) = mean_sd(&pp);
    let (tgm, tgs) = if tg.is_empty() { (0.0, 0.0) } else { mean_sd(&tg) };
    let info = &gpu.info;
    if a.json {
        let j = serde_json::json!({
            "adapter": info.name, "backend": format!("{:?}", info.backend), "driver": info.driver_info,
            "model": dir.display().to_string(), "dtype": a.dtype, "load_s": load_s,
            "weight_bytes": model.weight_bytes,
            "tests": [
                {"test": format!("pp{}", a.prompt), "tok_s_mean": ppm, "tok_s_sd": pps, "reps": a.reps},
                {"test": format!("tg{}", a.gen), "tok_s_mean": tgm, "tok_s_sd": tgs, "reps": a.reps},
            ]
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        println!(
            "adapter: {} ({:?}, {:?}, {})  model: {}  dtype: {}  weights: {:.1} MB  load: {:.2} s",
            info.name,
            info.device_type,
            info.backend,
            info.driver_info,
            dir.display(),
            a.dtype,
            model.weight_bytes as f64 / 1e6,
            load_s
        );
        println!("| {:<8} | {:>20} |", "test", "t/s");
        println!("| {:-<8} | {:->20} |", "", "");
        println!(
            "| {:<8} | {:>20} |",
            format!("pp{}", a.prompt),
            format!("{ppm:.2} ± {pps:.2}")
        );
        if a.gen > 0 {
            println!(
                "| {:<8} | {:>20} |",
                format!("tg{}", a.gen),
                format!("{tgm:.2} ± {tgs:.2}")
            );
        }
    }
    Ok(())
}

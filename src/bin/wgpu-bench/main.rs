//! `wgpu-bench`: how fast LFM2-MoE runs on a wgpu adapter, in llama-bench's shape.
//!
//! `wgpu-bench [--model DIR] [--dtype q4_0] [--layers N] [-p 512] [-n 128] [-r 5] [--depth D]
//!             [--adapter A] [--backend B] [--matvec-rows 8] [--profile] [--kernels] [--submits 1,2,4]
//!             [--json]`
//!
//! With no --model it benchmarks the full LFM2-8B-A1B shape with synthetic weights
//! (deterministic, no download). It reports ppN / tgN tok/s (mean ± sd), time to first token,
//! load time, decode's effective bandwidth (weight + KV bytes read per token × tok/s) as a
//! share of the copy bandwidth this run measures on the same device, prefill FLOP/s against
//! a measured FMA peak, and GPU memory. --profile adds a per-kernel decode breakdown from
//! timestamp queries; --kernels times the decode mat-vecs at the model's shapes per format.
//! Every tg run also reports the host cost per decode token (host_cost.rs): encoding and
//! submitting, time blocked on the GPU, GPU time, dispatches, passes and submissions.

mod host_cost;

use anyhow::{Context, Result};
use clap::Parser;
use lfm_wgpu::gguf::mix::Mix;
use lfm_wgpu::gguf::writer::{write_synthetic, Types};
use lfm_wgpu::gpu::{context, DType, Gpu, GpuOptions};
use lfm_wgpu::kernels::{probe, Kernels};
use lfm_wgpu::model::config::Config;
use lfm_wgpu::model::files::ModelFiles;
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::memory::{peak_host_memory, MemoryEstimate};
use lfm_wgpu::model::session::{Activations, DispatchTime, Session, SessionOptions};
use lfm_wgpu::model::synthetic::Synthetic;
use lfm_wgpu::model::weights::Source;
use lfm_wgpu::units::gib;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// Writes a line to stdout; a closed pipe is not an error (`wgpu-bench | head`).
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
/// As [`say!`], without the newline.
#[allow(unused_macros)]
macro_rules! put {
    ($($t:tt)*) => {{
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "wgpu-bench",
    version,
    about = "Prefill / decode speed of LFM2-MoE on a wgpu adapter"
)]
struct Args {
    /// Checkpoint directory or GGUF file; default: the LFM2-8B-A1B shape with synthetic weights
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Weight format: q4_0 (default), q8_0, f16, f32; synthetic weights also take llama.cpp's
    /// GGUF type mixes q4_k_m and q5_k_m
    #[arg(long)]
    dtype: Option<String>,
    /// Synthetic model: this many layers of the real schedule (default 24; fewer on CPU adapters)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=24))]
    layers: Option<u32>,
    /// Prompt tokens of the pp test (0: none)
    #[arg(short = 'p', value_parser = clap::value_parser!(u32).range(0..=MAX_TOKENS))]
    prompt: Option<u32>,
    /// Generated tokens of the tg test (0: none)
    #[arg(short = 'n', value_parser = clap::value_parser!(u32).range(0..=MAX_TOKENS))]
    gen: Option<u32>,
    /// Repetitions
    #[arg(short = 'r', value_parser = clap::value_parser!(u32).range(1..=1000))]
    reps: Option<u32>,
    /// Decode after this many tokens of context
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=MAX_TOKENS))]
    depth: u32,
    #[arg(long)]
    adapter: Option<String>,
    #[arg(long)]
    backend: Option<String>,
    /// Output columns per decode mat-vec workgroup: 8 (default), 4, 2 or 1 (more, smaller
    /// workgroups; LFM_MATVEC_ROWS)
    #[arg(long, value_parser = context::matvec_rows_arg)]
    matvec_rows: Option<u8>,
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=8192))]
    ubatch: u32,
    /// What decode multiplies block-format weights with: auto, exact (f32 activations) or
    /// int8 (quantized once per input, packed integer dot products)
    #[arg(long, default_value = "auto")]
    activations: String,
    /// Per-kernel decode breakdown from timestamp queries
    #[arg(long)]
    profile: bool,
    /// Time each decode mat-vec at the model's shapes for every weight format
    #[arg(long)]
    kernels: bool,
    /// With --kernels: only these formats (comma-separated, e.g. q4_0,q4_k,q6_k)
    #[arg(long, requires = "kernels")]
    formats: Option<String>,
    /// Also time tg with structured output (a JSON Schema over a synthetic vocabulary of the
    /// model's size) against the same sampled decode without it
    #[arg(long)]
    constrained: bool,
    /// Submissions per decode token (comma-separated to compare several: 1,2,4); the tg
    /// test uses the first
    #[arg(long, default_value = "1")]
    submits: String,
    /// JSON instead of tables
    #[arg(long)]
    json: bool,
    /// Write the synthetic model (--layers) as a Hugging Face bf16 checkpoint into DIR and
    /// exit (to measure loading and `lfm quantize` at full size without a download)
    #[arg(long)]
    write_checkpoint: Option<std::path::PathBuf>,
    /// Write the synthetic model (--layers) as a GGUF file of --dtype (a format, or the type
    /// mix q4_k_m / q5_k_m; default q4_k_m) and exit (to measure GGUF loading at full size)
    #[arg(long, conflicts_with = "write_checkpoint")]
    write_gguf: Option<std::path::PathBuf>,
    /// With --write-checkpoint / --write-gguf: replace what is there
    #[arg(long)]
    force: bool,
}

/// Largest -p, -n and --depth (the whole run must fit one context).
const MAX_TOKENS: i64 = 32768;

/// A progress line on stderr (the tables and JSON go to stdout).
fn progress(msg: &str) {
    eprintln!("[wgpu-bench] {msg}");
}

/// Seed of the synthetic weights (the same model in every run).
const SYNTHETIC_SEED: u64 = 0x1f2a_0b8b;

fn mean_sd(x: &[f64]) -> (f64, f64) {
    if x.is_empty() {
        return (0.0, 0.0);
    }
    let m = x.iter().sum::<f64>() / x.len() as f64;
    let v = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len().max(2) - 1) as f64;
    (m, v.sqrt())
}

fn gb(x: f64) -> String {
    format!("{:.2}", x / 1e9)
}

/// Deterministic prompt ids.
fn prompt_ids(n: usize, vocab: usize) -> Vec<u32> {
    let mut s = 0x9e3779b97f4a7c15u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % vocab as u64) as u32
        })
        .collect()
}

/// Matmul FLOPs of one prompt token (active weights) plus attention over `ctx` keys.
fn flops_per_token(cfg: &Config, ctx: usize) -> f64 {
    let h = cfg.hidden_size as f64;
    let mut w = 0.0;
    for (i, k) in cfg.layer_types.iter().enumerate() {
        w += match k {
            lfm_wgpu::model::config::LayerKind::Conv => 3.0 * h * h + h * h,
            lfm_wgpu::model::config::LayerKind::Attention => {
                cfg.qkv_dim() as f64 * h
                    + h * h
                    + 4.0 * (cfg.num_attention_heads * cfg.head_dim) as f64 * ctx as f64 / 2.0
            }
        };
        w += if cfg.is_moe(i) {
            cfg.num_experts as f64 * h + cfg.num_experts_per_tok as f64 * 3.0 * h * cfg.moe_intermediate_size as f64
        } else {
            3.0 * h * cfg.intermediate_size as f64
        };
    }
    2.0 * (w + cfg.vocab_size as f64 * h)
}

/// Runs `write` (which returns the bytes it wrote to `path`) and reports size and time.
fn write_timed(path: &std::path::Path, write: impl FnOnce() -> Result<u64>) -> Result<()> {
    let t = Instant::now();
    progress(&format!("writing {}", path.display()));
    let bytes = write()?;
    eprintln!(
        "wrote {} ({}) in {:.1} s",
        path.display(),
        gib(bytes),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let a = Args::parse();
    if let Some(path) = &a.write_gguf {
        let cfg = Config::lfm2_8b_a1b(a.layers.unwrap_or(24) as usize)?;
        let d = a.dtype.as_deref().unwrap_or("q4_k_m");
        let types = match Mix::parse(d) {
            Some(m) => Types::Mix(m),
            None => Types::All(
                DType::ALL
                    .into_iter()
                    .find(|x| x.name().eq_ignore_ascii_case(d))
                    .ok_or_else(|| anyhow::anyhow!("--dtype {d:?}: not a format or a type mix"))?,
            ),
        };
        return write_timed(path, || {
            Ok(write_synthetic(path, &cfg, types, SYNTHETIC_SEED, a.force)?)
        });
    }
    if let Some(dir) = &a.write_checkpoint {
        let src = Synthetic::new(
            Config::lfm2_8b_a1b(a.layers.unwrap_or(24) as usize)?,
            DType::F32,
            SYNTHETIC_SEED,
        );
        return write_timed(dir, || Ok(src.write_hf_checkpoint(dir, a.force)?));
    }
    let mut opts = GpuOptions::from_env()?;
    opts.adapter = a.adapter.clone().or(opts.adapter);
    if let Some(b) = &a.backend {
        opts.backend = Some(context::parse_backend(b)?);
    }
    opts.matvec_rows = a.matvec_rows.or(opts.matvec_rows);
    let gpu = Gpu::new(&opts)?;
    let cpu_adapter = gpu.info.device_type == wgpu::DeviceType::Cpu;
    // On a software adapter the defaults scale down so a plain run ends in minutes.
    let mut scaled = Vec::new();
    let mut pick = |v: Option<u32>, full: usize, small: usize, what: &str| match (v, cpu_adapter) {
        (Some(v), _) => v as usize,
        (None, false) => full,
        (None, true) => {
            scaled.push(format!("{what} {small} (not {full})"));
            small
        }
    };
    let prompt_n = pick(a.prompt, 512, 64, "-p");
    let gen_n = pick(a.gen, 128, 16, "-n");
    let reps = pick(a.reps, 5, 2, "-r").max(1);
    let layers = if a.model.is_none() {
        Some(pick(a.layers, 24, 6, "--layers"))
    } else {
        None
    };
    let mix = a.dtype.as_deref().and_then(Mix::parse);
    let dtype = match mix {
        Some(m) if a.model.is_some() => {
            anyhow::bail!(
                "--dtype {} is a synthetic GGUF type mix; a GGUF model loads its own types as they are",
                m.name()
            )
        }
        Some(m) => m.base(),
        None => DType::parse(a.dtype.as_deref().unwrap_or("q4_0"))?,
    };
    let (depth, ubatch) = (a.depth as usize, a.ubatch as usize);
    if depth + prompt_n.max(1) + gen_n > MAX_TOKENS as usize {
        anyhow::bail!(
            "--depth {depth} + -p {prompt_n} + -n {gen_n} exceeds the largest benchmark context ({MAX_TOKENS} tokens)"
        );
    }
    progress(&format!(
        "adapter {}; measuring copy bandwidth and FMA peak",
        gpu.info.name
    ));

    // Device yardsticks, measured in this run.
    let kernels = Kernels::new(gpu.clone());
    let copy_bw = probe::copy_bandwidth(&gpu, 256 << 20, 3)?;
    let fma = probe::fma_peak(&kernels, 3)?;

    let ctx = (depth + prompt_n.max(1) + gen_n + 2).next_multiple_of(256);
    let sopts = SessionOptions {
        ctx,
        ubatch,
        kv_dtype: None,
        activations: Activations::parse(&a.activations)?,
    };
    progress("loading the model");
    let t = Instant::now();
    // `at4k`: what a chat session with the default context would hold.
    let (model, name, est, at4k, file_bytes) = match &a.model {
        Some(dir) => {
            let mut files = ModelFiles::open(dir).with_context(|| format!("opening {}", dir.display()))?;
            if a.dtype.is_some() {
                files.convert_to(dtype)?;
            }
            let d = files.stored_dtype().unwrap_or(dtype);
            let (m, est) = GpuModel::load_checked(gpu.clone(), files.source(), d, &sopts)?;
            let at4k = MemoryEstimate::for_gpu_source(&gpu, files.source(), d, est.kv_dtype, 4096, 512)?;
            (m, dir.display().to_string(), est, at4k, Some(files.file_bytes()))
        }
        None => {
            let cfg = Config::lfm2_8b_a1b(layers.unwrap_or(24))?;
            let src = match mix {
                Some(m) => Synthetic::with_mix(cfg, m, SYNTHETIC_SEED),
                None => Synthetic::new(cfg, dtype, SYNTHETIC_SEED),
            };
            progress(&format!(
                "generating synthetic {} weights",
                mix.map_or(dtype.name(), |m| m.name())
            ));
            let mixed = mix.map_or(String::new(), |m| format!(", {} type mix", m.name()));
            let name = format!(
                "LFM2-8B-A1B shape, {} layers, synthetic{mixed}",
                src.config().num_layers()
            );
            let (m, est) = GpuModel::load_checked(gpu.clone(), &src, dtype, &sopts)?;
            let at4k = MemoryEstimate::for_gpu_source(&gpu, &src, dtype, est.kv_dtype, 4096, 512)?;
            (m, name, est, at4k, None)
        }
    };
    gpu.wait()?;
    let load_s = t.elapsed().as_secs_f64();
    let peak_host = peak_host_memory();
    let model = Arc::new(model);
    let cfg = model.cfg.clone();
    if a.kernels {
        return kernel_mode(&kernels, &cfg, copy_bw, a.formats.as_deref(), a.json, sopts.activations);
    }
    let submits = host_cost::parse_list(&a.submits)?;
    let mut s = Session::new(model.clone(), &sopts)?;
    s.set_decode_submissions(submits[0])?;
    let gpu_bytes = model.weight_bytes + s.state.bytes();
    // The time to read the checkpoint once (page cache as the load left it), to set the
    // load time against.
    let file_read_s = match &a.model {
        Some(dir) => Some(read_file_time(dir)?),
        None => None,
    };
    let prompt = prompt_ids(prompt_n.max(depth).max(1), cfg.vocab_size);

    progress(&format!("loaded in {load_s:.1} s; warm-up"));
    s.prefill(&prompt[..prompt.len().min(8)], false)?; // warm-up
    let (mut pp, mut ttft, mut tg, mut bw) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        s.reset();
        if prompt_n > 0 {
            progress(&format!("pp{prompt_n}, repetition {}/{reps}", rep + 1));
            let t = Instant::now();
            s.prefill(&prompt[..prompt_n], false)?;
            let dt = t.elapsed().as_secs_f64();
            pp.push(prompt_n as f64 / dt);
            ttft.push(dt);
        }
        if gen_n > 0 {
            progress(&format!("tg{gen_n}, repetition {}/{reps}", rep + 1));
            s.reset();
            s.prefill(&prompt[..depth.max(1)], false)?;
            let kv_start = s.decode_kv_bytes();
            let mut ids = Vec::with_capacity(gen_n);
            let t = Instant::now();
            s.decode_chained(gen_n, &mut ids)?;
            let dt = t.elapsed().as_secs_f64();
            let kv_mean = (kv_start + s.decode_kv_bytes()) / 2;
            tg.push(gen_n as f64 / dt);
            bw.push((s.decode_weight_bytes() + kv_mean) as f64 * gen_n as f64 / dt);
        }
    }
    let host = match gen_n {
        0 => Vec::new(),
        n => {
            progress(&format!("host cost per token, {} submission settings", submits.len()));
            host_cost::measure(&mut s, &prompt[..depth.max(1)], n, &submits)?
        }
    };
    let structured = match a.constrained && gen_n > 0 {
        true => Some(constrained_tg(&mut s, &prompt[..depth.max(1)], gen_n, reps)?),
        false => None,
    };
    let (ppm, pps) = mean_sd(&pp);
    let (tgm, tgs) = mean_sd(&tg);
    let (bwm, _) = mean_sd(&bw);
    let (ttftm, _) = mean_sd(&ttft);
    let flops = flops_per_token(&cfg, prompt_n / 2) * ppm;
    let per_token = s.decode_weight_bytes();

    let (profile, prefill_profile) = if a.profile {
        progress("profiling one prefill and one decode step");
        s.reset();
        let pp = match prompt_n {
            0 => None,
            n => Some(s.prefill_profiled(&prompt[..n.min(ubatch)])?),
        };
        s.reset();
        let (next, _) = s.prefill(&prompt[..depth.max(1)], false)?;
        (Some(s.decode_profiled(next)?), pp)
    } else {
        (None, None)
    };

    let info = &gpu.info;
    if a.json {
        let as_json = |p: &Option<Vec<DispatchTime>>| -> Vec<serde_json::Value> {
            p.iter()
                .flatten()
                .map(|d| serde_json::json!({"label": d.label, "kernel": d.family, "dtype": d.dtype.name(), "seconds": d.seconds, "weight_bytes": d.bytes}))
                .collect()
        };
        let (prof, pprof) = (as_json(&profile), as_json(&prefill_profile));
        let j = serde_json::json!({
            "adapter": info.name, "device_type": format!("{:?}", info.device_type), "backend": format!("{:?}", info.backend),
            "driver": format!("{} {}", info.driver, info.driver_info), "model": name, "dtype": model.dtype.name(),
            "decode_activations": if s.int8 { "int8" } else { "exact" }, "matvec_rows": gpu.matvec_rows,
            "layers": cfg.num_layers(), "scaled_for_cpu_adapter": scaled,
            "load_s": load_s, "gpu_bytes": gpu_bytes, "weight_bytes": model.weight_bytes,
            "estimate": {"weights": est.weights, "kv": est.kv, "scratch": est.scratch, "ctx": est.ctx},
            "gpu_bytes_ctx4096": at4k.total(), "peak_host_bytes": peak_host,
            "file_bytes": file_bytes, "file_read_s": file_read_s,
            "copy_bandwidth_bytes_s": copy_bw, "fma_peak_flop_s": fma,
            "tests": [
                {"test": format!("pp{prompt_n}"), "tok_s_mean": ppm, "tok_s_sd": pps, "ttft_s": ttftm, "flop_s": flops},
                {"test": format!("tg{gen_n}"), "depth": depth, "tok_s_mean": tgm, "tok_s_sd": tgs,
                 "bytes_per_token": per_token, "effective_bandwidth_bytes_s": bwm, "share_of_copy_bandwidth": bwm / copy_bw},
            ],
            "host_cost": host.iter().map(|h| h.json()).collect::<Vec<_>>(),
            "profile": prof,
            "prefill_profile": pprof,
            "constrained": structured.as_ref().map(|c| serde_json::json!({
                "free_tok_s": c.free, "constrained_tok_s": c.constrained,
                "mask_s_per_token": c.mask_per_token, "forced_share": c.forced_share,
                "tools_auto_tok_s": c.tools_auto, "tools_auto_mask_s_per_token": c.tools_mask_per_token})),
        });
        say!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    say!(
        "adapter: {} ({:?}, {:?}, {} {})",
        info.name,
        info.device_type,
        info.backend,
        info.driver,
        info.driver_info
    );
    say!(
        "model: {name}, {}, {} layers, decode on {} activations, {} rows per mat-vec workgroup | load {load_s:.2} s | GPU memory {} GB (weights {}) | copy bandwidth {} GB/s | FMA peak {:.1} GFLOP/s",
        model.dtype,
        cfg.num_layers(),
        if s.int8 { "int8" } else { "exact f32" },
        gpu.matvec_rows,
        gb(gpu_bytes as f64),
        gb(model.weight_bytes as f64),
        gb(copy_bw),
        fma / 1e9
    );
    say!(
        "memory: with a 4096-token context {} (weights {}, {} KV {}, scratch {}) | peak host memory {}{}",
        gib(at4k.total()),
        gib(at4k.weights),
        at4k.kv_dtype,
        gib(at4k.kv),
        gib(at4k.scratch),
        peak_host.map_or("unknown".into(), gib),
        match (file_bytes, file_read_s) {
            (Some(b), Some(r)) => format!(" | reading the {} file takes {r:.2} s", gib(b)),
            _ => String::new(),
        }
    );
    if !scaled.is_empty() {
        say!("software adapter: defaults scaled down: {}", scaled.join(", "));
    }
    say!("| {:<10} | {:>18} | {:>44} |", "test", "t/s", "");
    say!("| {:-<10} | {:->18} | {:->44} |", "", "", "");
    if prompt_n > 0 {
        say!(
            "| {:<10} | {:>18} | {:>44} |",
            format!("pp{prompt_n}"),
            format!("{ppm:.2} ± {pps:.2}"),
            format!(
                "TTFT {:.3} s, {:.1} GFLOP/s = {:.1}% of FMA peak",
                ttftm,
                flops / 1e9,
                100.0 * flops / fma
            )
        );
    }
    if gen_n > 0 {
        say!(
            "| {:<10} | {:>18} | {:>44} |",
            format!(
                "tg{gen_n}{}",
                if a.depth > 0 {
                    format!("@d{}", a.depth)
                } else {
                    String::new()
                }
            ),
            format!("{tgm:.2} ± {tgs:.2}"),
            format!(
                "{} MB/token, {} GB/s = {:.1}% of copy",
                per_token / 1_000_000,
                gb(bwm),
                100.0 * bwm / copy_bw
            )
        );
    }
    if !host.is_empty() {
        say!("\nhost cost per decode token (ms; GPU from pass timestamps):");
        say!("{}", host_cost::HostReport::HEADER);
        for h in &host {
            say!("{}", h.row());
        }
    }
    if let Some(c) = &structured {
        say!(
            "structured output (JSON Schema, {} ids): sampled tg{gen_n} {:.2} ± {:.2} t/s free, {:.2} ± {:.2} t/s constrained ({:.0}%); mask {:.3} ms/token on the host; {:.0}% of tokens forced",
            cfg.vocab_size,
            c.free.0,
            c.free.1,
            c.constrained.0,
            c.constrained.1,
            100.0 * c.constrained.0 / c.free.0,
            c.mask_per_token * 1e3,
            100.0 * c.forced_share
        );
        say!(
            "tool calls (tool_choice auto, free text: every token masked): {:.2} ± {:.2} t/s ({:.0}% of free); mask {:.3} ms/token",
            c.tools_auto.0,
            c.tools_auto.1,
            100.0 * c.tools_auto.0 / c.free.0,
            c.tools_mask_per_token * 1e3
        );
    }
    if let Some(p) = profile {
        print_profile("decode step", &p, copy_bw);
    }
    if let Some(p) = prefill_profile {
        print_profile(&format!("prefill of {} tokens", prompt_n.min(ubatch)), &p, copy_bw);
    }
    Ok(())
}

/// Sampled decode with and without a JSON Schema constraint: tokens/s (mean, sd) of each,
/// host mask time per token, share of tokens forced by the schema.
struct Constrained {
    free: (f64, f64),
    constrained: (f64, f64),
    mask_per_token: f64,
    forced_share: f64,
    /// Free text under `tool_choice: "auto"`'s grammar (every token masked, none forced).
    tools_auto: (f64, f64),
    tools_mask_per_token: f64,
}

fn constrained_tg(s: &mut Session, prompt: &[u32], gen_n: usize, reps: usize) -> Result<Constrained> {
    use lfm_wgpu::constrain::{Format, ToolChoice, Vocabulary};
    let vocab_size = s.model.cfg.vocab_size;
    let tok = lfm_wgpu::tokenizer::Tokenizer::synthetic(vocab_size)?;
    let vocab = Vocabulary::new(&tok, vocab_size)?;
    // Records that never end within the run: the mask is computed at every kind of position.
    let schema = serde_json::json!({"type": "array", "minItems": 100000, "items": {"type": "object",
        "properties": {"name": {"type": "string", "maxLength": 24}, "n": {"type": "integer"},
        "tags": {"type": "array", "items": {"enum": ["a", "bc", "def"]}}},
        "required": ["name", "n", "tags"], "additionalProperties": false}});
    let tools = [
        serde_json::json!({"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"]}}}),
    ];
    let (mut free, mut constrained, mut auto) = (Vec::new(), Vec::new(), Vec::new());
    let (mut mask_s, mut forced, mut produced) = (0.0, 0, 0);
    let (mut auto_mask_s, mut auto_produced) = (0.0, 0);
    for rep in 0..reps {
        progress(&format!("structured tg{gen_n}, repetition {}/{reps}", rep + 1));
        s.set_sampling(lfm_wgpu::sampling::SamplingParams::model_card(rep as u64))?;
        s.reset();
        let st = s.generate(prompt, gen_n + 1, false, &mut |_| true)?;
        free.push((st.new_tokens - 1) as f64 / st.decode_s);
        s.reset();
        let mut c = vocab.constraint(&Format::JsonSchema(schema.clone()), "benchmark schema")?;
        let st = s.generate_constrained(prompt, gen_n + 1, false, &mut c, &mut |_| true)?;
        constrained.push((st.new_tokens - 1) as f64 / st.decode_s);
        (mask_s, forced, produced) = (mask_s + st.mask_s, forced + st.forced_tokens, produced + st.new_tokens);
        s.reset();
        let mut c = vocab.tool_constraint(&tools, &ToolChoice::Auto, true, None)?;
        let st = s.generate_constrained(prompt, gen_n + 1, false, &mut c, &mut |_| true)?;
        auto.push((st.new_tokens - 1) as f64 / st.decode_s);
        (auto_mask_s, auto_produced) = (auto_mask_s + st.mask_s, auto_produced + st.new_tokens);
    }
    s.set_sampling(lfm_wgpu::sampling::SamplingParams::greedy())?;
    Ok(Constrained {
        free: mean_sd(&free),
        constrained: mean_sd(&constrained),
        mask_per_token: mask_s / produced.max(1) as f64,
        forced_share: forced as f64 / produced.max(1) as f64,
        tools_auto: mean_sd(&auto),
        tools_mask_per_token: auto_mask_s / auto_produced.max(1) as f64,
    })
}

/// Per-kernel table of one profiled submission, by kernel family, slowest first.
fn print_profile(what: &str, p: &[DispatchTime], copy_bw: f64) {
    let total: f64 = p.iter().map(|d| d.seconds).sum();
    let mut by: BTreeMap<String, (f64, u64, usize)> = BTreeMap::new();
    for d in p {
        let e = by.entry(d.family.clone()).or_default();
        e.0 += d.seconds;
        e.1 += d.bytes;
        e.2 += 1;
    }
    let mut rows: Vec<_> = by.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    say!(
        "\n{what} profile (GPU timestamps, one pass per dispatch): {:.3} ms in {} dispatches",
        total * 1e3,
        p.len()
    );
    say!(
        "| {:<26} | {:>9} | {:>6} | {:>5} | {:>9} | {:>7} |",
        "kernel",
        "ms",
        "share",
        "calls",
        "GB/s",
        "% copy"
    );
    say!(
        "| {:-<26} | {:->9} | {:->6} | {:->5} | {:->9} | {:->7} |",
        "",
        "",
        "",
        "",
        "",
        ""
    );
    for (k, (t, bytes, n)) in rows {
        let bw = if bytes > 0 { bytes as f64 / t } else { 0.0 };
        say!(
            "| {:<26} | {:>9.3} | {:>5.1}% | {:>5} | {:>9} | {:>7} |",
            k,
            t * 1e3,
            100.0 * t / total,
            n,
            if bytes > 0 { gb(bw) } else { "-".into() },
            if bytes > 0 {
                format!("{:.1}%", 100.0 * bw / copy_bw)
            } else {
                "-".into()
            }
        );
    }
}

/// Seconds to read every safetensors file of `dir` sequentially.
fn read_file_time(dir: &std::path::Path) -> Result<f64> {
    use std::io::Read;
    let t = Instant::now();
    let mut buf = vec![0u8; 8 << 20];
    let files: Vec<std::path::PathBuf> = match ModelFiles::gguf_path(dir)? {
        Some(g) => vec![g],
        None => std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?,
    };
    for p in files {
        if p.extension().is_some_and(|x| x == "safetensors" || x == "gguf") {
            let mut f = std::fs::File::open(&p)?;
            while f.read(&mut buf)? > 0 {}
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The decode mat-vecs of a model: conv in_proj, out_proj, routed experts, head.
fn matvec_shapes(cfg: &Config) -> Vec<probe::MatvecShape> {
    let (h, im, e) = (cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_experts.max(1));
    let m = |name, rows, cols, group_rows, glu| probe::MatvecShape {
        name,
        rows,
        cols,
        group_rows,
        glu,
    };
    vec![
        m("conv in_proj", 3 * h, h, 1, false),
        m("out_proj", h, h, 1, false),
        m("experts gate+up", e * im, h, im, true),
        m("experts down", e * h, im, h, false),
        m("head", cfg.vocab_size, h, 1, false),
    ]
}

/// Prints the decode mat-vec timings at the model's shapes for every weight format, on f32
/// and (block formats, unless `--activations exact`) on int8 activations.
fn kernel_mode(
    k: &Kernels,
    cfg: &Config,
    copy_bw: f64,
    formats: Option<&str>,
    json: bool,
    acts: Activations,
) -> Result<()> {
    let dtypes: Vec<DType> = match formats {
        None => DType::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|f| {
                DType::ALL
                    .into_iter()
                    .find(|d| d.name().eq_ignore_ascii_case(f.trim()))
                    .ok_or_else(|| anyhow::anyhow!("--formats: unknown format {f:?}"))
            })
            .collect::<Result<_>>()?,
    };
    let (shapes, topk) = (matvec_shapes(cfg), cfg.num_experts_per_tok as u32);
    let mut rows = Vec::new();
    for int8 in [false, true] {
        let wanted = match acts {
            Activations::Exact => !int8,
            Activations::Int8 => int8,
            Activations::Auto => !int8 || k.gpu.int_dot,
        };
        if wanted {
            rows.extend(probe::time_decode_matvecs(k, &shapes, topk, &dtypes, 3, int8)?);
        }
    }
    let order = |d: DType| dtypes.iter().position(|&x| x == d);
    let kernel = |n: &str| shapes.iter().position(|s| s.name == n);
    rows.sort_by_key(|t| (order(t.dtype), kernel(t.name), t.int8));
    let acts_name = |int8: bool| if int8 { "int8" } else { "f32" };
    let timed_by = |timestamps: bool| match timestamps {
        true => "GPU timestamps around the mat-vec dispatch",
        false => "the wall clock, activation quantization and submission included",
    };
    if json {
        let j: Vec<_> = rows
            .iter()
            .map(|t| serde_json::json!({"dtype": t.dtype.name(), "activations": acts_name(t.int8), "kernel": t.name, "rows": t.rows, "cols": t.cols, "bytes": t.bytes, "seconds": t.seconds, "bytes_s": t.bytes as f64 / t.seconds, "share_of_copy": t.bytes as f64 / t.seconds / copy_bw, "timed_by": timed_by(t.timestamps)}))
            .collect();
        say!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"copy_bandwidth_bytes_s": copy_bw, "kernels": j}))?
        );
        return Ok(());
    }
    say!(
        "decode mat-vec kernels at the model's shapes (copy bandwidth {} GB/s; timed by {})",
        gb(copy_bw),
        timed_by(rows.first().is_some_and(|t| t.timestamps))
    );
    say!(
        "| {:<6} | {:<5} | {:<16} | {:>13} | {:>9} | {:>9} | {:>7} |",
        "dtype",
        "acts",
        "kernel",
        "shape",
        "µs",
        "GB/s",
        "% copy"
    );
    say!(
        "| {:-<6} | {:-<5} | {:-<16} | {:->13} | {:->9} | {:->9} | {:->7} |",
        "",
        "",
        "",
        "",
        "",
        "",
        ""
    );
    for t in rows {
        let bw = t.bytes as f64 / t.seconds;
        say!(
            "| {:<6} | {:<5} | {:<16} | {:>13} | {:>9.1} | {:>9} | {:>6.1}% |",
            t.dtype.name(),
            acts_name(t.int8),
            t.name,
            format!("{}×{}", t.rows, t.cols),
            t.seconds * 1e6,
            gb(bw),
            100.0 * bw / copy_bw
        );
    }
    Ok(())
}

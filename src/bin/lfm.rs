//! `lfm`: the command-line interface.
//!
//! - `lfm logits --model DIR --tokens 1,22,333 [--dtype f32|f16] --out FILE.npy`
//! - `lfm generate --model DIR --tokens 1,22,333 --max-new-tokens N --greedy --print-ids
//!   [--logits-out FILE.npy]`
//! - `lfm info [--model DIR]`

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use lfm_wgpu::gpu::{context, DType, Gpu, GpuOptions};
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::memory::gib;
use lfm_wgpu::model::session::{Session, SessionOptions};
use lfm_wgpu::model::weights::Checkpoint;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "lfm", version, about = "LFM2-MoE inference on any GPU through wgpu")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write the float32 logits [T, vocab] of one prefill as .npy
    Logits {
        #[command(flatten)]
        load: LoadArgs,
        /// Comma-separated token ids
        #[arg(long)]
        tokens: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Prefill then decode step by step; print the generated ids
    Generate {
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long)]
        tokens: String,
        #[arg(long, default_value_t = 32)]
        max_new_tokens: usize,
        /// Greedy decoding (argmax on the GPU); the only sampling mode for now
        #[arg(long)]
        greedy: bool,
        /// Print the generated ids on one line, space-separated
        #[arg(long)]
        print_ids: bool,
        /// Also write the float32 logits of every step [N, vocab] as .npy
        #[arg(long)]
        logits_out: Option<PathBuf>,
        /// Stop at an end-of-sequence id from config.json
        #[arg(long)]
        stop_at_eos: bool,
    },
    /// Rewrite a checkpoint quantized, in the engine's GPU layout (loads with no conversion)
    Quantize {
        /// Source checkpoint directory (bf16 / f16 / f32 safetensors)
        #[arg(long)]
        model: PathBuf,
        /// Output directory (created)
        #[arg(long)]
        out: PathBuf,
        /// q4_0 | q8_0 (also f16 / f32)
        #[arg(long)]
        dtype: String,
    },
    /// List adapters, their features and limits; with --model, the model's shape
    Info {
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        gpu: GpuArgs,
    },
}

#[derive(Args)]
struct GpuArgs {
    /// Adapter index (see `lfm info`) or part of its name
    #[arg(long)]
    adapter: Option<String>,
    /// vulkan | metal | dx12 | gl
    #[arg(long)]
    backend: Option<String>,
    /// Do not use SHADER_F16 / SUBGROUP even when present (fallback kernels)
    #[arg(long)]
    no_f16: bool,
    #[arg(long)]
    no_subgroups: bool,
    /// Plan with a smaller storage-binding size (forces the split path), in bytes
    #[arg(long)]
    max_binding_bytes: Option<u64>,
}

#[derive(Args)]
struct LoadArgs {
    /// Checkpoint directory (config.json + model.safetensors or a sharded index)
    #[arg(long)]
    model: PathBuf,
    /// Weight storage on the GPU: f16 (default), f32, q8_0 or q4_0 (quantized while loading);
    /// a checkpoint written by `lfm quantize` loads as what it holds
    #[arg(long)]
    dtype: Option<String>,
    /// KV-cache storage: f16 or f32 (default: as --dtype)
    #[arg(long)]
    kv_dtype: Option<String>,
    /// Context length (KV cache capacity)
    #[arg(long, default_value_t = 4096)]
    ctx: usize,
    /// Prefill chunk size in tokens
    #[arg(long, default_value_t = 512)]
    ubatch: usize,
    #[command(flatten)]
    gpu: GpuArgs,
}

impl GpuArgs {
    fn options(&self) -> Result<GpuOptions> {
        let mut o = GpuOptions::from_env()?;
        if self.adapter.is_some() {
            o.adapter = self.adapter.clone();
        }
        if let Some(b) = &self.backend {
            o.backend = Some(context::parse_backend(b)?);
        }
        o.no_f16 |= self.no_f16;
        o.no_subgroups |= self.no_subgroups;
        if self.max_binding_bytes.is_some() {
            o.max_binding_bytes = self.max_binding_bytes;
        }
        Ok(o)
    }
}

fn parse_tokens(s: &str) -> Result<Vec<u32>> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<u32>()
                .with_context(|| format!("--tokens: {x:?} is not a token id"))
        })
        .collect()
}

fn load(args: &LoadArgs) -> Result<Session> {
    let kv_dtype = args.kv_dtype.as_deref().map(DType::parse).transpose()?;
    let ckpt = Checkpoint::open(&args.model).with_context(|| format!("opening model {}", args.model.display()))?;
    let asked = args.dtype.as_deref().map(DType::parse).transpose()?;
    let dtype = match (ckpt.prequantized, asked) {
        (Some(stored), Some(d)) if d != stored => bail!(
            "{} holds {stored} weights written by `lfm quantize`; load it with --dtype {stored} (or omit --dtype), \
             or quantize the original checkpoint to {d}",
            args.model.display()
        ),
        (Some(stored), _) => stored,
        (None, d) => d.unwrap_or(DType::F16),
    };
    let gpu = Gpu::new(&args.gpu.options()?)?;
    let t = std::time::Instant::now();
    let opts = SessionOptions {
        ctx: args.ctx,
        ubatch: args.ubatch,
        kv_dtype,
    };
    let (model, est) = GpuModel::load_checked(gpu, &ckpt, dtype, &opts)
        .with_context(|| format!("loading {}", args.model.display()))?;
    log::info!(
        "loaded {:.1} MB of weights in {:.2} s; GPU memory {} (weights {}, KV {}, scratch {})",
        model.weight_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        gib(est.total()),
        gib(est.weights),
        gib(est.kv),
        gib(est.scratch)
    );
    Ok(Session::new(Arc::new(model), &opts)?)
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Logits { load: l, tokens, out } => {
            let tokens = parse_tokens(&tokens)?;
            if tokens.is_empty() {
                bail!("--tokens is empty");
            }
            let mut s = load(&l)?;
            let logits = s.prefill_all_logits(&tokens)?;
            let v = s.model.cfg.vocab_size;
            lfm_wgpu::npy::write_f32(&out, &[tokens.len(), v], &logits)?;
        }
        Cmd::Generate {
            load: l,
            tokens,
            max_new_tokens,
            greedy,
            print_ids,
            logits_out,
            stop_at_eos,
        } => {
            if !greedy {
                log::warn!("only greedy decoding is implemented; using --greedy");
            }
            let tokens = parse_tokens(&tokens)?;
            if tokens.is_empty() {
                bail!("--tokens is empty");
            }
            let mut s = load(&l)?;
            let want = logits_out.is_some();
            let (mut ids, mut logits) = s.generate_greedy(&tokens, max_new_tokens, want)?;
            if stop_at_eos {
                let eos = &s.model.cfg.eos_token_ids;
                if let Some(i) = ids.iter().position(|t| eos.contains(t)) {
                    ids.truncate(i + 1);
                    logits.truncate((i + 1) * s.model.cfg.vocab_size);
                }
            }
            if print_ids {
                let line: Vec<String> = ids.iter().map(|t| t.to_string()).collect();
                println!("{}", line.join(" "));
            }
            if let Some(path) = logits_out {
                lfm_wgpu::npy::write_f32(&path, &[ids.len(), s.model.cfg.vocab_size], &logits)?;
            }
        }
        Cmd::Quantize { model, out, dtype } => {
            let dtype = DType::parse(&dtype)?;
            let ckpt = Checkpoint::open(&model).with_context(|| format!("opening model {}", model.display()))?;
            let t = std::time::Instant::now();
            let bar = lfm_wgpu::progress::bytes_bar("quantizing", ckpt.file_bytes());
            let mut progress = |done: u64, total: u64| {
                bar.set_length(total);
                bar.set_position(done);
            };
            let report = lfm_wgpu::model::quantize::quantize(&ckpt, &out, dtype, &mut progress)
                .with_context(|| format!("quantizing {} to {}", model.display(), out.display()))?;
            bar.finish_and_clear();
            eprintln!(
                "wrote {} ({:.1} MB, matrices by format: {:?}) in {:.2} s",
                out.join("model.safetensors").display(),
                report.bytes_out as f64 / 1e6,
                report.formats,
                t.elapsed().as_secs_f64()
            );
        }
        Cmd::Info { model, gpu } => {
            let opts = gpu.options()?;
            for (i, a) in context::adapters(opts.backend.unwrap_or(wgpu::Backends::PRIMARY))
                .iter()
                .enumerate()
            {
                let info = a.get_info();
                let l = a.limits();
                println!(
                    "[{i}] {} ({:?}, {:?}) driver: {} {}\n    shader-f16: {}  subgroups: {}  timestamps: {}\n    max storage binding: {} MiB  max buffer: {} MiB  workgroup storage: {} KiB",
                    info.name,
                    info.device_type,
                    info.backend,
                    info.driver,
                    info.driver_info,
                    a.features().contains(wgpu::Features::SHADER_F16),
                    a.features().contains(wgpu::Features::SUBGROUP),
                    a.features().contains(wgpu::Features::TIMESTAMP_QUERY),
                    l.max_storage_buffer_binding_size >> 20,
                    l.max_buffer_size >> 20,
                    l.max_compute_workgroup_storage_size >> 10,
                );
            }
            if let Some(dir) = model {
                let ckpt = Checkpoint::open(&dir)?;
                let c = &ckpt.config;
                println!("{}: {c:#?}", dir.display());
            }
        }
    }
    Ok(())
}

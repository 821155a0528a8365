//! `lfm`: the command-line interface.
//!
//! - `lfm logits --model DIR --tokens 1,22,333 [--dtype f32|f16] --out FILE.npy`
//! - `lfm generate --model DIR --tokens 1,22,333 --max-new-tokens N --greedy --print-ids
//!   [--logits-out FILE.npy]`
//! - `lfm run --model M --prompt "…"` (or the prompt on stdin): stream one answer
//! - `lfm chat --model M`: multi-turn chat keeping the conversation in the KV cache
//! - `lfm info [--model M]`: adapters, limits; a model's shape and memory at each dtype / context
//! - `lfm quantize --model DIR --out DIR --dtype q4_0|q8_0`
//! - `lfm serve --model M [--host H] [--port P]`: an OpenAI-compatible HTTP server
//!
//! `M` is a directory or a Hugging Face repo id (found in, or downloaded into, the HF cache).
//!
//! Everything that can be checked without the weights — arguments, tokenizer, chat template,
//! prompt length, output paths — is checked before they load.

mod serve;
mod structured;
mod text;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use lfm_wgpu::chat::{ChatTemplate, Message};
use lfm_wgpu::gpu::{context, DType, Gpu, GpuOptions};
use lfm_wgpu::interrupt;
use lfm_wgpu::model::files::ModelFiles;
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::memory::default_dtype_for;
use lfm_wgpu::model::session::{Activations, Session, SessionOptions};
use lfm_wgpu::model::weights::Checkpoint;
use lfm_wgpu::sampling::{SamplingParams, TokenConstraint};
use lfm_wgpu::tokenizer::Tokenizer;
use lfm_wgpu::units::gib;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use text::Out;

/// Writes a line to stdout; a closed pipe is not an error (`lfm info | head -1`).
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
/// As [`say!`], without the newline.
macro_rules! put {
    ($($t:tt)*) => {{
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

mod info;
use info::info;

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
        /// Also write the intermediates whose HF module path matches this regex, each
        /// [T, width] float32, to an .npz: model.embed_tokens, model.layers.N (the residual
        /// stream after layer N), model.embedding_norm, lm_head
        #[arg(long)]
        dump: Option<String>,
        /// Where --dump writes (default: --out with the extension .npz)
        #[arg(long)]
        dump_out: Option<PathBuf>,
    },
    /// Prefill then decode step by step; print the generated ids
    Generate {
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long)]
        tokens: String,
        /// Tokens to generate; prompt + this − 1 must fit --ctx
        #[arg(long, default_value_t = 32)]
        max_new_tokens: usize,
        /// Greedy decoding (argmax on the GPU); `lfm run` / `lfm chat` sample
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
        /// Output directory: new or empty (never the source, nor inside it)
        #[arg(long)]
        out: PathBuf,
        /// q4_0 | q8_0 (also f16 / f32)
        #[arg(long)]
        dtype: String,
        /// Write into a non-empty output directory, replacing the weights in it
        #[arg(long)]
        force: bool,
    },
    /// Answer one prompt (from --prompt or stdin), streamed to stdout
    Run {
        #[command(flatten)]
        load: LoadArgs,
        /// The user message; read from stdin when absent
        #[arg(long)]
        prompt: Option<String>,
        /// A system message
        #[arg(long)]
        system: Option<String>,
        /// Feed the prompt as plain text (BOS + text), without the chat template, and write
        /// the answer's bytes as they are (control characters are otherwise escaped on a
        /// terminal)
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        gen: GenArgs,
        #[command(flatten)]
        format: structured::FormatArgs,
    },
    /// Interactive multi-turn chat (commands: /help, /reset, /system TEXT, /stats, /exit)
    Chat {
        #[command(flatten)]
        load: LoadArgs,
        /// A system message for the conversation
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        gen: GenArgs,
    },
    /// Serve the OpenAI API (/v1/chat/completions, /v1/completions, /v1/models, /health,
    /// /metrics) over HTTP; prints `listening on http://ADDR` once bound
    Serve {
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        serve: serve::ServeArgs,
    },
    /// List adapters, their features and limits; with --model, its shape and the GPU memory
    /// it needs at each dtype and context (only config.json is read)
    Info {
        /// A directory or Hugging Face repo id
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        offline: bool,
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
    /// Output columns per decode mat-vec workgroup: 8 (default), 4, 2 or 1 (more, smaller
    /// workgroups: faster decode on large GPUs)
    #[arg(long, value_parser = context::matvec_rows_arg)]
    matvec_rows: Option<u8>,
}

/// A float flag parsed with its range checked (clap reports the error, naming the flag).
fn ranged(s: &str, ok: impl Fn(f32) -> bool, range: &str) -> std::result::Result<f32, String> {
    let v: f32 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    match ok(v) {
        true => Ok(v),
        false => Err(format!("{v} is out of range: {range}")),
    }
}
fn temperature_arg(s: &str) -> std::result::Result<f32, String> {
    ranged(s, |v| (0.0..=100.0).contains(&v), "0 (greedy) to 100")
}
fn top_p_arg(s: &str) -> std::result::Result<f32, String> {
    ranged(s, |v| v > 0.0 && v <= 1.0, "above 0, at most 1 (1 = off)")
}
fn min_p_arg(s: &str) -> std::result::Result<f32, String> {
    ranged(s, |v| (0.0..1.0).contains(&v), "at least 0, below 1 (0 = off)")
}
fn penalty_arg(s: &str) -> std::result::Result<f32, String> {
    ranged(s, |v| v > 0.0 && v <= 100.0, "above 0, at most 100 (1 = off)")
}
fn stop_arg(s: &str) -> std::result::Result<String, String> {
    match s.is_empty() {
        true => Err("a stop string must not be empty (it would end every answer at once)".into()),
        false => Ok(s.to_string()),
    }
}

/// Sampling, stopping and reporting of generated text (defaults: the model card's).
#[derive(Args)]
pub struct GenArgs {
    /// 0 = greedy
    #[arg(long, default_value_t = SamplingParams::model_card(0).temperature,
          value_parser = temperature_arg, allow_negative_numbers = true)]
    temperature: f32,
    /// 0 = off
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=(1 << 24)),
          allow_negative_numbers = true)]
    top_k: u32,
    /// 1 = off
    #[arg(long, default_value_t = 1.0, value_parser = top_p_arg, allow_negative_numbers = true)]
    top_p: f32,
    /// 0 = off
    #[arg(long, default_value_t = SamplingParams::model_card(0).min_p,
          value_parser = min_p_arg, allow_negative_numbers = true)]
    min_p: f32,
    /// 1 = off
    #[arg(long, default_value_t = SamplingParams::model_card(0).repetition_penalty,
          value_parser = penalty_arg, allow_negative_numbers = true)]
    repetition_penalty: f32,
    /// Random seed (default: from the clock; --stats prints it)
    #[arg(long)]
    seed: Option<u64>,
    /// Greedy decoding (same as --temperature 0)
    #[arg(long)]
    greedy: bool,
    /// Most tokens per answer (generation also ends when the context is full)
    #[arg(long, default_value_t = 1024)]
    max_new_tokens: usize,
    /// Stop when the answer contains this text (repeatable)
    #[arg(long = "stop", value_parser = stop_arg)]
    stop: Vec<String>,
    /// Print load time, time to first token, prefill and decode speed to stderr
    #[arg(long)]
    stats: bool,
}

impl GenArgs {
    fn sampling(&self) -> SamplingParams {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        SamplingParams {
            temperature: if self.greedy { 0.0 } else { self.temperature },
            top_k: self.top_k as usize,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            seed,
        }
    }
}

#[derive(Args)]
struct LoadArgs {
    /// Model: a checkpoint directory (config.json + safetensors), or a Hugging Face repo id
    /// such as LiquidAI/LFM2-8B-A1B (from the HF cache; downloaded when missing)
    #[arg(long)]
    model: String,
    /// Never download (also HF_HUB_OFFLINE=1)
    #[arg(long)]
    offline: bool,
    /// Weight storage on the GPU: f16, f32, q8_0 or q4_0 (quantized while loading); default: the
    /// most precise of f16, q8_0, q4_0 that fits the adapter's memory. A checkpoint written by
    /// `lfm quantize` loads as what it holds
    #[arg(long)]
    dtype: Option<String>,
    /// KV-cache storage: f16 or f32 (default: as --dtype)
    #[arg(long)]
    kv_dtype: Option<String>,
    /// What decode multiplies block-format weights (q8_0 … q6_k) with: exact (f32
    /// activations, equal to transformers on the dequantized weights), int8 (each input
    /// quantized once per block of 32, packed integer dot products), or auto (int8 where the
    /// shaders have them)
    #[arg(long, default_value = "auto")]
    activations: String,
    /// Context length (KV cache capacity), at most the larger of 32768 and the model's
    /// max_position_embeddings
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(1 << 24)))]
    ctx: u32,
    /// Prefill chunk size in tokens
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=8192))]
    ubatch: u32,
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
        o.matvec_rows = self.matvec_rows.or(o.matvec_rows);
        Ok(o)
    }
}

fn parse_tokens(s: &str) -> Result<Vec<u32>> {
    let ids: Vec<u32> = s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<u32>()
                .with_context(|| format!("--tokens: {x:?} is not a token id"))
        })
        .collect::<Result<_>>()?;
    if ids.is_empty() {
        bail!("--tokens is empty");
    }
    Ok(ids)
}

/// A model opened (config and tensor headers read, arguments checked against it) but not
/// loaded: everything else can be checked before the long load.
struct Opened {
    dir: PathBuf,
    files: ModelFiles,
    kv_dtype: Option<DType>,
    dtype: Option<DType>,
}

impl Opened {
    fn vocab(&self) -> usize {
        self.files.config().vocab_size
    }

    /// Checks that `n` prompt tokens fit the context (and are in the vocabulary when ids).
    fn check_prompt(&self, args: &LoadArgs, ids: &[u32], extra: usize) -> Result<()> {
        let vocab = self.vocab();
        if let Some((pos, &id)) = ids.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
            return Err(lfm_wgpu::Error::TokenOutOfRange { id, pos, vocab }.into());
        }
        let needed = ids.len().saturating_add(extra);
        if needed > args.ctx as usize {
            let max = 32768.max(self.files.config().max_position_embeddings);
            return Err(lfm_wgpu::Error::ContextExceeded {
                needed,
                ctx: args.ctx as usize,
                max,
            })
            .context(match extra {
                0 => "the prompt does not fit".to_string(),
                n => format!("the prompt ({} tokens) and {n} more to generate do not fit", ids.len()),
            });
        }
        Ok(())
    }
}

/// Resolves the model (downloading it if needed), reads its config and tensor headers, and
/// checks the load arguments against them.
fn open(args: &LoadArgs) -> Result<Opened> {
    let kv_dtype = args.kv_dtype.as_deref().map(DType::parse).transpose()?;
    if let Some(d @ (DType::Q8_0 | DType::Q4_0)) = kv_dtype {
        bail!("--kv-dtype {d} is not supported (f16 or f32)");
    }
    let dtype = args.dtype.as_deref().map(DType::parse).transpose()?;
    let dir = lfm_wgpu::hub::resolve_model(&args.model, args.offline)?;
    let mut files = ModelFiles::open(&dir).with_context(|| format!("opening model {}", dir.display()))?;
    let max_ctx = 32768.max(files.config().max_position_embeddings);
    if args.ctx as usize > max_ctx {
        bail!(
            "--ctx {} exceeds this model's maximum context of {max_ctx} tokens",
            args.ctx
        );
    }
    if let Some(d) = dtype {
        files.convert_to(d)?;
    }
    Ok(Opened {
        dir,
        files,
        kv_dtype,
        dtype,
    })
}

/// Checks the memory and loads; returns the session and the load time.
fn load(m: Opened, args: &LoadArgs) -> Result<(Session, f64)> {
    let Opened {
        dir,
        files,
        kv_dtype,
        dtype,
    } = m;
    let (ctx, ubatch) = (args.ctx as usize, args.ubatch as usize);
    let gpu = Gpu::new(&args.gpu.options()?)?;
    let dtype = match (files.stored_dtype(), dtype) {
        (Some(stored), _) => stored,
        (None, Some(d)) => d,
        // Without --dtype: the most precise of f16, q8_0, q4_0 that fits the adapter.
        (None, None) => {
            let d = default_dtype_for(&gpu, files.config(), kv_dtype, ctx, ubatch)?;
            if d.dtype != DType::F16 {
                let mem = d.memory.map_or("unknown memory".into(), |m| {
                    format!("{} ({})", gib(m.bytes), m.source.describe())
                });
                eprintln!("[f16 weights do not fit the adapter's {mem}: loading as {}]", d.dtype);
            }
            d.dtype
        }
    };
    let t = std::time::Instant::now();
    let activations = Activations::parse(&args.activations)?;
    let opts = SessionOptions {
        ctx,
        ubatch,
        kv_dtype,
        activations,
    };
    let (model, est) = GpuModel::load_checked(gpu, files.source(), dtype, &opts)
        .with_context(|| format!("loading {}", dir.display()))?;
    let load_s = t.elapsed().as_secs_f64();
    log::info!(
        "loaded {:.1} MB of weights in {load_s:.2} s; GPU memory {} (weights {}, KV {}, scratch {})",
        model.weight_bytes as f64 / 1e6,
        gib(est.total()),
        gib(est.weights),
        gib(est.kv),
        gib(est.scratch)
    );
    Ok((Session::new(Arc::new(model), &opts)?, load_s))
}

/// The tokenizer and chat template of a model directory.
fn text_of(files: &ModelFiles) -> Result<(Tokenizer, ChatTemplate)> {
    let tok = files.tokenizer()?;
    let template = files.chat_template(&tok)?;
    Ok((tok, template))
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    // Ctrl-C removes files being written and exits, except where it stops an answer. The
    // server listens for SIGINT / SIGTERM itself (tokio) and shuts down gracefully.
    if !matches!(cli.cmd, Cmd::Serve { .. }) {
        interrupt::install()?;
    }
    match cli.cmd {
        Cmd::Logits {
            load: l,
            tokens,
            out,
            dump,
            dump_out,
        } => {
            let tokens = parse_tokens(&tokens)?;
            lfm_wgpu::files::check_output_file(&out)?;
            let dump = dump
                .map(|re| regex::Regex::new(&re).with_context(|| format!("--dump {re:?}")))
                .transpose()?;
            let dump_out = dump_out.unwrap_or_else(|| out.with_extension("npz"));
            if dump.is_some() {
                lfm_wgpu::files::check_output_file(&dump_out)?;
            }
            let m = open(&l)?;
            m.check_prompt(&l, &tokens, 0)?;
            let (mut s, _) = load(m, &l)?;
            let wanted = |name: &str| dump.as_ref().is_some_and(|re| re.is_match(name));
            let (logits, dumps) = s.prefill_dump(&tokens, &wanted)?;
            let v = s.model.cfg.vocab_size;
            lfm_wgpu::npy::write_f32(&out, &[tokens.len(), v], &logits)?;
            if dump.is_some() {
                if dumps.is_empty() {
                    bail!("--dump matched no intermediate (names: model.embed_tokens, model.layers.N, model.embedding_norm, lm_head)");
                }
                let arrays: Vec<(String, Vec<usize>, Vec<f32>)> = dumps
                    .into_iter()
                    .map(|(name, values)| {
                        let width = values.len() / tokens.len();
                        (name, vec![tokens.len(), width], values)
                    })
                    .collect();
                lfm_wgpu::npy::write_npz(&dump_out, &arrays)?;
            }
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
                log::warn!("lfm generate decodes greedily (token ids in, ids out); lfm run samples text");
            }
            let tokens = parse_tokens(&tokens)?;
            if let Some(path) = &logits_out {
                lfm_wgpu::files::check_output_file(path)?;
            }
            let m = open(&l)?;
            m.check_prompt(&l, &tokens, max_new_tokens.saturating_sub(1))?;
            let (mut s, _) = load(m, &l)?;
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
                say!("{}", line.join(" "));
            }
            if let Some(path) = logits_out {
                lfm_wgpu::npy::write_f32(&path, &[ids.len(), s.model.cfg.vocab_size], &logits)?;
            }
        }
        Cmd::Quantize {
            model,
            out,
            dtype,
            force,
        } => {
            let dtype = DType::parse(&dtype)?;
            let ckpt = Checkpoint::open(&model).with_context(|| format!("opening model {}", model.display()))?;
            let t = std::time::Instant::now();
            let bar = lfm_wgpu::progress::bytes_bar("quantizing", ckpt.file_bytes());
            let mut progress = |done: u64, total: u64| {
                bar.set_length(total);
                bar.set_position(done);
            };
            let report = lfm_wgpu::model::quantize::quantize(&ckpt, &out, dtype, force, &mut progress)
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
        Cmd::Info { model, offline, gpu } => info(model, offline, &gpu)?,
        Cmd::Serve { load: l, serve: a } => serve::serve(l, a)?,
        Cmd::Run {
            load: l,
            prompt,
            system,
            raw,
            gen,
            format,
        } => run(&l, prompt, system, raw, &gen, &format)?,
        Cmd::Chat { load: l, system, gen } => {
            let params = gen.sampling();
            params.validate()?;
            let m = open(&l)?;
            let (tok, template) = text_of(&m.files)?;
            // The template must render before the long load.
            let probe: Vec<Message> = system
                .iter()
                .map(Message::system)
                .chain([Message::user("hi")])
                .collect();
            template.apply(&tok, &probe, None, true)?;
            let banner = m.dir.display().to_string();
            let (mut s, load_s) = load(m, &l)?;
            text::chat(&mut s, &tok, &template, system, &gen, &banner, load_s)?;
        }
    }
    Ok(())
}

/// `lfm run`: one answer, streamed.
fn run(
    l: &LoadArgs,
    prompt: Option<String>,
    system: Option<String>,
    raw: bool,
    gen: &GenArgs,
    format: &structured::FormatArgs,
) -> Result<()> {
    let params = gen.sampling();
    params.validate()?;
    let prompt = match prompt {
        Some(p) => p,
        None => {
            let mut p = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut p)
                .context("reading the prompt from stdin (it must be UTF-8 text)")?;
            p
        }
    };
    let m = open(l)?;
    let (tok, template) = text_of(&m.files)?;
    let ids = match raw {
        true => tok.encode(&prompt, true)?,
        false => {
            let mut msgs: Vec<Message> = system.into_iter().map(Message::system).collect();
            msgs.push(Message::user(prompt));
            template.apply(&tok, &msgs, None, true)?
        }
    };
    // At least one token must be generated.
    m.check_prompt(l, &ids, 1)?;
    let mut constraint = format.constraint(&tok, m.vocab())?;
    let (mut s, load_s) = load(m, l)?;
    s.set_sampling(params.clone())?;
    s.set_cancel_flag(interrupt::flag());
    let mut out = Out::stdout(raw);
    interrupt::set_stoppable(true);
    let c = constraint.as_mut().map(|c| c as &mut dyn TokenConstraint);
    let result = text::answer(&mut s, &tok, &ids, gen, &mut out, false, c);
    interrupt::set_stoppable(false);
    let reply = match result {
        Ok(r) => r,
        Err(lfm_wgpu::Error::Cancelled) => {
            eprintln!("[stopped]");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    out.write("\n");
    if interrupt::requested() {
        eprintln!("[stopped]");
    }
    if gen.stats {
        text::print_stats(&reply.stats, Some(load_s), &params);
    }
    if reply.stats.context_full {
        eprintln!("[the context of {} tokens is full; raise --ctx]", s.state.ctx);
    }
    if reply.stats.dead_end {
        eprintln!("[stopped: the format allows no further token]");
    } else if constraint.as_mut().is_some_and(|c| !c.is_accepting()) {
        eprintln!("[the answer is incomplete for the format: it was cut before its end]");
    }
    Ok(())
}

//! `lfm`: the command-line interface.
//!
//! - `lfm logits --model DIR --tokens 1,22,333 [--dtype f32|f16] --out FILE.npy`
//! - `lfm generate --model DIR --tokens 1,22,333 --max-new-tokens N --greedy --print-ids
//!   [--logits-out FILE.npy]`
//! - `lfm run --model M --prompt "…"` (or the prompt on stdin): stream one answer
//! - `lfm chat --model M`: multi-turn chat keeping the conversation in the KV cache
//! - `lfm info [--model M]`: adapters, limits; a model's shape and memory at each dtype / context
//! - `lfm quantize --model DIR --out DIR --dtype q4_0|q8_0`
//!
//! `M` is a directory or a Hugging Face repo id (found in, or downloaded into, the HF cache).

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use lfm_wgpu::chat::{ChatTemplate, Message, Role};
use lfm_wgpu::gpu::{context, DType, Gpu, GpuOptions};
use lfm_wgpu::model::config::{Config, LayerKind};
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::memory::{default_kv_dtype, gib, most_precise_fitting, MemoryEstimate};
use lfm_wgpu::model::sampling::SamplingParams;
use lfm_wgpu::model::session::{GenStats, Session, SessionOptions};
use lfm_wgpu::model::weights::Checkpoint;
use lfm_wgpu::tokenizer::Tokenizer;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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
        /// Output directory (created)
        #[arg(long)]
        out: PathBuf,
        /// q4_0 | q8_0 (also f16 / f32)
        #[arg(long)]
        dtype: String,
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
        /// Feed the prompt as plain text (BOS + text), without the chat template
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        gen: GenArgs,
    },
    /// Interactive multi-turn chat (commands: /reset, /system TEXT, /stats, /exit)
    Chat {
        #[command(flatten)]
        load: LoadArgs,
        /// A system message for the conversation
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        gen: GenArgs,
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
}

/// Sampling, stopping and reporting of generated text.
#[derive(Args)]
struct GenArgs {
    /// 0 = greedy
    #[arg(long, default_value_t = 0.3)]
    temperature: f32,
    /// 0 = off
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// 1 = off
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// 0 = off
    #[arg(long, default_value_t = 0.15)]
    min_p: f32,
    /// 1 = off
    #[arg(long, default_value_t = 1.05)]
    repetition_penalty: f32,
    /// Random seed (default: from the clock; --stats prints it)
    #[arg(long)]
    seed: Option<u64>,
    /// Greedy decoding (same as --temperature 0)
    #[arg(long)]
    greedy: bool,
    #[arg(long, default_value_t = 1024)]
    max_new_tokens: usize,
    /// Stop when the answer contains this text (repeatable)
    #[arg(long = "stop")]
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
            top_k: self.top_k,
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
    Ok(load_with_dir(args)?.0)
}

/// Resolves, checks the memory, loads; returns the session, the model directory and the
/// load time.
fn load_with_dir(args: &LoadArgs) -> Result<(Session, PathBuf, f64)> {
    let kv_dtype = args.kv_dtype.as_deref().map(DType::parse).transpose()?;
    let dir = lfm_wgpu::hub::resolve_model(&args.model, args.offline)?;
    let ckpt = Checkpoint::open(&dir).with_context(|| format!("opening model {}", dir.display()))?;
    let asked = args.dtype.as_deref().map(DType::parse).transpose()?;
    let gpu = Gpu::new(&args.gpu.options()?)?;
    let dtype = match (ckpt.prequantized, asked) {
        (Some(stored), Some(d)) if d != stored => bail!(
            "{} holds {stored} weights written by `lfm quantize`; load it with --dtype {stored} (or omit --dtype), \
             or quantize the original checkpoint to {d}",
            dir.display()
        ),
        (Some(stored), _) => stored,
        (None, Some(d)) => d,
        // Without --dtype: the most precise of f16, q8_0, q4_0 that fits the adapter.
        (None, None) => match most_precise_fitting(&gpu, &ckpt.config, kv_dtype, args.ctx, args.ubatch)? {
            Some(d) if d != DType::F16 => {
                eprintln!("[f16 weights do not fit the adapter: loading as {d}]");
                d
            }
            _ => DType::F16,
        },
    };
    let t = std::time::Instant::now();
    let opts = SessionOptions {
        ctx: args.ctx,
        ubatch: args.ubatch,
        kv_dtype,
    };
    let (model, est) =
        GpuModel::load_checked(gpu, &ckpt, dtype, &opts).with_context(|| format!("loading {}", dir.display()))?;
    let load_s = t.elapsed().as_secs_f64();
    log::info!(
        "loaded {:.1} MB of weights in {load_s:.2} s; GPU memory {} (weights {}, KV {}, scratch {})",
        model.weight_bytes as f64 / 1e6,
        gib(est.total()),
        gib(est.weights),
        gib(est.kv),
        gib(est.scratch)
    );
    Ok((Session::new(Arc::new(model), &opts)?, dir, load_s))
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
                log::warn!("lfm generate decodes greedily (token ids in, ids out); lfm run samples text");
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
        Cmd::Info { model, offline, gpu } => info(model, offline, &gpu)?,
        Cmd::Run {
            load: l,
            prompt,
            system,
            raw,
            gen,
        } => {
            let prompt = match prompt {
                Some(p) => p,
                None => {
                    let mut p = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut p)
                        .context("reading the prompt from stdin")?;
                    p
                }
            };
            let (mut s, dir, load_s) = load_with_dir(&l)?;
            let tok = Tokenizer::from_dir(&dir)?;
            let ids = if raw {
                tok.encode(&prompt, true)?
            } else {
                let mut msgs = Vec::new();
                if let Some(sys) = system {
                    msgs.push(Message::system(sys));
                }
                msgs.push(Message::user(prompt));
                ChatTemplate::from_dir(&dir)?.apply(&tok, &msgs, None, true)?
            };
            let params = gen.sampling();
            s.set_sampling(params.clone())?;
            let stop = AtomicBool::new(false);
            let out = answer(&mut s, &tok, &ids, &gen, &stop, false)?;
            println!();
            if gen.stats {
                print_stats(&out.stats, Some(load_s), &params);
            }
            if out.stats.context_full {
                eprintln!("[the context of {} tokens is full; raise --ctx]", s.state.ctx);
            }
        }
        Cmd::Chat { load: l, system, gen } => chat(&l, system, &gen)?,
    }
    Ok(())
}

/// What one answer produced.
struct Answer {
    text: String,
    stats: GenStats,
}

/// Generates from `prompt` (fed after what the session holds), streaming text to stdout,
/// stopping at an end-of-sequence token, a stop string, `max_new_tokens`, a full context or
/// when `stop` is raised (Ctrl-C). The printed text never includes the stop string.
fn answer(
    s: &mut Session,
    tok: &Tokenizer,
    prompt: &[u32],
    gen: &GenArgs,
    stop: &AtomicBool,
    checkpoint: bool,
) -> Result<Answer> {
    let mut stream = tok.stream(true);
    let mut text = String::new();
    let mut printed = 0;
    let hold = gen.stop.iter().map(|x| x.len()).max().unwrap_or(1).saturating_sub(1);
    let eos = tok.eos_ids().to_vec();
    let mut out = std::io::stdout();
    let mut write = |piece: &str| {
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
    };
    let mut hit_stop = false;
    let stats = s.generate(prompt, gen.max_new_tokens, checkpoint, &mut |id| {
        if eos.contains(&id) || stop.load(Ordering::Relaxed) {
            return false;
        }
        if let Some(piece) = stream.push(id) {
            text.push_str(&piece);
        }
        // A stop string cannot start in what is printed: that was checked, with `hold` bytes
        // held back, when it arrived.
        if let Some(at) = gen.stop.iter().filter_map(|x| text[printed..].find(x.as_str())).min() {
            let at = printed + at;
            text.truncate(at);
            hit_stop = true;
        }
        // Print all but what could still become a stop string.
        let mut upto = if hit_stop {
            text.len()
        } else {
            text.len().saturating_sub(hold)
        };
        while !text.is_char_boundary(upto) {
            upto -= 1;
        }
        if upto > printed {
            write(&text[printed..upto]);
            printed = upto;
        }
        !hit_stop
    });
    let stats = match stats {
        Ok(st) => st,
        Err(e) => {
            // Keep what was answered on screen, then report.
            write(&text[printed..]);
            println!();
            return Err(e.into());
        }
    };
    if !hit_stop {
        text.push_str(&stream.finish());
    }
    write(&text[printed..]);
    Ok(Answer { text, stats })
}

fn print_stats(st: &GenStats, load_s: Option<f64>, params: &SamplingParams) {
    let load = load_s.map_or(String::new(), |l| format!("load {l:.2} s, "));
    let decoded = st.new_tokens.saturating_sub(1);
    eprintln!(
        "[{load}prefill {} tokens in {:.2} s ({:.1} tok/s), time to first token {:.2} s, \
         decode {} tokens in {:.2} s ({:.1} tok/s), seed {}]",
        st.prompt_tokens,
        st.prefill_s,
        st.prompt_tokens as f64 / st.prefill_s.max(1e-9),
        st.prefill_s,
        decoded,
        st.decode_s,
        decoded as f64 / st.decode_s.max(1e-9),
        params.seed
    );
}

/// The interactive loop of `lfm chat`.
fn chat(l: &LoadArgs, system: Option<String>, gen: &GenArgs) -> Result<()> {
    let (mut s, dir, load_s) = load_with_dir(l)?;
    let tok = Tokenizer::from_dir(&dir)?;
    let template = ChatTemplate::from_dir(&dir)?;
    let params = gen.sampling();
    s.set_sampling(params.clone())?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed)).context("installing the Ctrl-C handler")?;
    }
    let tty = std::io::stdin().is_terminal();
    let mut msgs: Vec<Message> = system.iter().map(Message::system).collect();
    let mut last: Option<GenStats> = None;
    if tty {
        eprintln!(
            "[{} loaded in {load_s:.1} s; /reset, /system TEXT, /stats, /exit; Ctrl-C stops an answer]",
            dir.display()
        );
    }
    let stdin = std::io::stdin();
    loop {
        if tty {
            eprint!("> ");
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).context("reading stdin")? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        match line.split_once(' ').map_or((line, ""), |(a, b)| (a, b)) {
            ("/exit" | "/quit", _) => break,
            ("/reset", _) => {
                msgs.retain(|m| m.role == Role::System);
                s.reset();
                eprintln!("[conversation reset]");
                continue;
            }
            ("/system", text) => {
                msgs.retain(|m| m.role != Role::System);
                msgs.insert(0, Message::system(text));
                eprintln!("[system message set; it applies from the next answer]");
                continue;
            }
            ("/stats", _) => {
                match &last {
                    Some(st) => print_stats(st, Some(load_s), &params),
                    None => eprintln!("[no answer yet]"),
                }
                continue;
            }
            _ => {}
        }
        msgs.push(Message::user(line));
        let ids = template.apply(&tok, &msgs, None, true)?;
        // Reuse the cache: all of it when it holds a prefix of the rendered conversation,
        // else back to the end of the last prompt (the answer re-tokenized differently).
        let common = s.history.iter().zip(&ids).take_while(|(a, b)| a == b).count();
        let reused = match common == s.history.len() && common < ids.len() {
            true => common,
            false => s.rewind(common.min(ids.len() - 1)),
        };
        let need = ids.len() - reused;
        if reused + need >= s.state.ctx {
            eprintln!(
                "[the conversation ({} tokens) no longer fits the {}-token context: /reset to start over, or restart with a larger --ctx]",
                ids.len(),
                s.state.ctx
            );
            msgs.pop();
            continue;
        }
        stop.store(false, Ordering::Relaxed);
        let out = answer(&mut s, &tok, &ids[reused..], gen, &stop, true)?;
        println!();
        if stop.swap(false, Ordering::Relaxed) {
            eprintln!("[stopped]");
        }
        if gen.stats {
            eprintln!("[prefilled {need} tokens, reused {reused} cached]");
            print_stats(&out.stats, None, &params);
        }
        if out.stats.context_full {
            eprintln!("[the context of {} tokens is full: /reset to start over]", s.state.ctx);
        }
        msgs.push(Message::assistant(out.text));
        last = Some(out.stats);
    }
    Ok(())
}

/// `lfm info`: adapters; with a model, its shape and memory table.
fn info(model: Option<String>, offline: bool, gpu: &GpuArgs) -> Result<()> {
    let opts = gpu.options()?;
    let adapters = context::adapters(opts.backend.unwrap_or(wgpu::Backends::PRIMARY));
    if adapters.is_empty() {
        return Err(lfm_wgpu::Error::NoAdapter { detail: String::new() }.into());
    }
    for (i, a) in adapters.iter().enumerate() {
        let info = a.get_info();
        let l = a.limits();
        let mem = opts.memory_bytes.or_else(|| context::adapter_memory(a));
        println!(
            "[{i}] {} ({:?}, {:?}) driver: {} {}\n    memory: {}  shader-f16: {}  subgroups: {}  timestamps: {}\n    max storage binding: {} MiB  max buffer: {} MiB  workgroup storage: {} KiB",
            info.name,
            info.device_type,
            info.backend,
            info.driver,
            info.driver_info,
            mem.map_or("unknown".into(), gib),
            a.features().contains(wgpu::Features::SHADER_F16),
            a.features().contains(wgpu::Features::SUBGROUP),
            a.features().contains(wgpu::Features::TIMESTAMP_QUERY),
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
        );
    }
    let Some(spec) = model else { return Ok(()) };
    let dir = match std::path::Path::new(&spec).join("config.json").is_file() {
        true => PathBuf::from(&spec),
        false => lfm_wgpu::hub::resolve_model(&spec, offline)?,
    };
    let c = Config::from_file(&dir.join("config.json"))?;
    let attn = c.layer_types.iter().filter(|k| **k == LayerKind::Attention).count();
    let (params, active) = c.parameter_counts();
    println!(
        "\n{}: lfm2_moe, {} layers ({} conv, {attn} attention), hidden {}, vocab {}, {} experts top-{}, \
         {:.2} B parameters ({:.2} B active per token)",
        dir.display(),
        c.num_layers(),
        c.num_layers() - attn,
        c.hidden_size,
        c.vocab_size,
        c.num_experts,
        c.num_experts_per_tok,
        params as f64 / 1e9,
        active as f64 / 1e9
    );
    // Memory on the adapter `lfm run` would pick.
    let g = Gpu::new(&opts)?;
    let avail = g.memory;
    println!(
        "\nGPU memory (weights + KV cache + scratch, ubatch 512) on {} ({}):",
        g.info.name,
        avail.map_or("memory unknown".into(), |m| format!("{} available", gib(m)))
    );
    let ctxs = [4096usize, 8192, 32768];
    print!("| {:<6} |", "dtype");
    for ctx in ctxs {
        print!(" {:>16} |", format!("ctx {ctx}"));
    }
    println!();
    print!("| {:-<6} |", "");
    for _ in ctxs {
        print!(" {:->16} |", "");
    }
    println!();
    for d in [DType::Q4_0, DType::Q8_0, DType::F16, DType::F32] {
        print!("| {:<6} |", d.name());
        for ctx in ctxs {
            let e = MemoryEstimate::for_gpu(&g, &c, d, default_kv_dtype(d), ctx, 512)?;
            let fits = match avail {
                Some(m) if e.total() > m => " ✗",
                Some(_) => " ✓",
                None => "",
            };
            print!(" {:>16} |", format!("{}{fits}", gib(e.total())));
        }
        println!();
    }
    Ok(())
}

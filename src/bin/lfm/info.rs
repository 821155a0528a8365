//! `lfm info`: the adapters and their limits; with `--model`, the model's shape, a GGUF's
//! metadata and tensor types, and the GPU memory it needs at each format and context.

use super::GpuArgs;
use anyhow::Result;
use lfm_wgpu::dtype::DType;
use lfm_wgpu::gguf::{GgufModel, Value};
use lfm_wgpu::gpu::{context, Gpu};
use lfm_wgpu::model::config::{Config, LayerKind};
use lfm_wgpu::model::files::ModelFiles;
use lfm_wgpu::model::memory::{default_kv_dtype, MemoryEstimate};
use lfm_wgpu::model::weights::Source;
use lfm_wgpu::units::gib;
use std::io::Write;

pub fn info(model: Option<String>, offline: bool, gpu: &GpuArgs) -> Result<()> {
    let opts = gpu.options()?;
    let (adapters, int_dot) = context::adapters_and_int_dot(opts.backend.unwrap_or(wgpu::Backends::PRIMARY));
    if adapters.is_empty() {
        return Err(lfm_wgpu::Error::NoAdapter { detail: String::new() }.into());
    }
    for (i, a) in adapters.iter().enumerate() {
        let info = a.get_info();
        let l = a.limits();
        let mem = context::adapter_memory(a, opts.memory_bytes);
        say!(
            "[{i}] {} ({:?}, {:?}) driver: {} {}\n    memory: {}  shader-f16: {}  subgroups: {}  timestamps: {}\n    max storage binding: {} MiB  max buffer: {} MiB  workgroup storage: {} KiB",
            info.name,
            info.device_type,
            info.backend,
            info.driver,
            info.driver_info,
            mem.map_or("unknown".into(), |m| format!("{} ({})", gib(m.bytes), m.source.describe())),
            a.features().contains(wgpu::Features::SHADER_F16),
            a.features().contains(wgpu::Features::SUBGROUP),
            a.features().contains(wgpu::Features::TIMESTAMP_QUERY),
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
        );
    }
    say!(
        "decode on block-format weights (q8_0 … q6_k): {} activations by default (--activations: exact, int8, auto)",
        match int_dot {
            true => "int8 (packed integer dot products)",
            false => "exact f32 (no packed integer dot products in shaders)",
        }
    );
    let Some(spec) = model else { return Ok(()) };
    // Only config.json is read (downloaded alone when the model is not cached), or a GGUF's
    // header (its tensor data stays unread).
    let dir = lfm_wgpu::hub::resolve_config(&spec, offline)?;
    let gguf = match ModelFiles::gguf_path(&dir)? {
        Some(p) => Some(GgufModel::open(&p)?),
        None => None,
    };
    let c = match &gguf {
        Some(g) => g.config.clone(),
        None => ModelFiles::config_only(&dir)?,
    };
    shape(&dir.display().to_string(), &c);
    if let Some(g) = &gguf {
        gguf_summary(g);
    }
    memory_table(&*Gpu::new(&opts)?, &c, gguf.as_ref())
}

fn shape(name: &str, c: &Config) {
    let attn = c.layer_types.iter().filter(|k| **k == LayerKind::Attention).count();
    let (params, active) = c.parameter_counts();
    say!(
        "\n{name}: lfm2_moe, {} layers ({} conv, {attn} attention), hidden {}, vocab {}, {} experts top-{}, \
         {:.2} B parameters ({:.2} B active per token)",
        c.num_layers(),
        c.num_layers() - attn,
        c.hidden_size,
        c.vocab_size,
        c.num_experts,
        c.num_experts_per_tok,
        params as f64 / 1e9,
        active as f64 / 1e9
    );
}

/// A GGUF's identity keys and its tensor types (count and bytes).
fn gguf_summary(g: &GgufModel) {
    let f = &g.file;
    let text = |k: &str| match f.get(k) {
        Some(Value::Str(s)) => format!("{s:?}"),
        Some(v) => v.as_f64().map_or_else(|| v.type_name().to_string(), |x| x.to_string()),
        None => "—".into(),
    };
    say!(
        "\nGGUF v{}: name {}, file type {}, quantization version {}, {} tensors, chat template: {}",
        f.version,
        text("general.name"),
        text("general.file_type"),
        text("general.quantization_version"),
        f.tensors().len(),
        if f.get("tokenizer.chat_template").and_then(Value::as_str).is_some() {
            "yes"
        } else {
            "no (built-in LFM2)"
        }
    );
    let mut types: Vec<(String, usize, u64)> = Vec::new();
    for t in f.tensors() {
        match types.iter_mut().find(|e| e.0 == t.ty.name()) {
            Some(e) => {
                e.1 += 1;
                e.2 += t.n_bytes;
            }
            None => types.push((t.ty.name().to_string(), 1, t.n_bytes)),
        }
    }
    types.sort_by_key(|e| std::cmp::Reverse(e.2));
    say!("| {:<6} | {:>7} | {:>12} |", "type", "tensors", "bytes");
    say!("| {:-<6} | {:->7} | {:->12} |", "", "", "");
    for (name, n, bytes) in types {
        say!(
            "| {name:<6} | {n:>7} | {:>12} |",
            format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
        );
    }
}

/// GPU memory at each format and context on the adapter `lfm run` would pick; a GGUF's own
/// types ("as stored") come first.
fn memory_table(g: &Gpu, c: &Config, gguf: Option<&GgufModel>) -> Result<()> {
    let avail = g.memory;
    say!(
        "\nGPU memory (weights + KV cache + scratch, ubatch 512) on {} ({}):",
        g.info.name,
        g.memory_info.map_or("memory unknown".into(), |m| format!(
            "{} available, {}",
            gib(m.bytes),
            m.source.describe()
        ))
    );
    let ctxs = [4096usize, 8192, 32768];
    put!("| {:<16} |", "dtype");
    for ctx in ctxs {
        put!(" {:>16} |", format!("ctx {ctx}"));
    }
    say!();
    put!("| {:-<16} |", "");
    for _ in ctxs {
        put!(" {:->16} |", "");
    }
    say!();
    let stored = gguf.map(|m| {
        (
            format!("as stored ({})", m.main_dtype()),
            m.main_dtype(),
            m as &dyn Source,
        )
    });
    let converted = [DType::Q4_0, DType::Q8_0, DType::F16, DType::F32].map(|d| (d.name().to_string(), d, None));
    for (name, d, src) in stored.map(|(n, d, s)| (n, d, Some(s))).into_iter().chain(converted) {
        put!("| {name:<16} |");
        for ctx in ctxs {
            let e = match src {
                Some(s) => MemoryEstimate::for_gpu_source(g, s, d, default_kv_dtype(d), ctx, 512)?,
                None => MemoryEstimate::for_gpu(g, c, d, default_kv_dtype(d), ctx, 512)?,
            };
            let fits = match avail {
                Some(m) if e.total() > m => " ✗",
                Some(_) => " ✓",
                None => "",
            };
            put!(" {:>16} |", format!("{}{fits}", gib(e.total())));
        }
        say!();
    }
    Ok(())
}

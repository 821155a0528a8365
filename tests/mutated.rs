//! Property test: the library path of `lfm logits` (Checkpoint::open → GpuModel::load_checked
//! → Session::new → prefill_all_logits) over a few hundred deterministic mutations of the tiny
//! fixtures ends in a clear error or in finite logits — never a panic, a hang, or non-finite
//! logits reported as success.
//!
//! Mutation classes: safetensors header edits (shapes, dtypes, offsets, names, header length,
//! `lfm_wgpu.*` metadata), byte flips in tensor data, single weights set to NaN / ±Inf / 1e5
//! / 1e38 in the file's dtype, config.json edits (huge, zero, negative, float, string values,
//! inconsistent heads and layers), truncated files, and engine-layout (`lfm quantize`)
//! checkpoints with broken format tags or NaN/Inf scales. Matrices load as f16, a subset as
//! q8_0 and f32. One summary line is printed; every failing case is listed.

mod common;

use common::*;
use half::{bf16, f16};
use lfm_wgpu::gpu::{DType, Gpu, GpuOptions};
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::session::{Session, SessionOptions};
use lfm_wgpu::model::weights::Checkpoint;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Longest one case may take (a load, a session, a 4-token prefill of a tiny model).
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

struct Case {
    class: &'static str,
    what: String,
    config: Vec<u8>,
    model: Vec<u8>,
    dtype: DType,
}

/// A safetensors file split into its header (JSON, key order kept) and data.
struct St {
    header: serde_json::Map<String, Value>,
    data: Vec<u8>,
}

impl St {
    fn parse(bytes: &[u8]) -> St {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        St {
            header: serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
            data: bytes[8 + n..].to_vec(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let h = serde_json::to_vec(&self.header).unwrap();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend(&self.data);
        out
    }

    fn names(&self) -> Vec<String> {
        self.header.keys().filter(|k| *k != "__metadata__").cloned().collect()
    }

    /// (dtype, data range) of tensor `name`.
    fn info(&self, name: &str) -> (String, usize, usize) {
        let t = &self.header[name];
        let o = t["data_offsets"].as_array().unwrap();
        (
            t["dtype"].as_str().unwrap().to_string(),
            o[0].as_u64().unwrap() as usize,
            o[1].as_u64().unwrap() as usize,
        )
    }

    /// Writes `v` (rounded to the tensor's dtype) as element `i` of float tensor `name`.
    fn set(&mut self, name: &str, i: usize, v: f32) {
        let (dtype, start, end) = self.info(name);
        let b: Vec<u8> = match dtype.as_str() {
            "BF16" => bf16::from_f32(v).to_le_bytes().to_vec(),
            "F16" => f16::from_f32(v).to_le_bytes().to_vec(),
            "F32" => v.to_le_bytes().to_vec(),
            "U8" => vec![v as u8],
            other => panic!("{name}: dtype {other}"),
        };
        let n = (end - start) / b.len();
        let at = start + (i % n) * b.len();
        self.data[at..at + b.len()].copy_from_slice(&b);
    }
}

fn pick<'a, T>(rng: &mut StdRng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

/// Load format of case `i`: f16 (the default) for most, q8_0 and f32 for some.
fn dtype_of(i: usize) -> DType {
    match i % 6 {
        4 => DType::Q8_0,
        5 => DType::F32,
        _ => DType::F16,
    }
}

const HUGE: [u64; 6] = [1 << 24, 1 << 32, 1 << 40, 1 << 58, 1 << 59, u64::MAX];
const SPECIAL: [(f32, &str); 6] = [
    (f32::NAN, "NaN"),
    (f32::INFINITY, "+Inf"),
    (f32::NEG_INFINITY, "-Inf"),
    (1e5, "1e5"),
    (-1e5, "-1e5"),
    (1e38, "1e38"),
];

/// Header edits of one tensor (or of the whole header).
fn header_edit(rng: &mut StdRng, st: &mut St) -> String {
    let names = st.names();
    let name = pick(rng, &names).clone();
    let k = rng.random_range(0..16);
    let t = st.header.get_mut(&name).unwrap();
    match k {
        0 => {
            let s = t["shape"].as_array_mut().unwrap();
            if let Some(d) = s.first_mut() {
                *d = json!(d.as_u64().unwrap() + 1);
            }
            format!("{name}: shape[0] + 1")
        }
        1 => {
            t["shape"] = json!([0]);
            format!("{name}: shape [0]")
        }
        2 => {
            let h = *pick(rng, &HUGE);
            t["shape"].as_array_mut().unwrap().insert(0, json!(h));
            format!("{name}: shape prefixed by {h}")
        }
        3 => {
            t["shape"] = json!([]);
            format!("{name}: scalar shape")
        }
        4 => {
            let d = *pick(
                rng,
                &[
                    "F64", "I32", "U8", "BOOL", "F8_E4M3", "I64", "XYZ", "F16", "BF16", "F32",
                ],
            );
            t["dtype"] = json!(d);
            format!("{name}: dtype {d}")
        }
        5 => {
            let o = t["data_offsets"].as_array_mut().unwrap();
            let (a, b) = (o[0].as_u64().unwrap(), o[1].as_u64().unwrap());
            *o = vec![json!(b), json!(a)];
            format!("{name}: offsets reversed")
        }
        6 => {
            let h = *pick(rng, &HUGE);
            t["data_offsets"] = json!([0, h]);
            format!("{name}: offsets [0, {h}]")
        }
        7 => {
            let o = t["data_offsets"].as_array_mut().unwrap();
            let (a, b) = (o[0].as_u64().unwrap(), o[1].as_u64().unwrap());
            *o = vec![json!(a + 2), json!(b + 2)];
            format!("{name}: offsets + 2")
        }
        8 => {
            st.header.remove(&name);
            format!("{name}: removed")
        }
        9 => {
            let v = st.header.remove(&name).unwrap();
            st.header.insert(format!("{name}.renamed"), v);
            format!("{name}: renamed")
        }
        10 => {
            // Two tensors of the same size swap data ranges: a valid file with wrong weights.
            let (dtype, a, b) = st.info(&name);
            let other = names.iter().find(|o| {
                let (d, x, y) = st.info(o);
                **o != name && d == dtype && y - x == b - a
            });
            match other.cloned() {
                Some(o) => {
                    let oo = st.header[&o]["data_offsets"].clone();
                    let no = st.header[&name]["data_offsets"].clone();
                    st.header[&o]["data_offsets"] = no;
                    st.header[&name]["data_offsets"] = oo;
                    format!("{name}: data swapped with {o}")
                }
                None => format!("{name}: (no same-size tensor to swap with)"),
            }
        }
        11 => {
            let meta = pick(
                rng,
                &[
                    json!({"lfm_wgpu.layout": "1"}),
                    json!({"lfm_wgpu.layout": "2", "lfm_wgpu.dtype": "f16"}),
                    json!({"lfm_wgpu.layout": "1", "lfm_wgpu.dtype": "q8_0"}),
                    json!({"lfm_wgpu.layout": "1", "lfm_wgpu.dtype": "q5_k"}),
                    json!({"lfm_wgpu.layout": "1", "lfm_wgpu.dtype": "f16", "lfm_wgpu.format.model.embed_tokens": "q4_0"}),
                    json!({"format": 5}),
                    json!("not a map"),
                ],
            )
            .clone();
            let what = format!("__metadata__ = {meta}");
            st.header.insert("__metadata__".into(), meta);
            what
        }
        12 => {
            t["shape"] = json!([-1, 3]);
            format!("{name}: negative shape")
        }
        13 => {
            t["shape"] = json!([1.5]);
            format!("{name}: float shape")
        }
        14 => {
            t.as_object_mut().unwrap().remove("dtype");
            format!("{name}: no dtype")
        }
        _ => {
            // A large tensor whose shape product overflows, data range consistent with u64 wrap.
            t["shape"] = json!([1u64 << 32, 1u64 << 32, 2]);
            format!("{name}: shape [2^32, 2^32, 2]")
        }
    }
}

/// Raw edits of the file bytes: truncation and a broken length prefix.
fn raw_edit(rng: &mut StdRng, bytes: &mut Vec<u8>) -> String {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    match rng.random_range(0..7) {
        0 => {
            let at = *pick(rng, &[0, 1, 7, 8, 9, 8 + n / 2, 8 + n]);
            bytes.truncate(at);
            format!("truncated to {at} bytes")
        }
        1 => {
            let at = rng.random_range(8 + n..bytes.len());
            bytes.truncate(at);
            format!("truncated in the data at {at}")
        }
        2 => {
            bytes.pop();
            "last byte cut".into()
        }
        3 => {
            let h = *pick(
                rng,
                &[
                    0u64,
                    1,
                    n as u64 - 1,
                    n as u64 + 1,
                    bytes.len() as u64,
                    1 << 40,
                    u64::MAX,
                ],
            );
            bytes[..8].copy_from_slice(&h.to_le_bytes());
            format!("header length {h}")
        }
        4 => {
            let at = rng.random_range(8..8 + n);
            bytes[at] = *pick(rng, &[b'{', b'}', b'"', b'0', b'9', b'-', 0, 0xff]);
            format!("header byte {at} replaced")
        }
        5 => {
            bytes.extend([0u8; 13]);
            "13 bytes appended".into()
        }
        _ => {
            bytes.truncate(8 + n);
            "header only".into()
        }
    }
}

/// Edits of config.json.
fn config_edits() -> Vec<(&'static str, Value)> {
    let mut e: Vec<(&'static str, Value)> = Vec::new();
    for f in [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "moe_intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "num_experts",
        "num_experts_per_tok",
        "num_hidden_layers",
        "num_dense_layers",
        "conv_L_cache",
        "max_position_embeddings",
    ] {
        for v in [
            json!(0),
            json!(1u64 << 58),
            json!(1u64 << 59),
            json!(-1),
            json!(2.5),
            json!("NaN"),
        ] {
            e.push((f, v));
        }
    }
    for (f, v) in [
        ("vocab_size", json!(1u64 << 24)),
        ("vocab_size", json!(u64::MAX)),
        ("vocab_size", json!(1)),
        ("hidden_size", json!(8)),
        ("num_attention_heads", json!(5)),
        ("num_key_value_heads", json!(7)),
        ("head_dim", json!(4)),
        ("num_experts", json!(1000)),
        ("num_experts_per_tok", json!(100)),
        ("num_hidden_layers", json!(100)),
        ("conv_L_cache", json!(9)),
        ("norm_eps", json!(0)),
        ("norm_eps", json!(-1)),
        ("norm_eps", json!(1e300)),
        ("norm_eps", json!(1e-300)),
        ("rope_theta", json!(1e308)),
        ("rope_theta", json!(-1)),
        ("routed_scaling_factor", json!(1e30)),
        ("routed_scaling_factor", json!(1e300)),
        ("routed_scaling_factor", json!(-1e30)),
        ("routed_scaling_factor", json!(0)),
        ("tie_word_embeddings", json!(false)),
        ("tie_word_embeddings", json!("yes")),
        ("layer_types", json!([])),
        ("layer_types", json!(["mamba"])),
        ("layer_types", json!("conv")),
        ("model_type", json!("llama")),
        ("eos_token_id", json!(1u64 << 40)),
        ("bos_token_id", json!(-1)),
        ("use_expert_bias", json!(true)),
        ("conv_bias", json!(true)),
        ("rope_parameters", json!({"rope_type": "yarn", "rope_theta": 10000})),
        ("rope_parameters", json!({"rope_theta": 1e-30})),
    ] {
        e.push((f, v));
    }
    e
}

/// All cases, in a fixed order from a fixed seed.
fn cases() -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(0x1f2e_3d4c);
    let mut out = Vec::new();
    let fixtures: Vec<(&'static str, Vec<u8>, Vec<u8>)> = FIXTURES
        .iter()
        .map(|f| {
            let d = fixture_dir(f);
            (
                *f,
                std::fs::read(d.join("config.json")).unwrap(),
                std::fs::read(d.join("model.safetensors")).unwrap(),
            )
        })
        .collect();
    let mut push = |class, fx: &(&str, Vec<u8>, Vec<u8>), what: String, config: Vec<u8>, model: Vec<u8>| {
        let i = out.len();
        out.push(Case {
            class,
            what: format!("{}: {what}", fx.0),
            config,
            model,
            dtype: dtype_of(i),
        });
    };
    // The fixtures themselves: finite logits.
    for fx in &fixtures {
        push("unmodified", fx, "as is".into(), fx.1.clone(), fx.2.clone());
    }
    for i in 0..64 {
        let fx = &fixtures[i % 4];
        let mut st = St::parse(&fx.2);
        let what = header_edit(&mut rng, &mut st);
        push("header", fx, what, fx.1.clone(), st.bytes());
    }
    for i in 0..28 {
        let fx = &fixtures[i % 4];
        let mut bytes = fx.2.clone();
        let what = raw_edit(&mut rng, &mut bytes);
        push("raw", fx, what, fx.1.clone(), bytes);
    }
    for i in 0..32 {
        let fx = &fixtures[i % 4];
        let n = u64::from_le_bytes(fx.2[..8].try_into().unwrap()) as usize;
        let mut bytes = fx.2.clone();
        let flips = *pick(&mut rng, &[1, 8, 64]);
        for _ in 0..flips {
            let at = rng.random_range(8 + n..bytes.len());
            bytes[at] ^= 1 << rng.random_range(0..8);
        }
        push(
            "byte-flip",
            fx,
            format!("{flips} bit flips in the data"),
            fx.1.clone(),
            bytes,
        );
    }
    // One weight set to a special value: in the final norm (reaches every logit), in the
    // embedding row of a prompt token, and in a random tensor.
    for (fi, fx) in fixtures.iter().enumerate() {
        let st = St::parse(&fx.2);
        let names = st.names();
        let h = serde_json::from_slice::<Value>(&fx.1).unwrap()["hidden_size"]
            .as_u64()
            .unwrap() as usize;
        for (si, &(v, label)) in SPECIAL.iter().enumerate() {
            let random = names[(fi * 7 + si * 13) % names.len()].clone();
            for (name, i) in [
                ("model.embedding_norm.weight".to_string(), 0),
                ("model.embed_tokens.weight".to_string(), PROMPT[1] as usize * h + 3),
                (random, si * 5),
            ] {
                let mut st = St::parse(&fx.2);
                st.set(&name, i, v);
                push(
                    "special",
                    fx,
                    format!("{name}[{i}] = {label}"),
                    fx.1.clone(),
                    st.bytes(),
                );
            }
        }
    }
    // Engine-layout checkpoints (`lfm quantize` output) with broken tags, layouts and scales.
    let tmp = tempfile::tempdir().unwrap();
    for (qi, (f, q)) in [("tiny_a", DType::Q8_0), ("tiny_d", DType::Q4_0), ("tiny_a", DType::F16)]
        .into_iter()
        .enumerate()
    {
        let fx = fixtures.iter().find(|x| x.0 == f).unwrap();
        let out_dir = tmp.path().join(format!("{f}-{q}"));
        let ckpt = Checkpoint::open(&fixture_dir(f)).unwrap();
        lfm_wgpu::model::quantize::quantize(&ckpt, &out_dir, q, false, &mut |_, _| {}).unwrap();
        let file = std::fs::read(out_dir.join("model.safetensors")).unwrap();
        let base = St::parse(&file);
        let meta = base.header["__metadata__"].as_object().unwrap().clone();
        let formats: Vec<String> = meta
            .keys()
            .filter(|k| k.starts_with("lfm_wgpu.format."))
            .cloned()
            .collect();
        let scaled: Vec<String> = base.names().into_iter().filter(|n| n.ends_with(".scales")).collect();
        for k in 0..12 {
            let mut st = St::parse(&file);
            let what = match k {
                0 => "as quantized".to_string(),
                1..=3 => {
                    let key = &formats[(k * 5 + qi) % formats.len()];
                    let tag = ["q4_0", "f32", "bogus"][k - 1];
                    st.header["__metadata__"][key] = json!(tag);
                    format!("{key} = {tag}")
                }
                4 => {
                    st.header["__metadata__"]["lfm_wgpu.layout"] = json!("2");
                    "layout 2".into()
                }
                5 => {
                    st.header["__metadata__"]
                        .as_object_mut()
                        .unwrap()
                        .remove("lfm_wgpu.dtype");
                    "no lfm_wgpu.dtype".into()
                }
                6 => {
                    let key = formats[qi % formats.len()].clone();
                    st.header["__metadata__"].as_object_mut().unwrap().remove(&key);
                    format!("{key} removed")
                }
                _ => {
                    // An f16 value (a scale, or an f16 matrix's weight) set to NaN / Inf / 1e4.
                    let (v, label) = [
                        (f16::NAN, "NaN"),
                        (f16::INFINITY, "+Inf"),
                        (f16::NEG_INFINITY, "-Inf"),
                        (f16::from_f32(1e4), "1e4"),
                        (f16::MAX, "65504"),
                    ][k - 7];
                    let name = match scaled.is_empty() {
                        true => "model.embed_tokens".to_string(),
                        false => scaled[(k + qi) % scaled.len()].clone(),
                    };
                    // Row 1 (a prompt token's embedding row when it is the embedding).
                    let row = st.header[&name]["shape"][1].as_u64().unwrap() as usize;
                    let at = st.info(&name).1 + row;
                    st.data[at..at + 2].copy_from_slice(&v.to_le_bytes());
                    format!("{name}: row 1, first value = {label} (f16)")
                }
            };
            push(
                "quantized",
                fx,
                format!("{q} engine layout, {what}"),
                fx.1.clone(),
                st.bytes(),
            );
        }
    }
    let edits = config_edits();
    for (i, (field, v)) in edits.iter().enumerate() {
        let fx = &fixtures[i % 4];
        let mut cfg: Value = serde_json::from_slice(&fx.1).unwrap();
        cfg[*field] = v.clone();
        push(
            "config",
            fx,
            format!("{field} = {v}"),
            serde_json::to_vec(&cfg).unwrap(),
            fx.2.clone(),
        );
    }
    for (i, text) in [
        "",
        "{",
        "[]",
        "null",
        &format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
    ]
    .iter()
    .enumerate()
    {
        let fx = &fixtures[i % 4];
        let what = format!("config.json = {:?}", &text[..text.len().min(8)]);
        push("config", fx, what, text.as_bytes().to_vec(), fx.2.clone());
    }
    out
}

/// Token ids fed to every case (taken modulo the vocabulary).
const PROMPT: [u32; 4] = [1, 5, 2, 9];

/// `lfm logits` on `dir`, as src/bin/lfm.rs runs it (with a 64-token context).
fn logits(gpu: Arc<Gpu>, dir: &Path, dtype: DType) -> lfm_wgpu::Result<Vec<f32>> {
    let ckpt = Checkpoint::open(dir)?;
    let dtype = ckpt.prequantized.unwrap_or(dtype);
    let opts = SessionOptions {
        ctx: 64,
        ..Default::default()
    };
    let (model, _) = GpuModel::load_checked(gpu, &ckpt, dtype, &opts)?;
    let mut session = Session::new(Arc::new(model), &opts)?;
    let v = ckpt.config.vocab_size as u64;
    let tokens: Vec<u32> = PROMPT.iter().map(|&t| (t as u64 % v) as u32).collect();
    session.prefill_all_logits(&tokens)
}

/// Runs one case in this process, a panic caught; a line for the parent.
fn run(gpu: &Arc<Gpu>, root: &Path, i: usize, case: &Case) -> String {
    let dir = root.join(format!("case-{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), &case.config).unwrap();
    std::fs::write(dir.join("model.safetensors"), &case.model).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| logits(gpu.clone(), &dir, case.dtype)));
    let _ = std::fs::remove_dir_all(&dir);
    let one_line = |s: String| s.replace('\n', " | ");
    match r {
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            format!("panic at {}: {}", PANIC_AT.lock().unwrap(), one_line(msg))
        }
        Ok(Err(e)) => format!("error {}", one_line(e.to_string())),
        Ok(Ok(l)) => match l.iter().position(|x| !x.is_finite()) {
            None => "finite".into(),
            Some(at) => format!(
                "non-finite {} of {} logits non-finite, first [{at}] = {}",
                l.iter().filter(|x| !x.is_finite()).count(),
                l.len(),
                l[at]
            ),
        },
    }
}

/// Set in the child process: the first case it runs.
const CHILD_ENV: &str = "LFM_MUTATED_FROM";
const TEST_NAME: &str = "mutated_checkpoints_give_an_error_or_finite_logits";

/// Where the last panic of the child happened.
static PANIC_AT: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// The child: runs cases from `from` on, one stdout line `CASE <i> <outcome>` each.
fn child(from: usize) {
    use std::io::Write;
    // Plan with 512 MiB, as a small GPU would: a config asking for gigabytes is refused
    // before anything is allocated.
    let gpu = gpu(GpuOptions {
        memory_bytes: Some(512 << 20),
        ..Default::default()
    });
    // Panics are reported as outcomes, with where they happened.
    std::panic::set_hook(Box::new(|info| {
        if let Some(l) = info.location() {
            *PANIC_AT.lock().unwrap() = format!("{}:{}", l.file(), l.line());
        }
    }));
    let root = tempfile::tempdir().unwrap();
    for (i, case) in cases().iter().enumerate().skip(from) {
        let t = std::time::Instant::now();
        let line = run(&gpu, root.path(), i, case);
        let mut out = std::io::stdout().lock();
        writeln!(out, "CASE {i} {line}").unwrap();
        eprintln!("case {i} ({}) took {:.2} s", case.class, t.elapsed().as_secs_f64());
        out.flush().unwrap();
    }
}

/// The parent: runs the cases in child processes, so that an abort (a failed allocation) or a
/// hang is one failing case rather than the end of the test; a child that dies or stalls is
/// replaced by one starting after that case.
#[test]
fn mutated_checkpoints_give_an_error_or_finite_logits() {
    use std::io::BufRead;
    if let Ok(from) = std::env::var(CHILD_ENV) {
        return child(from.parse().unwrap());
    }
    let cases = cases();
    let logs = tempfile::tempdir().unwrap();
    let mut outcomes: Vec<Option<String>> = vec![None; cases.len()];
    let mut next = 0;
    while next < cases.len() {
        let first = next;
        let mut proc = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, next.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(logs.path().join(format!("stderr-{first}"))).unwrap())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = proc.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                // (libtest may have written "test … … " before the first line)
                if let Some(at) = line.find("CASE ") {
                    let (i, outcome) = line[at + 5..].split_once(' ').unwrap();
                    let _ = tx.send((i.parse::<usize>().unwrap(), outcome.to_string()));
                }
            }
        });
        loop {
            match rx.recv_timeout(CASE_TIMEOUT) {
                Ok((i, outcome)) => {
                    outcomes[i] = Some(outcome);
                    next = i + 1;
                    if next % 50 == 0 {
                        eprintln!("mutated checkpoints: {next} of {} cases run", cases.len());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = proc.kill();
                    outcomes[next] = Some(format!("hang: no result in {CASE_TIMEOUT:?}"));
                    next += 1;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = proc.wait().unwrap();
                    if next < cases.len() {
                        // The first line of the child's stderr after its last case timing says why.
                        let err =
                            std::fs::read_to_string(logs.path().join(format!("stderr-{first}"))).unwrap_or_default();
                        let tail = err.rsplit_once("\ncase ").map_or(err.as_str(), |(_, t)| t);
                        let why = tail
                            .lines()
                            .find(|l| l.contains("memory allocation") || l.contains("panicked"))
                            .or_else(|| tail.lines().rfind(|l| !l.trim().is_empty()))
                            .unwrap_or("")
                            .to_string();
                        outcomes[next] = Some(format!("abort: the process died ({status}): {why}"));
                        next += 1;
                    }
                    break;
                }
            }
        }
        let _ = proc.wait();
    }

    let (mut errors, mut finite, mut panics, mut non_finite, mut crashes) = (0, 0, 0, 0, 0);
    let mut bad = Vec::new();
    for (i, (case, outcome)) in cases.iter().zip(&outcomes).enumerate() {
        let outcome = outcome.as_deref().unwrap_or("missing");
        match outcome.split_once(' ').map_or(outcome, |(k, _)| k) {
            "error" => errors += 1,
            "finite" => finite += 1,
            kind => {
                match kind {
                    "panic" => panics += 1,
                    "non-finite" => non_finite += 1,
                    _ => crashes += 1,
                }
                bad.push(format!(
                    "  [{i}] {} ({}, {}): {outcome}",
                    case.class, case.dtype, case.what
                ));
            }
        }
        if case.class == "unmodified" {
            assert_eq!(outcome, "finite", "unmodified {}", case.what);
        }
    }
    eprintln!(
        "mutated checkpoints: {} cases, {errors} errors, {finite} finite, {panics} panics, \
         {non_finite} non-finite, {crashes} aborts or hangs",
        cases.len()
    );
    assert!(
        bad.is_empty(),
        "{} cases broke the property:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// The sharded path of `Checkpoint::open` (index → shard names → files) and
/// `Checkpoint::from_bytes` read the same weights as the single file.
#[test]
fn sharded_and_in_memory_checkpoints_read_like_the_file() {
    use lfm_wgpu::reference::Reference;
    let src = fixture_dir("tiny_d");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = St::parse(&bytes);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    // Two shards: the tensors alternately, each with its own data.
    let mut map = serde_json::Map::new();
    for shard in 0..2 {
        let name = format!("model-0000{}-of-00002.safetensors", shard + 1);
        let mut part = St {
            header: serde_json::Map::new(),
            data: Vec::new(),
        };
        for t in st.names().into_iter().skip(shard).step_by(2) {
            let (_, a, b) = st.info(&t);
            let mut info = st.header[&t].clone();
            info["data_offsets"] = json!([part.data.len(), part.data.len() + b - a]);
            part.data.extend(&st.data[a..b]);
            part.header.insert(t.clone(), info);
            map.insert(t, json!(name));
        }
        std::fs::write(dir.path().join(&name), part.bytes()).unwrap();
    }
    let index = json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();

    let file = Checkpoint::open(&src).unwrap();
    let sharded = Checkpoint::open(dir.path()).unwrap();
    let memory = Checkpoint::from_bytes(&src, file.config.clone(), vec![("model.safetensors".into(), bytes)]).unwrap();
    let logits = |c: &Checkpoint| {
        let r = Reference::load(c, DType::F32).unwrap();
        r.forward(&mut r.new_state(), &PROMPT, None)
    };
    let want = logits(&file);
    assert_eq!(logits(&sharded), want);
    assert_eq!(logits(&memory), want);
}

/// Feeds every range a streamed load asks for, each item's ranges in reverse order (only the
/// last completes it); returns the model and the bytes fed.
fn stream_all(
    gpu: &Arc<Gpu>,
    src: Box<dyn lfm_wgpu::model::weights::Streamable>,
    bytes: &[u8],
    dtype: DType,
) -> (GpuModel, usize) {
    use lfm_wgpu::model::gpu_weights::GpuStream;
    use lfm_wgpu::model::weights::StreamedLoad;
    let mut stream = GpuStream::new(gpu.clone(), StreamedLoad::new(src).unwrap(), dtype);
    let (mut items, mut fed) = (0, 0);
    while let Some(ranges) = stream.wanted().unwrap() {
        for (i, r) in ranges.iter().enumerate().rev() {
            let piece = bytes[r.start as usize..r.end as usize].to_vec();
            fed += piece.len();
            assert_eq!(
                stream.feed(r.start, piece).unwrap(),
                i == 0,
                "only the last piece completes an item"
            );
        }
        items += 1;
    }
    assert_eq!(stream.progress(), (items, items));
    (stream.finish().unwrap(), fed)
}

fn all_logits(model: GpuModel) -> Vec<f32> {
    let opts = SessionOptions {
        ctx: 64,
        ..Default::default()
    };
    let mut s = Session::new(Arc::new(model), &opts).unwrap();
    s.prefill_all_logits(&PROMPT).unwrap()
}

/// A safetensors checkpoint streamed piece by piece (the page's loader: each tensor's byte
/// range fed as it arrives) loads the same weights as the file, reading no byte twice, and a
/// header that lies about where a tensor lies is an error naming it.
#[test]
fn a_streamed_checkpoint_loads_like_the_file() {
    let src = fixture_dir("tiny_b");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let file = Checkpoint::open(&src).unwrap();
    let n = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let (name, len) = ("tiny_b/model.safetensors", bytes.len() as u64);
    let ckpt = Checkpoint::streamed(name, file.config.clone(), bytes[..n].to_vec(), len).unwrap();
    let gpu = default_gpu();
    let (model, fed) = stream_all(&gpu, Box::new(ckpt), &bytes, DType::Q4_0);
    assert!(
        fed <= bytes.len() - n,
        "{fed} bytes fed for {} of tensor data",
        bytes.len() - n
    );
    assert_eq!(
        all_logits(model),
        all_logits(GpuModel::load(gpu, &file, DType::Q4_0).unwrap())
    );

    // The first tensor's data said to end past the file.
    let mut st = St::parse(&bytes);
    let first = st.names()[0].clone();
    let (_, a, _) = st.info(&first);
    st.header[&first]["data_offsets"] = json!([a, st.data.len() + 64]);
    let lying = st.bytes();
    let n = 8 + u64::from_le_bytes(lying[..8].try_into().unwrap()) as usize;
    let err = Checkpoint::streamed(name, file.config.clone(), lying[..n].to_vec(), lying.len() as u64)
        .err()
        .expect("a tensor outside the file is refused")
        .to_string();
    assert!(err.contains(&first) && err.contains(name), "{err}");
}

/// A GGUF file streamed piece by piece: the header from a prefix grown until it suffices,
/// then each tensor (each expert's slice of a stacked one) as asked; the same logits as the
/// mapped file, in the file's own block formats.
#[test]
fn a_streamed_gguf_loads_like_the_file() {
    use lfm_wgpu::gguf::GgufModel;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf/tiny_k.q4_k_m.gguf");
    let bytes = std::fs::read(&path).unwrap();
    let mut head = 64;
    let model = loop {
        match GgufModel::streamed(&path, bytes[..head.min(bytes.len())].to_vec(), bytes.len() as u64).unwrap() {
            Some(m) => break m,
            None => {
                assert!(head < bytes.len(), "the whole file did not suffice");
                head *= 2;
            }
        }
    };
    assert!(head < bytes.len(), "the header needed the whole file ({head} bytes)");
    let file = GgufModel::open(&path).unwrap();
    let dtype = file.main_dtype();
    let gpu = default_gpu();
    let (streamed, fed) = stream_all(&gpu, Box::new(model), &bytes, dtype);
    assert!(fed <= bytes.len(), "{fed} bytes fed for a {}-byte file", bytes.len());
    assert_eq!(
        all_logits(streamed),
        all_logits(GpuModel::load(gpu, &file, dtype).unwrap())
    );
}

//! Host quantization (src/quant.rs) against the `gguf` Python package: the GGML block bytes of
//! `gguf.quants.quantize` and the f32 of `gguf.quants.dequantize`, bit for bit, for Q8_0 and Q4_0
//! (tests/data/quant/ggml_reference.safetensors, written by tools/make_quant_fixtures.py).

use lfm_wgpu::quant::{dequantize_row, from_ggml_blocks, quantize_row, to_ggml_blocks, QuantFormat, BLOCK};
use safetensors::{Dtype, SafeTensors};

fn fixture_bytes() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/quant/ggml_reference.safetensors"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn f32s(st: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (v, t.shape().to_vec())
}

fn u8s<'a>(st: &'a SafeTensors, name: &str) -> &'a [u8] {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::U8, "{name}");
    t.data()
}

/// Bit equality, except that any NaN equals any NaN (0 × inf under an overflowed f16 scale; the
/// NaN's sign bit is the CPU's choice).
fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn block_label(labels: &[String], name: &str, block: usize, cols: usize) -> String {
    let (row, col) = (block * BLOCK / cols, block * BLOCK % cols);
    match name {
        "tricky" => format!(
            "block {block} ({:?})",
            labels.get(block).map(String::as_str).unwrap_or("?")
        ),
        _ => format!("block {block} (row {row}, cols {col}..{})", col + BLOCK),
    }
}

fn describe_input(x: &[f32]) -> String {
    let vals: Vec<String> = x.iter().map(|v| format!("{v:e} ({:#010x})", v.to_bits())).collect();
    format!("input:\n  {}", vals.join("\n  "))
}

#[test]
fn matches_gguf_bit_exact() {
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap_or_default();
    let gguf = meta.get("gguf").expect("metadata key gguf");
    let labels: Vec<String> = serde_json::from_str(meta.get("tricky_rows").expect("metadata key tricky_rows")).unwrap();

    let mut names: Vec<String> = st
        .names()
        .iter()
        .filter_map(|n| n.strip_suffix(".f32").map(String::from))
        .collect();
    names.sort();
    assert!(names.len() >= 4 && names.iter().any(|n| n == "tricky"), "{names:?}");

    let mut failures = Vec::new();
    let mut checked_blocks = 0;
    for name in &names {
        let (x, shape) = f32s(&st, &format!("{name}.f32"));
        let cols = *shape.last().unwrap();
        assert_eq!(cols % BLOCK, 0, "{name}: {shape:?}");
        if name == "tricky" {
            assert_eq!(labels.len(), x.len() / BLOCK);
        }
        for fmt in QuantFormat::ALL {
            let key = format!("{name}.{}", fmt.name());
            let want = u8s(&st, &key);
            let (want_deq, deq_shape) = f32s(&st, &format!("{key}.deq"));
            assert_eq!(deq_shape, shape, "{key}.deq");
            let n_blocks = x.len() / BLOCK;
            assert_eq!(want.len(), n_blocks * fmt.block_bytes(), "{key}");

            // Quantize: our bytes must equal gguf's.
            let (mut q, mut s) = (Vec::new(), Vec::new());
            quantize_row(fmt, &x, &mut q, &mut s).unwrap();
            let got = to_ggml_blocks(fmt, &q, &s).unwrap();
            let bb = fmt.block_bytes();
            if let Some(b) = (0..n_blocks).find(|&b| got[b * bb..][..bb] != want[b * bb..][..bb]) {
                let n_bad = (0..n_blocks)
                    .filter(|&b| got[b * bb..][..bb] != want[b * bb..][..bb])
                    .count();
                failures.push(format!(
                    "{key} (gguf {gguf}): {n_bad} of {n_blocks} blocks differ; first: {}\n  gguf: {}\n  ours: {}\n{}",
                    block_label(&labels, name, b, cols),
                    hex(&want[b * bb..][..bb]),
                    hex(&got[b * bb..][..bb]),
                    describe_input(&x[b * BLOCK..][..BLOCK])
                ));
            }

            // Dequantize gguf's bytes: must equal gguf's f32 (and the SoA round trip is lossless).
            let (gq, gs) = from_ggml_blocks(fmt, want).unwrap();
            assert_eq!(to_ggml_blocks(fmt, &gq, &gs).unwrap(), want, "{key}: AoS → SoA → AoS");
            let mut deq = vec![0.0f32; x.len()];
            dequantize_row(fmt, &gq, &gs, &mut deq).unwrap();
            if let Some(i) = (0..deq.len()).find(|&i| !same_f32(deq[i], want_deq[i])) {
                let b = i / BLOCK;
                failures.push(format!(
                    "{key}.deq (gguf {gguf}): element {i} of {}: gguf {:e} ({:#010x}), ours {:e} ({:#010x})\n  block bytes: {}\n{}",
                    block_label(&labels, name, b, cols),
                    want_deq[i],
                    want_deq[i].to_bits(),
                    deq[i],
                    deq[i].to_bits(),
                    hex(&want[b * bb..][..bb]),
                    describe_input(&x[b * BLOCK..][..BLOCK])
                ));
            }
            checked_blocks += n_blocks;
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{checked_blocks} blocks of {} tensors match gguf {gguf} bit for bit",
        names.len()
    );
}

//! Malformed GGUF files, written byte by byte: each gives its typed error, never a panic or a
//! huge allocation.

use lfm_wgpu::dtype::DType;
use lfm_wgpu::gguf::{GgufFile, GgufModel};
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::weights::Source;
use lfm_wgpu::reference::Reference;
use lfm_wgpu::Error;
use std::path::PathBuf;

/// A metadata value: GGUF type id and its encoded bytes.
struct Kv(&'static str, u32, Vec<u8>);

fn s(x: &str) -> Vec<u8> {
    let mut b = (x.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(x.as_bytes());
    b
}
fn string(k: &'static str, v: &str) -> Kv {
    Kv(k, 8, s(v))
}
fn u32v(k: &'static str, v: u32) -> Kv {
    Kv(k, 4, v.to_le_bytes().to_vec())
}
fn u32_array(k: &'static str, v: &[u32]) -> Kv {
    let mut b = 4u32.to_le_bytes().to_vec();
    b.extend((v.len() as u64).to_le_bytes());
    v.iter().for_each(|x| b.extend(x.to_le_bytes()));
    Kv(k, 9, b)
}

struct T {
    name: &'static str,
    dims: Vec<u64>,
    ty: u32,
    offset: u64,
}

fn t(name: &'static str, dims: &[u64], offset: u64) -> T {
    T {
        name,
        dims: dims.to_vec(),
        ty: 0,
        offset,
    }
}

/// A GGUF v3 file: header, metadata, tensor infos, padding to 32, then `data`.
fn file(kvs: &[Kv], tensors: &[T], data: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for Kv(k, ty, v) in kvs {
        b.extend(s(k));
        b.extend(ty.to_le_bytes());
        b.extend(v);
    }
    for t in tensors {
        b.extend(s(t.name));
        b.extend((t.dims.len() as u32).to_le_bytes());
        t.dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
        b.extend(t.ty.to_le_bytes());
        b.extend(t.offset.to_le_bytes());
    }
    b.resize(b.len().next_multiple_of(32), 0);
    b.extend(data);
    b
}

/// A minimal valid lfm2moe config: one dense conv layer, H = 8, vocab 4.
fn model_kvs() -> Vec<Kv> {
    vec![
        string("general.architecture", "lfm2moe"),
        u32v("lfm2moe.block_count", 1),
        u32v("lfm2moe.embedding_length", 8),
        u32v("lfm2moe.feed_forward_length", 8),
        u32v("lfm2moe.expert_feed_forward_length", 8),
        u32v("lfm2moe.attention.head_count", 1),
        u32_array("lfm2moe.attention.head_count_kv", &[0]),
        u32v("lfm2moe.leading_dense_block_count", 1),
        u32v("lfm2moe.vocab_size", 4),
    ]
}

struct Tmp(tempfile::TempDir);

impl Tmp {
    fn write(&self, bytes: &[u8]) -> PathBuf {
        let p = self.0.path().join("bad.gguf");
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// Parses `bytes` from memory (the loops below parse thousands of variants).
fn mem(bytes: &[u8]) -> lfm_wgpu::Result<GgufFile> {
    GgufFile::from_bytes(std::path::Path::new("mem.gguf"), bytes)
}

fn tmp() -> Tmp {
    Tmp(tempfile::tempdir().unwrap())
}

/// Opening `bytes` fails with a GGUF error whose message contains `want`.
fn fails(bytes: &[u8], want: &str) {
    match mem(bytes) {
        Err(Error::Gguf { msg, .. }) => assert!(msg.contains(want), "got {msg:?}, want {want:?}"),
        Err(e) => panic!("wrong error {e:?} (want {want:?})"),
        Ok(_) => panic!("accepted a bad file (want {want:?})"),
    }
}

/// Every tensor of the `model_kvs` model (F32), laid out back to back at aligned offsets,
/// with `edit` applied to the list first.
fn model_file(kvs: &[Kv], edit: impl FnOnce(&mut Vec<(&'static str, Vec<u64>, u32)>)) -> Vec<u8> {
    let mut list: Vec<(&'static str, Vec<u64>, u32)> = vec![
        ("token_embd.weight", vec![8, 4], 0),
        ("token_embd_norm.weight", vec![8], 0),
        ("blk.0.attn_norm.weight", vec![8], 0),
        ("blk.0.ffn_norm.weight", vec![8], 0),
        ("blk.0.shortconv.in_proj.weight", vec![8, 24], 0),
        ("blk.0.shortconv.conv.weight", vec![3, 8], 0),
        ("blk.0.shortconv.out_proj.weight", vec![8, 8], 0),
        ("blk.0.ffn_gate.weight", vec![8, 8], 0),
        ("blk.0.ffn_up.weight", vec![8, 8], 0),
        ("blk.0.ffn_down.weight", vec![8, 8], 0),
    ];
    edit(&mut list);
    let mut tensors = Vec::new();
    let mut offset = 0u64;
    for (name, dims, ty) in list {
        let n: u64 = dims.iter().product();
        let bytes = match ty {
            0 => n * 4,
            1 => n * 2,
            11 => n / 256 * 110,
            _ => unreachable!(),
        };
        tensors.push(T { name, dims, ty, offset });
        offset = (offset + bytes).next_multiple_of(32);
    }
    file(kvs, &tensors, &vec![0u8; offset as usize])
}

fn good() -> Vec<u8> {
    model_file(&model_kvs(), |_| {})
}

/// Bytes of tensor data in `good()` (the header is the rest).
fn good_data_len() -> usize {
    let f = mem(&good()).unwrap();
    good().len() - f.data_start as usize
}

#[test]
fn a_valid_small_file_opens() {
    let d = tmp();
    let m = GgufModel::open(&d.write(&good())).unwrap();
    assert_eq!(m.config.hidden_size, 8);
    assert_eq!(m.file.tensors().len(), 10);
    lfm_wgpu::reference::Reference::load(&m, lfm_wgpu::dtype::DType::F32).unwrap();
}

#[test]
fn wrong_magic_and_versions() {
    let mut b = good();
    b[0] = b'X';
    fails(&b, "not a GGUF file");
    for (v, want) in [
        (1u32, "version 1"),
        (3u32.swap_bytes(), "big-endian"),
        (7, "unknown GGUF version 7"),
    ] {
        let mut b = good();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        fails(&b, want);
    }
    let mut b = good();
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    let d = tmp();
    assert_eq!(GgufFile::open(&d.write(&b)).unwrap().version, 2);
}

#[test]
fn header_cut_anywhere_is_an_error() {
    // Every prefix of the header (through the tensor infos) fails cleanly; once the infos are
    // complete, the tensor data is missing instead.
    let b = good();
    for len in 0..b.len() {
        match mem(&b[..len]) {
            Err(Error::Gguf { msg, .. }) => {
                assert!(
                    msg.contains("header cut") || msg.contains("past the end") || msg.contains("impossible"),
                    "{len}: {msg}"
                )
            }
            other => panic!("{len} bytes: {other:?}"),
        }
    }
}

#[test]
fn huge_counts_and_lengths() {
    let mut b = good();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    fails(&b, "tensor count");
    let mut b = good();
    b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    fails(&b, "metadata count");
    // The first key's length.
    let mut b = good();
    b[24..32].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    fails(&b, "string length");
    // A string value claiming 2^62 bytes, and an array claiming 2^61 elements.
    let mut v = 1u64 << 62;
    fails(
        &file(&[Kv("k", 8, v.to_le_bytes().to_vec())], &[], &[]),
        "runs past the end",
    );
    v = 1 << 61;
    let mut arr = 4u32.to_le_bytes().to_vec();
    arr.extend(v.to_le_bytes());
    fails(&file(&[Kv("k", 9, arr)], &[], &[]), "length of array");
    // Arrays of arrays nested too deep.
    let mut nested = Vec::new();
    for _ in 0..20 {
        nested.extend(9u32.to_le_bytes());
        nested.extend(1u64.to_le_bytes());
    }
    nested.extend(4u32.to_le_bytes());
    nested.extend(0u64.to_le_bytes());
    fails(&file(&[Kv("deep", 9, nested)], &[], &[]), "nested deeper");
}

#[test]
fn bad_values_and_types() {
    fails(
        &file(&[Kv("k", 13, vec![0; 8])], &[], &[]),
        "unknown metadata value type 13",
    );
    fails(&file(&[Kv("k", 7, vec![2])], &[], &[]), "bool byte 2");
    fails(&file(&[u32v("k", 1), u32v("k", 2)], &[], &[]), "appears twice");
    fails(&file(&[u32v("general.alignment", 24)], &[], &[]), "alignment");
    let unknown = T {
        ty: 4,
        ..t("x", &[32], 0)
    };
    fails(&file(&[], &[unknown], &[0; 64]), "unknown ggml type id 4");
    let q8 = T {
        ty: 8,
        ..t("x", &[48], 0)
    };
    fails(&file(&[], &[q8], &[0; 64]), "block size 32");
    fails(&file(&[], &[t("x", &[0, 3], 0)], &[]), "invalid dimensions");
    fails(&file(&[], &[t("x", &[1 << 40, 1 << 40], 0)], &[]), "invalid dimensions");
    fails(&file(&[], &[t("x", &[1, 1, 1, 1, 1], 0)], &[]), "5 dimensions");
}

#[test]
fn bad_tensor_placement() {
    fails(&file(&[], &[t("x", &[8], 0)], &[0; 16]), "past the end of the file");
    fails(
        &file(&[], &[t("x", &[8], 1 << 62)], &[0; 64]),
        "past the end of the file",
    );
    fails(
        &file(&[], &[t("x", &[8], 16)], &[0; 64]),
        "not a multiple of the alignment 32",
    );
    fails(&file(&[], &[t("a", &[16], 0), t("b", &[8], 32)], &[0; 96]), "overlap");
    fails(
        &file(&[], &[t("a", &[8], 0), t("a", &[8], 32)], &[0; 64]),
        "appears twice",
    );
}

fn model_fails(kvs: Vec<Kv>, want: &str) {
    let d = tmp();
    match GgufModel::open(&d.write(&model_file(&kvs, |_| {}))) {
        Err(Error::Gguf { msg, .. }) => assert!(msg.contains(want), "got {msg:?}, want {want:?}"),
        other => panic!("{other:?} (want {want:?})"),
    }
}

#[test]
fn bad_model_metadata() {
    let mut kvs = model_kvs();
    kvs[0] = string("general.architecture", "llama");
    model_fails(kvs, "architecture \"llama\" is not supported");
    model_fails(
        model_kvs().into_iter().skip(1).collect(),
        "general.architecture is missing",
    );
    let kvs: Vec<Kv> = model_kvs()
        .into_iter()
        .filter(|k| k.0 != "lfm2moe.block_count")
        .collect();
    model_fails(kvs, "lfm2moe.block_count is missing");
    let mut kvs = model_kvs();
    kvs[2] = string("lfm2moe.embedding_length", "8");
    model_fails(kvs, "expected an unsigned integer");
    let mut kvs = model_kvs();
    kvs[2] = u32v("lfm2moe.embedding_length", 12);
    model_fails(kvs, "invalid: hidden_size = 12");
    let mut kvs = model_kvs();
    kvs[6] = u32_array("lfm2moe.attention.head_count_kv", &[0, 0]);
    model_fails(kvs, "2 entries for 1 blocks");
    let mut kvs = model_kvs();
    kvs.push(u32v("lfm2moe.expert_gating_func", 1));
    model_fails(kvs, "expert_gating_func 1");
    let mut kvs = model_kvs();
    kvs[2] = Kv("lfm2moe.embedding_length", 10, (1u64 << 62).to_le_bytes().to_vec());
    model_fails(kvs, "embedding_length 4611686018427387904 is impossible");
    let mut kvs = model_kvs();
    kvs[4] = Kv(
        "lfm2moe.expert_feed_forward_length",
        10,
        u64::MAX.to_le_bytes().to_vec(),
    );
    model_fails(kvs, "expert_feed_forward_length");
    // A conv-free model whose head count × head size overflows.
    let mut kvs = model_kvs();
    kvs[6] = u32_array("lfm2moe.attention.head_count_kv", &[1]);
    kvs[5] = u32v("lfm2moe.attention.head_count", 1 << 20);
    kvs.push(Kv(
        "lfm2moe.attention.key_length",
        10,
        (1u64 << 60).to_le_bytes().to_vec(),
    ));
    model_fails(kvs, "heads != embedding_length");
}

#[test]
fn missing_tensor_wrong_shape_and_unsupported_type() {
    // All checked when the model is opened, before anything is read or allocated.
    let d = tmp();
    let open = |bytes: Vec<u8>| GgufModel::open(&d.write(&bytes));
    match open(model_file(&model_kvs(), |l| l[0].1 = vec![8, 5])) {
        Err(Error::Shape { name, found, expected }) => {
            assert!(name.contains("token_embd.weight"), "{name}");
            assert_eq!((found, expected), (vec![8, 5], vec![8, 4]));
        }
        other => panic!("{other:?}"),
    }
    match open(model_file(&model_kvs(), |l| l[5].1 = vec![8, 3])) {
        Err(Error::Shape { name, .. }) => assert!(name.contains("blk.0.shortconv.conv.weight"), "{name}"),
        other => panic!("{other:?}"),
    }
    match open(model_file(&model_kvs(), |l| {
        l.remove(3);
    })) {
        Err(Error::MissingTensor { name, .. }) => assert!(name.contains("blk.0.ffn_norm.weight"), "{name}"),
        other => panic!("{other:?}"),
    }
    // A Q3_K embedding: refused at open, naming the tensor, its type and what is supported.
    let mut kvs = model_kvs();
    kvs[2] = u32v("lfm2moe.embedding_length", 256);
    let q3k = model_file(&kvs, |l| {
        for t in l.iter_mut() {
            t.1 = t.1.iter().map(|&x| if x == 8 { 256 } else { x }).collect();
        }
        l[4].1 = vec![256, 768];
        l[0].2 = 11;
    });
    match open(q3k.clone()) {
        Err(Error::Gguf { msg, .. }) => {
            assert!(
                msg.contains("token_embd.weight has type Q3_K") && msg.contains("Q6_K"),
                "{msg}"
            )
        }
        other => panic!("{other:?}"),
    }
    let f = GgufFile::open(&d.write(&q3k)).unwrap();
    assert!(matches!(f.read_f32("token_embd.weight"), Err(Error::Gguf { .. })));
    let m = GgufModel::open(&d.write(&good())).unwrap();
    let mut out = [0f32; 1];
    assert!(matches!(
        m.read_f32("model.nonsense", &[1], &mut out),
        Err(Error::Gguf { .. })
    ));
}

/// Opens `bytes` and, when that succeeds, reads everything: an error is fine, a panic is not.
fn open_and_read_all(bytes: &[u8]) {
    let Ok(f) = mem(bytes) else { return };
    for t in f.tensors().to_vec() {
        let _ = f.read_f32(&t.name);
    }
    let _ = lfm_wgpu::tokenizer::Tokenizer::from_gguf(&f);
    if let Ok(m) = GgufModel::from_file(f) {
        let _ = lfm_wgpu::reference::Reference::load(&m, lfm_wgpu::dtype::DType::F32);
    }
}

#[test]
fn corrupted_header_bytes_never_panic() {
    // Every header byte of a small model file set to 0x00, 0xFF, 0x80 and flipped; then every
    // 7th header byte of two real fixtures (metadata, vocab and tensor infos) set to 0xFF and
    // 0x00, each variant opened, its tensors, tokenizer and model read.
    let b = good();
    let header = b.len() - good_data_len();
    for i in 0..header {
        for v in [0x00, 0xFF, 0x80, b[i] ^ 1] {
            let mut m = b.clone();
            m[i] = v;
            open_and_read_all(&m);
        }
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf");
    for name in ["tiny_d.f32.gguf", "tiny_c.vocab.gguf"] {
        let b = std::fs::read(dir.join(name)).unwrap();
        let header = GgufFile::open(&dir.join(name)).unwrap().data_start as usize;
        for i in (0..header).step_by(7) {
            for v in [0x00, 0xFF] {
                let mut m = b.clone();
                m[i] = v;
                open_and_read_all(&m);
            }
        }
    }
}

fn str_array(k: &'static str, v: &[&str]) -> Kv {
    let mut b = 8u32.to_le_bytes().to_vec();
    b.extend((v.len() as u64).to_le_bytes());
    v.iter().for_each(|x| b.extend(s(x)));
    Kv(k, 9, b)
}

#[test]
fn bad_tokenizer_metadata() {
    let tok = |kvs: Vec<Kv>| lfm_wgpu::tokenizer::Tokenizer::from_gguf(&mem(&file(&kvs, &[], &[])).unwrap());
    let fails = |kvs: Vec<Kv>, want: &str| match tok(kvs) {
        Err(Error::Gguf { msg, .. }) => assert!(msg.contains(want), "got {msg:?}, want {want:?}"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("accepted (want {want:?})"),
    };
    let base = || {
        vec![
            string("tokenizer.ggml.model", "gpt2"),
            string("tokenizer.ggml.pre", "lfm2"),
            str_array("tokenizer.ggml.tokens", &["a", "b", "ab"]),
            str_array("tokenizer.ggml.merges", &["a b"]),
        ]
    };
    let t = tok(base()).unwrap();
    assert_eq!(t.encode("abab", false).unwrap(), vec![2, 2]);
    fails(base().into_iter().skip(1).collect(), "tokenizer.ggml.model is missing");
    let mut kvs = base();
    kvs[0] = string("tokenizer.ggml.model", "llama");
    fails(kvs, "\"llama\" is not supported");
    let mut kvs = base();
    kvs[1] = string("tokenizer.ggml.pre", "qwen2");
    fails(kvs, "tokenizer.ggml.pre \"qwen2\" is not supported");
    let mut kvs = base();
    kvs[3] = str_array("tokenizer.ggml.merges", &["ab"]);
    fails(kvs, "not two tokens");
    let mut kvs = base();
    kvs.push(u32v("tokenizer.ggml.bos_token_id", 3));
    fails(kvs, "is not a token id");
    let mut kvs = base();
    kvs.push(u32_array("tokenizer.ggml.token_type", &[1, 1]));
    fails(kvs, "not an array of 3 integers");
    fails(base().into_iter().take(2).collect(), "tokenizer.ggml.tokens is missing");
}

#[test]
fn non_finite_weights_are_refused_when_read() {
    // Dequantized for the CPU reference, and as they are for the GPU.
    let mut b = good();
    let start = mem(&b).unwrap().data_start as usize + 4 * 5;
    b[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let m = GgufModel::from_file(mem(&b).unwrap()).unwrap();
    let gpu = || GpuModel::load(crate::common::default_gpu(), &m, DType::F32).map(|_| ());
    for r in [Reference::load(&m, DType::F32).map(|_| ()), gpu()] {
        match r {
            Err(Error::Gguf { msg, .. }) => {
                assert!(
                    msg.contains("token_embd.weight") && msg.contains("index 5 is not finite"),
                    "{msg}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Every tensor of `b` filled with small deterministic values in its type (F32 or F16).
fn fill_values(b: &mut [u8]) {
    let f = mem(b).unwrap();
    let start = f.data_start as usize;
    let mut x = 1u32;
    for t in f.tensors() {
        let mut at = start + t.offset as usize;
        for _ in 0..t.n_elements() {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = ((x >> 16) % 201) as f32 / 400.0 - 0.25;
            let bytes = match t.ty.id() {
                1 => half::f16::from_f32(v).to_le_bytes().to_vec(),
                _ => v.to_le_bytes().to_vec(),
            };
            b[at..at + bytes.len()].copy_from_slice(&bytes);
            at += bytes.len();
        }
    }
}

#[test]
fn a_gated_pair_of_two_types_is_converted_together() {
    // One kernel reads gate and up together, so an F16 gate beside an F32 up cannot stay as it
    // is: both are converted (to f32 here, the file's main type), the rest stays native, and
    // the logits are the CPU reference's.
    let mut b = model_file(&model_kvs(), |list| {
        list.iter_mut().find(|t| t.0 == "blk.0.ffn_gate.weight").unwrap().2 = 1;
        list.iter_mut().find(|t| t.0 == "blk.0.ffn_down.weight").unwrap().2 = 1;
    });
    fill_values(&mut b);
    let m = GgufModel::from_file(mem(&b).unwrap()).unwrap();
    let model = GpuModel::load(crate::common::default_gpu(), &m, m.main_dtype()).unwrap();
    let lfm_wgpu::model::weights::Ffn::Dense { gate, up, down } = &model.w.layers[0].ffn else {
        panic!("dense layer expected")
    };
    assert_eq!((gate.dtype, up.dtype, down.dtype), (DType::F32, DType::F32, DType::F16));
    let r = Reference::load(&m, DType::F32).unwrap();
    let prompt = [1, 3, 0, 2];
    let want = r.forward(&mut r.new_state(), &prompt, None);
    let opts = lfm_wgpu::model::session::SessionOptions {
        ctx: 16,
        kv_dtype: Some(DType::F32),
        ..Default::default()
    };
    let mut s = lfm_wgpu::model::session::Session::new(std::sync::Arc::new(model), &opts).unwrap();
    let got = s.prefill_all_logits(&prompt).unwrap();
    crate::common::assert_close(
        "gated pair",
        &got,
        &want,
        1e-5 * crate::common::max_abs(&want).max(1e-3),
    );
}

#[test]
fn every_metadata_value_type_parses() {
    use lfm_wgpu::gguf::Value as V;
    let mut nested = 9u32.to_le_bytes().to_vec(); // array of arrays
    nested.extend(2u64.to_le_bytes());
    for items in [&[1u32, 2][..], &[3]] {
        nested.extend(4u32.to_le_bytes());
        nested.extend((items.len() as u64).to_le_bytes());
        items.iter().for_each(|x| nested.extend(x.to_le_bytes()));
    }
    let kvs = vec![
        Kv("u8", 0, vec![200]),
        Kv("i8", 1, vec![0xFE]),
        Kv("u16", 2, 60000u16.to_le_bytes().to_vec()),
        Kv("i16", 3, (-3i16).to_le_bytes().to_vec()),
        u32v("u32", 4_000_000_000),
        Kv("i32", 5, (-5i32).to_le_bytes().to_vec()),
        Kv("f32", 6, 1.5f32.to_le_bytes().to_vec()),
        Kv("bool", 7, vec![1]),
        string("str", "héllo"),
        Kv("nested", 9, nested),
        Kv("u64", 10, u64::MAX.to_le_bytes().to_vec()),
        Kv("i64", 11, (-7i64).to_le_bytes().to_vec()),
        Kv("f64", 12, 0.1f64.to_le_bytes().to_vec()),
        str_array("strs", &["a", ""]),
    ];
    let f = mem(&file(&kvs, &[], &[])).unwrap();
    let get = |k: &str| f.get(k).cloned().unwrap();
    assert_eq!(get("u8"), V::U8(200));
    assert_eq!(get("i8"), V::I8(-2));
    assert_eq!(get("u16"), V::U16(60000));
    assert_eq!(get("i16"), V::I16(-3));
    assert_eq!(get("u32"), V::U32(4_000_000_000));
    assert_eq!(get("i32"), V::I32(-5));
    assert_eq!(get("f32"), V::F32(1.5));
    assert_eq!(get("bool"), V::Bool(true));
    assert_eq!(get("str"), V::Str("héllo".into()));
    let arr = |v: &[u32]| V::Array(v.iter().map(|&x| V::U32(x)).collect());
    assert_eq!(get("nested"), V::Array(vec![arr(&[1, 2]), arr(&[3])]));
    assert_eq!(get("u64"), V::U64(u64::MAX));
    assert_eq!(get("i64"), V::I64(-7));
    assert_eq!(get("f64"), V::F64(0.1));
    assert_eq!(get("strs"), V::Array(vec![V::Str("a".into()), V::Str(String::new())]));
    assert_eq!(get("i8").as_u64(), None);
    assert_eq!(get("i32").as_f64(), Some(-5.0));
    assert_eq!(f.metadata().count(), kvs.len());
}

//! Shared test helpers: fixtures written by tools/make_fixtures.py, GPU setup, comparisons.
#![allow(dead_code)]

pub mod cases;
#[cfg(not(target_arch = "wasm32"))]
pub mod mock_hub;

#[cfg(not(target_arch = "wasm32"))]
use lfm_wgpu::gpu::{Gpu, GpuOptions};
use std::path::{Path, PathBuf};
#[cfg(not(target_arch = "wasm32"))]
use std::sync::Arc;

pub const FIXTURES: [&str; 4] = ["tiny_a", "tiny_b", "tiny_c", "tiny_d"];

pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// The transformers outputs of one fixture (see tools/README.md).
pub struct Reference {
    pub prompt: Vec<u32>,
    /// [T, V]
    pub prefill_logits: Vec<f32>,
    /// [L+1, T, H]
    pub hidden_states: Vec<f32>,
    pub greedy: Vec<u32>,
    /// [32, V]
    pub step_logits: Vec<f32>,
    pub prefill_logits_f16w: Vec<f32>,
    pub greedy_f16w: Vec<u32>,
    pub step_logits_f16w: Vec<f32>,
}

pub fn reference(name: &str) -> Reference {
    reference_from(&std::fs::read(fixture_dir(name).join("reference.safetensors")).unwrap())
}

/// The transformers outputs in a `reference.safetensors` file's bytes.
pub fn reference_from(bytes: &[u8]) -> Reference {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let f32s = |n: &str| -> Vec<f32> {
        let t = st.tensor(n).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{n}");
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let ids = |n: &str| -> Vec<u32> {
        let t = st.tensor(n).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::I32, "{n}");
        t.data()
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u32)
            .collect()
    };
    Reference {
        prompt: ids("prompt_ids"),
        prefill_logits: f32s("prefill_logits"),
        hidden_states: f32s("hidden_states"),
        greedy: ids("greedy_ids"),
        step_logits: f32s("step_logits"),
        prefill_logits_f16w: f32s("prefill_logits_f16w"),
        greedy_f16w: ids("greedy_ids_f16w"),
        step_logits_f16w: f32s("step_logits_f16w"),
    }
}

/// A device on the test adapter. In CI (CI=true) a missing adapter fails the test; locally
/// too — the tests exist to run on a GPU, lavapipe counts as one.
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu(opts: GpuOptions) -> Arc<Gpu> {
    match Gpu::new(&opts) {
        Ok(g) => g,
        Err(e) => panic!("no usable GPU adapter ({e}); install mesa-vulkan-drivers for lavapipe"),
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub fn default_gpu() -> Arc<Gpu> {
    gpu(GpuOptions::default())
}

/// Max |a − b|, panicking with the first mismatches when it exceeds `tol`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut max = 0f32;
    let mut bad = Vec::new();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        if (d.is_nan() || d > tol) && bad.len() < 8 {
            bad.push(format!("  [{i}] got {g} want {w} (|Δ| {d})"));
        }
        if d.is_nan() {
            max = f32::INFINITY;
        } else {
            max = max.max(d);
        }
    }
    if !bad.is_empty() {
        panic!(
            "{what}: max |Δ| {max} > tol {tol}; first mismatches:\n{}",
            bad.join("\n")
        );
    }
    max
}

pub fn max_abs(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// A session over `src` loaded on the default adapter with weights as `dtype` and a context of
/// `ctx` tokens, on exact activations (other options default).
#[cfg(not(target_arch = "wasm32"))]
pub fn session(
    src: &dyn lfm_wgpu::model::weights::Source,
    dtype: lfm_wgpu::gpu::DType,
    ctx: usize,
) -> lfm_wgpu::model::session::Session {
    use lfm_wgpu::model::{gpu_weights::GpuModel, session};
    let model = Arc::new(GpuModel::load(default_gpu(), src, dtype).unwrap());
    session::Session::new(
        model,
        &session::SessionOptions {
            ctx,
            activations: session::Activations::Exact,
            ..Default::default()
        },
    )
    .unwrap()
}

/// One tensor of a safetensors file: (name, dtype, shape, bytes).
pub type Entry = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

pub fn read_entries(path: &Path) -> Vec<Entry> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect()
}

pub fn write_entries(path: &Path, entries: &[Entry]) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = entries
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

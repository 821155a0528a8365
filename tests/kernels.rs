//! Every kernel against the plain CPU ops of `lfm_wgpu::reference`, one dispatch sequence at a
//! time, on random data and on shapes that are not multiples of the workgroup sizes (matmul
//! tiles of 64 (dense) or 32 (experts) rows × 64 columns, matvec 8 rows per workgroup,
//! workgroups of 64/128/256), for every weight format (inner sizes rounded up by [`fit`] to
//! what the format holds), f32 and f16 KV caches, with and without subgroups and native f16,
//! and through the split-binding path. A helper given a shape its format cannot hold panics,
//! and a device that dispatched nothing fails its test (`Dev`'s drop check).
//!
//! Tolerances (see [`tol`]):
//! - f32 data: the GPU forms the same products as the CPU op but sums them in another order
//!   (tiles of 16, pairs, tree or subgroup reductions) and its exp / sqrt differ by a few ulp,
//!   so results differ by a few ulp of the largest partial sums: bound 1e-5 × max(1, max|want|).
//! - f16 weight storage: compared with the CPU op on the weights rounded to f16; f16 → f32 is
//!   exact on the GPU, so the products are the same and the same bound applies.
//! - f16 KV cache contents written by qk_rope: the GPU rounds its own f32 result (itself within
//!   the f32 bound of the CPU's) to f16, which can land on the neighbouring f16 value near a
//!   rounding boundary: one f16 ulp, ≤ 2⁻¹⁰ × max|want|, on top of the f32 bound. Attention is
//!   then checked against the CPU op run on the caches as read back, with the f32 bound taken
//!   relative to the scores' term sums (see `check_attention`).
//! - Exact (0) for copies and integer outputs: embed, route ids / offsets / rows, argmax.

mod common;

use common::*;
use half::f16;
use lfm_wgpu::gpu::{DType, Gpu, GpuMatrix, GpuOptions};
use lfm_wgpu::kernels::linear::LinearOp;
use lfm_wgpu::kernels::ops::{Recorder, Routing};
use lfm_wgpu::kernels::{Dim, Shape};
use lfm_wgpu::kernels::{Kernels, StepShape, Uniforms};
use lfm_wgpu::reference::{self as cpu, HostMatrix};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use wgpu::util::DeviceExt;

// ---------------------------------------------------------------------------------------
// Harness

/// Relative bound of f32 results (see the module comment).
const TOL_REL: f32 = 1e-5;

fn tol(want: &[f32]) -> f32 {
    TOL_REL * max_abs(want).max(1.0)
}

/// The feature sets every kernel runs under: the default (subgroups and native f16 where the
/// adapter has them, as lavapipe does), the fallbacks (workgroup-memory reductions, f16
/// unpacked from u32), and each feature alone; the last three with fewer output columns per
/// decode mat-vec workgroup (`LFM_MATVEC_ROWS`) than the default 8.
fn configs() -> Vec<(&'static str, GpuOptions)> {
    let opts = |no_subgroups, no_f16, rows| GpuOptions {
        no_subgroups,
        no_f16,
        matvec_rows: rows,
        ..Default::default()
    };
    vec![
        ("default", opts(false, false, None)),
        ("fallback, 2 rows", opts(true, true, Some(2))),
        ("no-f16, 4 rows", opts(false, true, Some(4))),
        ("no-subgroups, 1 row", opts(true, false, Some(1))),
    ]
}

/// One device with its kernels, step uniform and dummy binding.
struct Dev {
    name: String,
    gpu: Arc<Gpu>,
    k: Kernels,
    step: wgpu::Buffer,
    dummy: wgpu::Buffer,
    /// Dispatches run; a device that ran none means a test that checked nothing.
    dispatched: std::cell::Cell<usize>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(
                self.dispatched.get() > 0,
                "{}: no kernel was dispatched, so this test checked nothing",
                self.name
            );
        }
    }
}

#[derive(Clone, Copy)]
struct Step {
    n_tokens: u32,
    pos0: u32,
    splits: u32,
}

fn tokens(n: usize) -> Step {
    Step {
        n_tokens: n as u32,
        pos0: 0,
        splits: 1,
    }
}

impl Dev {
    /// A device under `opts` whose weight bindings are at most 8 KiB (the split path).
    fn split_8k(cname: &str, opts: GpuOptions) -> Dev {
        let opts = GpuOptions {
            max_binding_bytes: Some(8192),
            ..opts
        };
        Dev::new(&format!("{cname} split 8K"), opts)
    }

    fn new(name: &str, opts: GpuOptions) -> Dev {
        let gpu = gpu(opts);
        let caps = gpu.caps;
        let name = format!(
            "{name} (sg {}, f16 {}, {} rows)",
            caps.subgroups, caps.f16, gpu.matvec_rows
        );
        let step = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let dummy = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Dev {
            name,
            k: Kernels::new(gpu.clone()),
            gpu,
            step,
            dummy,
            dispatched: std::cell::Cell::new(0),
        }
    }

    /// A storage buffer holding `bytes` (padded to a multiple of 16, at least 16).
    fn storage(&self, bytes: &[u8]) -> wgpu::Buffer {
        let mut data = bytes.to_vec();
        data.resize(bytes.len().next_multiple_of(16).max(16), 0);
        self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("test data"),
            contents: &data,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    fn f32s(&self, v: &[f32]) -> wgpu::Buffer {
        self.storage(bytemuck::cast_slice(v))
    }

    fn u32s(&self, v: &[u32]) -> wgpu::Buffer {
        self.storage(bytemuck::cast_slice(v))
    }

    fn read_f32(&self, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
        self.gpu.read_f32(b, 0, n).unwrap()
    }

    fn read_u32(&self, b: &wgpu::Buffer, n: usize) -> Vec<u32> {
        bytemuck::cast_slice(&self.gpu.read(b, 0, n as u64 * 4).unwrap()).to_vec()
    }

    /// Records the ops `build` adds, runs them once for step `s` and waits for nothing (reads
    /// wait). Validation errors fail the test.
    fn run(&self, s: Step, kv: DType, build: impl FnOnce(&mut Recorder<'_>) -> lfm_wgpu::Result<()>) {
        let uniforms = Uniforms::new(&self.gpu, "params");
        self.gpu.queue.write_buffer(
            &self.step,
            0,
            bytemuck::cast_slice(&[s.n_tokens, s.pos0, s.splits, 0u32]),
        );
        let mut rec = Recorder::new(&self.k, &uniforms, &self.step, &self.dummy, kv);
        build(&mut rec).unwrap();
        let prog = rec.prog;
        assert!(
            !prog.dispatches.is_empty(),
            "{}: the op recorded no dispatch",
            self.name
        );
        self.dispatched.set(self.dispatched.get() + prog.dispatches.len());
        self.gpu
            .scoped("running the test program", || {
                let mut enc = self.gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("test"),
                        timestamp_writes: None,
                    });
                    prog.record(
                        &mut pass,
                        StepShape {
                            n_tokens: s.n_tokens,
                            splits: s.splits,
                        },
                    );
                }
                self.gpu.queue.submit([enc.finish()]);
                Ok(())
            })
            .unwrap();
    }
}

/// `k` rounded up to a row length `dtype` holds (8 for float formats, 32-blocks for
/// quantized ones), so every format runs every case at the nearest awkward size.
fn fit(dtype: DType, k: usize) -> usize {
    k.next_multiple_of(dtype.block().0.max(8))
}

/// A random [rows, cols] matrix stored as `dtype` on the GPU, and its values as the GPU reads
/// them. Formats the host converts to: uniform values in ±`a`, converted; the others (GGUF's):
/// random valid blocks of about that spread, decoded by `blocks::decode`.
fn weights(
    dev: &Dev,
    rng: &mut StdRng,
    label: &str,
    dtype: DType,
    dims: (usize, usize, usize),
    a: f32,
) -> (GpuMatrix, Vec<f32>) {
    let (rows, cols, _) = dims;
    if dtype.convertible() {
        let w = rand_vec(rng, rows * cols, -a, a);
        let m = GpuMatrix::from_f32(&dev.gpu, label, dims, dtype, &w).unwrap();
        return (m, stored(dtype, &w));
    }
    let blocks = rows * cols / dtype.block().0;
    let (q, s) = lfm_wgpu::blocks::random(dtype, blocks, a / 3f32.sqrt(), &mut || rng.random());
    let mut host = vec![0f32; rows * cols];
    lfm_wgpu::blocks::decode(dtype, &q, &s, &mut host);
    let (rq, rs) = lfm_wgpu::layout::stored_row_bytes(dtype, cols);
    let m = GpuMatrix::create_mixed(&dev.gpu, label, dims, &[(rows, dtype)], |w| {
        let mut row = 0;
        w.push_blocks(rows, |_, n, qo, so| {
            qo.copy_from_slice(&q[row * rq..(row + n) * rq]);
            so.copy_from_slice(&s[row * rs..(row + n) * rs]);
            row += n;
            Ok(())
        })
    })
    .unwrap();
    (m, host)
}

fn rand_vec(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// `v` as stored in `dtype` (what the GPU reads back as f32).
fn stored(dtype: DType, v: &[f32]) -> Vec<f32> {
    match dtype {
        DType::F32 => v.to_vec(),
        DType::F16 => v.iter().map(|&x| round_f16(x)).collect(),
        q => {
            // Quantize → dequantize with the host GGML math (itself checked bit-exact against
            // the gguf package in tests/quant.rs); rows are whole blocks, so one call serves.
            let fmt = q.quant().unwrap();
            let (mut quants, mut scales) = (Vec::new(), Vec::new());
            lfm_wgpu::quant::quantize_row(fmt, v, &mut quants, &mut scales).unwrap();
            let mut out = vec![0f32; v.len()];
            lfm_wgpu::quant::dequantize_row(fmt, &quants, &scales, &mut out).unwrap();
            out
        }
    }
}

fn host(rows: usize, cols: usize, data: &[f32]) -> HostMatrix {
    assert_eq!(data.len(), rows * cols);
    HostMatrix {
        rows,
        cols,
        data: data.to_vec(),
        block_rows: vec![],
    }
}

/// Rows `rows` of width `width` taken from a strided [.., ld] buffer.
fn unstride(v: &[f32], rows: usize, width: usize, ld: usize) -> Vec<f32> {
    (0..rows).flat_map(|r| v[r * ld..r * ld + width].to_vec()).collect()
}

/// Weight formats; quantized ones only where the inner dimension is whole 32-blocks.
const DTYPES: [DType; 4] = [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0];
/// KV-cache formats.
const KV_DTYPES: [DType; 2] = [DType::F32, DType::F16];

// ---------------------------------------------------------------------------------------
// linear: plain, BIAS, ACC, GLU, strides, both shapes

#[derive(Clone, Copy, Debug, Default)]
struct LinCase {
    m: usize,
    k: usize,
    n: usize,
    bias: bool,
    acc: bool,
    glu: bool,
    /// Extra values per x row / y row (ldx = k + padx, ldy = n + pady); x rows are read as
    /// vec4, so padx is a multiple of 4.
    padx: usize,
    pady: usize,
    /// Run over this many rows (`matvec_rows`) while the step has `m` tokens.
    rows: Option<u32>,
    /// RMSNorm of x fused in (decode only).
    norm: bool,
    /// Int8 activations: x (normed when `norm`) quantized by `quantize_x`, block formats
    /// through the integer-dot mat-vec (decode only).
    q8: bool,
}

/// Runs one linear op on `dev` and checks all of y (outside the written block y must keep its
/// initial values). Returns the number of weight chunks.
fn check_linear(dev: &Dev, rng: &mut StdRng, shape: Shape, dtype: DType, c: LinCase) -> usize {
    let (m, k, n) = (c.m, c.k, c.n);
    assert!(dtype.fits_cols(k), "{c:?}: {dtype} cannot hold rows of {k} (use fit())");
    let (ldx, ldy) = (k + c.padx, n + c.pady);
    let x = rand_vec(rng, m * ldx, -1.0, 1.0);
    let (gw, w) = weights(dev, rng, "w", dtype, (n, k, 1), 1.0);
    let up = c.glu.then(|| weights(dev, rng, "w_up", dtype, (n, k, 1), 1.0));
    let b = rand_vec(rng, n, -1.0, 1.0);
    let y0 = rand_vec(rng, m * ldy, -1.0, 1.0);
    let gu = up.as_ref().map(|u| &u.0);
    let g = rand_vec(rng, k, 0.5, 1.5);
    let eps = 1e-5;
    let (xb, yb, bb, gb) = (dev.f32s(&x), dev.f32s(&y0), dev.f32s(&b), dev.f32s(&g));
    let xqb = dev.storage(&vec![0u8; m * k / 32 * 48]);
    let norm = c.norm.then_some((&gb, eps));
    dev.run(tokens(m), DType::F32, |r| {
        if c.q8 {
            r.quantize_x("x.q8", &xb, k as u32, ldx as u32, norm, &xqb, Dim::Tokens)?;
        }
        let op = LinearOp {
            x: &xb,
            ldx: ldx as u32,
            w: &gw,
            w_up: gu,
            y: &yb,
            ldy: ldy as u32,
            bias: c.bias.then_some(&bb),
            acc: c.acc,
            moe: None,
            scale: false,
            norm,
            combine: false,
            x_q8: c.q8.then_some(&xqb),
        };
        match c.rows {
            Some(rows) => {
                assert_eq!(shape, Shape::Decode, "matvec_rows is a mat-vec");
                r.matvec_rows(&op, rows)
            }
            None => r.linear(shape, &op),
        }
    });
    let got = dev.read_f32(&yb, m * ldy);

    let rows = c.rows.map_or(m, |r| r as usize);
    let mut xs = unstride(&x, rows, k, ldx);
    if c.norm {
        xs = xs.chunks(k).flat_map(|row| cpu::rmsnorm(row, &g, eps)).collect();
    }
    if c.q8 {
        assert!(
            dtype.is_block() && shape == Shape::Decode,
            "{c:?}: int8 is a block-format mat-vec"
        );
        // The mat-vec is checked on what the GPU quantized, which is checked against the CPU.
        xs = checked_q8(dev, &xqb, &xs, k, !c.norm, &format!("{dtype} {c:?}"));
    }
    let plain_bias = (c.bias && !c.glu).then_some(&b[..]);
    let g = cpu::matmul(&xs, &host(n, k, &w), plain_bias);
    let u = up.as_ref().map(|(_, wu)| cpu::matmul(&xs, &host(n, k, wu), None));
    let mut want = y0.clone();
    for i in 0..rows {
        for j in 0..n {
            let mut v = g[i * n + j];
            if let Some(u) = &u {
                v = cpu::silu(v) * u[i * n + j];
                if c.bias {
                    v += b[j];
                }
            }
            let o = &mut want[i * ldy + j];
            *o = if c.acc { *o + v } else { v };
        }
    }
    let what = format!(
        "{} linear {shape:?} w={dtype} {c:?} chunks={}",
        dev.name,
        gw.chunks.len()
    );
    assert_close(&what, &got, &want, tol(&want));
    gw.chunks.len()
}

/// The int8 blocks `quantize_x` wrote for the rows `want` (k values each), checked against
/// `act_quant`: bit for bit when the GPU quantized exactly these values (`exact`), else (the
/// GPU normed them itself, to f32 rounding) each within half a step of the CPU's value. Returns
/// the values they stand for (s·q), the input the integer-dot mat-vec multiplies.
fn checked_q8(dev: &Dev, xq: &wgpu::Buffer, want: &[f32], k: usize, exact: bool, what: &str) -> Vec<f32> {
    use lfm_wgpu::act_quant::{quantize_row, to_words, BLOCK_WORDS};
    let rows = want.len() / k;
    let words = dev.read_u32(xq, rows * k / 32 * BLOCK_WORDS);
    let mut out = Vec::with_capacity(want.len());
    for (i, (row, got)) in want.chunks(k).zip(words.chunks(k / 32 * BLOCK_WORDS)).enumerate() {
        if exact {
            assert_eq!(
                got,
                to_words(&quantize_row(row)),
                "{what}: int8 row {i} differs from the CPU's"
            );
        }
        for (b, (blk, vals)) in got.chunks(BLOCK_WORDS).zip(row.chunks(32)).enumerate() {
            let s = f32::from_bits(blk[8]);
            let qs: Vec<i8> = blk[..8].iter().flat_map(|w| w.to_le_bytes().map(|b| b as i8)).collect();
            let sums = [&qs[..16], &qs[16..]].map(|h| h.iter().map(|&q| q as i32).sum::<i32>() as f32);
            assert_eq!(
                [f32::from_bits(blk[9]), f32::from_bits(blk[10])],
                sums,
                "{what}: sums of row {i} block {b}"
            );
            for (j, (&q, &v)) in qs.iter().zip(vals).enumerate() {
                let x = s * q as f32;
                assert!(
                    (x - v).abs() <= 0.5001 * s + 1e-6 * v.abs(),
                    "{what}: row {i} value {}: {x} stands for {v} (scale {s})",
                    32 * b + j
                );
                out.push(x);
            }
        }
    }
    out
}

/// Plain linear over the full grid of sizes, and every fused variant over a few.
fn linear_suite(shape: Shape) {
    let mut rng = StdRng::seed_from_u64(match shape {
        Shape::Prefill => 11,
        Shape::Decode => 12,
    });
    let fused = [
        LinCase {
            bias: true,
            ..Default::default()
        },
        LinCase {
            acc: true,
            ..Default::default()
        },
        LinCase {
            bias: true,
            acc: true,
            padx: 4,
            pady: 5,
            ..Default::default()
        },
        LinCase {
            glu: true,
            ..Default::default()
        },
        LinCase {
            glu: true,
            acc: true,
            padx: 8,
            pady: 1,
            ..Default::default()
        },
    ];
    let fused_sizes = [(1, 48, 37), (5, 128, 100), (33, 8, 3), (70, 64, 1), (70, 160, 37)];
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts);
        for dtype in DTYPES {
            for m in [1, 5, 33, 70] {
                for k in [8, 96, 136] {
                    for n in [1, 3, 37, 100] {
                        let c = LinCase {
                            m,
                            k: fit(dtype, k),
                            n,
                            ..Default::default()
                        };
                        check_linear(&dev, &mut rng, shape, dtype, c);
                    }
                }
            }
            let norms = [
                LinCase {
                    norm: true,
                    ..Default::default()
                },
                LinCase {
                    norm: true,
                    glu: true,
                    bias: true,
                    acc: true,
                    padx: 4,
                    ..Default::default()
                },
            ];
            let with_norm = match shape {
                Shape::Decode => &norms[..],
                Shape::Prefill => &[],
            };
            for &v in fused.iter().chain(with_norm) {
                for (m, k, n) in fused_sizes {
                    let k = fit(dtype, k);
                    check_linear(&dev, &mut rng, shape, dtype, LinCase { m, k, n, ..v });
                }
            }
        }
    }
}

#[test]
fn linear_prefill_matmul() {
    linear_suite(Shape::Prefill);
}

#[test]
fn linear_decode_matvec() {
    linear_suite(Shape::Decode);
}

/// `matvec_rows`: a fixed row count while the step has more tokens (the engine's prefill head
/// runs mat-vec on row 0 only); rows past it must keep their values.
#[test]
fn matvec_rows() {
    let shape = Shape::Decode;
    let mut rng = StdRng::seed_from_u64(13);
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts);
        for dtype in DTYPES {
            // Inner sizes 46 and 130 become 48 / 136 (float) or 64 / 160 (quantized).
            for (m, k, n, rows) in [(5, 46, 37, 1), (70, 130, 3, 1), (70, 46, 100, 33)] {
                let c = LinCase {
                    m,
                    k: fit(dtype, k),
                    n,
                    rows: Some(rows),
                    ..Default::default()
                };
                check_linear(&dev, &mut rng, shape, dtype, c);
            }
        }
    }
}

/// The formats read from GGUF as they are (BF16, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K), on random
/// valid blocks: the linear variants the engine uses at both shapes, GATHER over experts, the
/// embedding gather, and matrices split across bindings. Fewer sizes than the suites above run
/// for the formats the host converts to: the kernels are shared, only the snippet differs.
#[test]
fn gguf_formats() {
    let mut rng = StdRng::seed_from_u64(61);
    let formats: Vec<DType> = DType::ALL.into_iter().filter(|d| !d.convertible()).collect();
    let variants = [
        LinCase::default(),
        LinCase {
            bias: true,
            acc: true,
            padx: 4,
            pady: 3,
            ..Default::default()
        },
        LinCase {
            glu: true,
            ..Default::default()
        },
    ];
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts.clone());
        let split = Dev::split_8k(cname, opts);
        for &dtype in &formats {
            for shape in [Shape::Prefill, Shape::Decode] {
                for (m, k, n) in [(1, 40, 37), (33, 300, 3), (70, 256, 100)] {
                    let k = fit(dtype, k);
                    for v in variants {
                        check_linear(&dev, &mut rng, shape, dtype, LinCase { m, k, n, ..v });
                    }
                    if shape == Shape::Decode {
                        let v = LinCase {
                            norm: true,
                            glu: true,
                            ..Default::default()
                        };
                        check_linear(&dev, &mut rng, shape, dtype, LinCase { m, k, n, ..v });
                    }
                }
                for c in moe_pair(5, 3, 6, fit(dtype, 64), fit(dtype, 40)) {
                    check_moe(&dev, &mut rng, shape, dtype, c);
                }
                let c = LinCase {
                    m: 5,
                    k: fit(dtype, 512),
                    n: 100,
                    glu: true,
                    ..Default::default()
                };
                assert!(
                    check_linear(&split, &mut rng, shape, dtype, c) > 1,
                    "{dtype}: not split"
                );
                let [gate, _] = moe_pair(5, 2, 8, fit(dtype, 256), 16);
                assert!(
                    check_moe(&split, &mut rng, shape, dtype, gate) > 1,
                    "{dtype}: experts not split"
                );
            }
            check_embed(&dev, &mut rng, dtype, 65, fit(dtype, 192), 33);
            assert!(check_embed(&split, &mut rng, dtype, 300, fit(dtype, 64), 70) > 1);
        }
    }
}

/// The integer-dot mat-vec on int8 activations (`quantize_x` → `matvec_q8`) for every block
/// format: its activations bit-exact with `act_quant` (within half a step where the GPU
/// normed them), and y equal to the CPU op on those activations to f32 rounding, for the
/// variants decode uses — dense (plain, BIAS + ACC with strides, GLU, the fused norm with GLU,
/// the head: norm over many rows), routed experts (GLU over tokens, SCALE over pairs, COMBINE)
/// — on awkward shapes, under every feature set, and split across bindings.
#[test]
fn int8_matvec() {
    let mut rng = StdRng::seed_from_u64(71);
    let formats: Vec<DType> = DType::ALL.into_iter().filter(|d| d.is_block()).collect();
    let q8 = |c: LinCase| LinCase { q8: true, ..c };
    let variants = [
        q8(LinCase::default()),
        q8(LinCase {
            bias: true,
            acc: true,
            padx: 4,
            pady: 3,
            ..Default::default()
        }),
        q8(LinCase {
            glu: true,
            ..Default::default()
        }),
        q8(LinCase {
            norm: true,
            glu: true,
            padx: 8,
            ..Default::default()
        }),
        q8(LinCase {
            norm: true,
            bias: true,
            acc: true,
            ..Default::default()
        }),
    ];
    let shape = Shape::Decode;
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts.clone());
        let split = Dev::split_8k(cname, opts);
        for &dtype in &formats {
            for (m, k, n) in [(1, 40, 37), (3, 300, 9), (1, 256, 100)] {
                let k = fit(dtype, k);
                for v in variants {
                    check_linear(&dev, &mut rng, shape, dtype, LinCase { m, k, n, ..v });
                }
            }
            // The head: the final norm fused into many rows.
            let head = q8(LinCase {
                m: 1,
                k: fit(dtype, 96),
                n: 1000,
                norm: true,
                ..Default::default()
            });
            check_linear(&dev, &mut rng, shape, dtype, head);
            for (t, topk, e, h, im) in [(1, 4, 8, 64, 40), (3, 2, 5, 300, 24)] {
                for c in moe_pair(t, topk, e, fit(dtype, h), fit(dtype, im)) {
                    let c = MoeCase { q8: true, ..c };
                    check_moe(&dev, &mut rng, shape, dtype, c);
                    if let Some(c) = c.combined(shape) {
                        check_moe(&dev, &mut rng, shape, dtype, c);
                    }
                }
            }
            let c = q8(LinCase {
                m: 1,
                k: fit(dtype, 512),
                n: 100,
                glu: true,
                norm: true,
                ..Default::default()
            });
            assert!(
                check_linear(&split, &mut rng, shape, dtype, c) > 1,
                "{dtype}: not split"
            );
            let [gate, _] = moe_pair(1, 2, 8, fit(dtype, 256), 16);
            let [_, down] = moe_pair(1, 2, 64, 8, fit(dtype, 32));
            for c in [gate, down.combined(shape).expect("decode down")] {
                let c = MoeCase { q8: true, ..c };
                assert!(
                    check_moe(&split, &mut rng, shape, dtype, c) > 1,
                    "{dtype}: experts not split"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// linear GATHER over routed experts

#[derive(Clone, Copy, Debug)]
struct MoeCase {
    t: usize,
    topk: usize,
    experts: usize,
    /// Inner dimension (W cols).
    k: usize,
    /// W rows per expert (output columns).
    n: usize,
    glu: bool,
    scale: bool,
    /// x row = pair / xdiv: topk for gate/up (x rows are tokens), 1 for down (pairs).
    xdiv: usize,
    /// Decode down projection summing each token's pairs into y row t (with ACC).
    combine: bool,
    /// Int8 activations (see `LinCase::q8`).
    q8: bool,
}

impl MoeCase {
    /// The same case with the pairs summed per token, when the case can be (decode, no GLU).
    fn combined(self, shape: Shape) -> Option<MoeCase> {
        (shape == Shape::Decode && !self.glu).then_some(MoeCase { combine: true, ..self })
    }
}

/// Routing buffers filled on the host: distinct experts per token (as top-k gives), random
/// weights, and the per-expert pair lists in a shuffled order within each expert.
struct HostRouting {
    ids: Vec<u32>,
    weights: Vec<f32>,
    offsets: Vec<u32>,
    rows: Vec<u32>,
}

fn host_routing(rng: &mut StdRng, t: usize, topk: usize, experts: usize) -> HostRouting {
    let mut ids = Vec::with_capacity(t * topk);
    for _ in 0..t {
        let mut all: Vec<u32> = (0..experts as u32).collect();
        all.shuffle(rng);
        ids.extend_from_slice(&all[..topk]);
    }
    let weights = rand_vec(rng, t * topk, 0.05, 1.0);
    let mut offsets = vec![0u32; experts + 1];
    let mut rows = Vec::with_capacity(t * topk);
    for e in 0..experts {
        let mut mine: Vec<u32> = (0..ids.len() as u32).filter(|&p| ids[p as usize] == e as u32).collect();
        mine.shuffle(rng);
        rows.extend(mine);
        offsets[e + 1] = rows.len() as u32;
    }
    HostRouting {
        ids,
        weights,
        offsets,
        rows,
    }
}

/// Runs one GATHER linear and checks y against a CPU loop over the (token, slot) pairs.
/// Returns the number of weight chunks.
fn check_moe(dev: &Dev, rng: &mut StdRng, shape: Shape, dtype: DType, c: MoeCase) -> usize {
    assert!(
        dtype.fits_cols(c.k),
        "{c:?}: {dtype} cannot hold rows of {} (use fit())",
        c.k
    );
    let pairs = c.t * c.topk;
    let x_rows = pairs / c.xdiv;
    let x = rand_vec(rng, x_rows * c.k, -1.0, 1.0);
    let dims = (c.experts * c.n, c.k, c.n);
    let (gw, ws) = weights(dev, rng, "experts.gate", dtype, dims, 1.0);
    let up = c.glu.then(|| weights(dev, rng, "experts.up", dtype, dims, 1.0));
    let gu = up.as_ref().map(|u| &u.0);
    let y_rows = if c.combine { c.t } else { pairs };
    let y0 = rand_vec(rng, y_rows * c.n, -1.0, 1.0);
    let hr = host_routing(rng, c.t, c.topk, c.experts);
    let (xb, yb) = (dev.f32s(&x), dev.f32s(&y0));
    let xqb = dev.storage(&vec![0u8; x_rows * c.k / 32 * 48]);
    let (ib, wb, ob, rb) = (
        dev.u32s(&hr.ids),
        dev.f32s(&hr.weights),
        dev.u32s(&hr.offsets),
        dev.u32s(&hr.rows),
    );
    let routing = Routing {
        ids: &ib,
        weights: &wb,
        offsets: &ob,
        rows: &rb,
        topk: c.topk as u32,
    };
    dev.run(tokens(c.t), DType::F32, |r| {
        if c.q8 {
            let (k, rows) = (c.k as u32, Dim::Fixed(x_rows as u32));
            r.quantize_x("x.q8", &xb, k, k, None, &xqb, rows)?;
        }
        r.linear(
            shape,
            &LinearOp {
                x: &xb,
                ldx: c.k as u32,
                w: &gw,
                w_up: gu,
                y: &yb,
                ldy: c.n as u32,
                bias: None,
                acc: c.combine,
                moe: Some((&routing, c.xdiv as u32)),
                scale: c.scale,
                norm: None,
                combine: c.combine,
                x_q8: c.q8.then_some(&xqb),
            },
        )
    });
    let got = dev.read_f32(&yb, y_rows * c.n);
    let x = match c.q8 {
        true => checked_q8(dev, &xqb, &x, c.k, true, &format!("{dtype} {c:?}")),
        false => x,
    };

    let expert = |m: &[f32], e: usize| host(c.n, c.k, &m[e * c.n * c.k..(e + 1) * c.n * c.k]);
    let mut want = match c.combine {
        true => y0.clone(),
        false => vec![0f32; pairs * c.n],
    };
    for p in 0..pairs {
        let e = hr.ids[p] as usize;
        let xr = &x[(p / c.xdiv) * c.k..][..c.k];
        let g = cpu::matmul(xr, &expert(&ws, e), None);
        let u = up.as_ref().map(|(_, wus)| cpu::matmul(xr, &expert(wus, e), None));
        for j in 0..c.n {
            let mut v = g[j];
            if let Some(u) = &u {
                v = cpu::silu(v) * u[j];
            }
            if c.scale {
                v *= hr.weights[p];
            }
            match c.combine {
                true => want[(p / c.topk) * c.n + j] += v,
                false => want[p * c.n + j] = v,
            }
        }
    }
    let what = format!("{} moe {shape:?} w={dtype} {c:?} chunks={}", dev.name, gw.chunks.len());
    assert_close(&what, &got, &want, tol(&want));
    gw.chunks.len()
}

/// gate/up (GLU, x rows are tokens) and down (SCALE, x rows are pairs) per routing shape.
fn moe_pair(t: usize, topk: usize, experts: usize, h: usize, im: usize) -> [MoeCase; 2] {
    [
        MoeCase {
            t,
            topk,
            experts,
            k: h,
            n: im,
            glu: true,
            scale: false,
            xdiv: topk,
            combine: false,
            q8: false,
        },
        MoeCase {
            t,
            topk,
            experts,
            k: im,
            n: h,
            glu: false,
            scale: true,
            xdiv: 1,
            combine: false,
            q8: false,
        },
    ]
}

#[test]
fn linear_moe_gather() {
    let mut rng = StdRng::seed_from_u64(21);
    let mut cases = Vec::new();
    // (T, topk, E, H, I): decode-like; many empty experts; > 32 pairs per expert (several
    // row tiles); tiny inner dimension.
    for (t, topk, e, h, im) in [
        (1, 2, 4, 64, 40),
        (5, 3, 16, 128, 24),
        (70, 2, 3, 96, 32),
        (33, 4, 8, 8, 8),
    ] {
        cases.extend(moe_pair(t, topk, e, h, im));
    }
    // Plain gather with x rows per token and routing weights.
    cases.push(MoeCase {
        t: 9,
        topk: 2,
        experts: 5,
        k: 48,
        n: 5,
        glu: false,
        scale: true,
        xdiv: 2,
        combine: false,
        q8: false,
    });
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts);
        for dtype in DTYPES {
            for shape in [Shape::Prefill, Shape::Decode] {
                for &c in &cases {
                    let c = MoeCase {
                        k: fit(dtype, c.k),
                        ..c
                    };
                    check_moe(&dev, &mut rng, shape, dtype, c);
                    if let Some(c) = c.combined(shape) {
                        check_moe(&dev, &mut rng, shape, dtype, c);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The split path: weight matrices cut into several bindings

#[test]
fn split_bindings() {
    let mut rng = StdRng::seed_from_u64(31);
    for (cname, opts) in configs() {
        let dev = Dev::split_8k(cname, opts);
        for dtype in DTYPES {
            for shape in [Shape::Prefill, Shape::Decode] {
                // 100×128 and 37×64 take several 8 KiB chunks in every format.
                for (m, k, n, glu) in [(5, 128, 100, false), (33, 128, 100, true), (70, 64, 37, false)] {
                    let c = LinCase {
                        m,
                        k,
                        n,
                        glu,
                        bias: !glu,
                        acc: true,
                        ..Default::default()
                    };
                    let chunks = check_linear(&dev, &mut rng, shape, dtype, c);
                    if dtype.layout(n, k).0 > 8192 {
                        assert!(chunks > 1, "{}: {c:?} was not split", dev.name);
                    }
                }
                // Stacked experts of 64×32 / 32×64 weights: 8 KiB each in f32 (one per chunk),
                // 2 per chunk in f16, 3 in q8_0, 7 in q4_0; 48×40 / 40×48 (not quantizable).
                for (t, topk, e, h, im) in [(5, 3, 8, 64, 32), (40, 2, 6, 48, 40)] {
                    for c in moe_pair(t, topk, e, h, im) {
                        let c = MoeCase {
                            k: fit(dtype, c.k),
                            ..c
                        };
                        for c in std::iter::once(c).chain(c.combined(shape)) {
                            let chunks = check_moe(&dev, &mut rng, shape, dtype, c);
                            if dtype.layout(c.experts * c.n, c.k).0 > 8192 {
                                assert!(chunks > 1, "{}: {c:?} was not split", dev.name);
                            }
                        }
                    }
                }
            }
            // Embedding table of 300 rows × 64: 32 (f32) … 227 (q4_0) rows per chunk.
            let chunks = check_embed(&dev, &mut rng, dtype, 300, 64, 70);
            assert!(chunks > 1, "{}: embedding table was not split", dev.name);
        }
    }
}

// ---------------------------------------------------------------------------------------
// embed

/// Gathers `t` rows (including the first, the last and random ones) of a [vocab, h] table.
fn check_embed(dev: &Dev, rng: &mut StdRng, dtype: DType, vocab: usize, h: usize, t: usize) -> usize {
    assert!(dtype.fits_cols(h), "{dtype} cannot hold rows of {h} (use fit())");
    let (gt, table) = weights(dev, rng, "embed", dtype, (vocab, h, 1), 2.0);
    let mut ids: Vec<u32> = (0..t).map(|_| rng.random_range(0..vocab as u32)).collect();
    ids[0] = 0;
    ids[t - 1] = vocab as u32 - 1;
    // The first and last row of every chunk.
    let edges = gt.chunks.iter().flat_map(|c| [c.row0, c.row0 + c.rows - 1]);
    for (i, e) in (1..t - 1).zip(edges) {
        ids[i] = e;
    }
    let (ib, ob) = (dev.u32s(&ids), dev.f32s(&vec![f32::NAN; t * h]));
    dev.run(tokens(t), DType::F32, |r| r.embed(&ib, &gt, &ob));
    let got = dev.read_f32(&ob, t * h);
    let rounded = host(vocab, h, &table);
    let want: Vec<f32> = ids.iter().flat_map(|&i| rounded.row(i as usize).to_vec()).collect();
    let what = format!(
        "{} embed w={dtype} V={vocab} H={h} T={t} chunks={}",
        dev.name,
        gt.chunks.len()
    );
    // A copy: exact.
    assert_close(&what, &got, &want, 0.0);
    gt.chunks.len()
}

#[test]
fn embed() {
    let mut rng = StdRng::seed_from_u64(41);
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts);
        for dtype in DTYPES {
            for (vocab, h, t) in [(1, 8, 1), (7, 48, 5), (300, 128, 70), (65, 192, 33)] {
                check_embed(&dev, &mut rng, dtype, vocab, fit(dtype, h), t);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// rmsnorm

#[test]
fn rmsnorm() {
    let mut rng = StdRng::seed_from_u64(51);
    let eps = 1e-5;
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts);
        for (rows, n) in [(1, 1), (1, 2), (3, 45), (5, 130), (70, 300), (2, 1000), (4, 128)] {
            for last_only in [false, true] {
                let scale = rng.random_range(0.01..10.0);
                let x = rand_vec(&mut rng, rows * n, -scale, scale);
                let w = rand_vec(&mut rng, n, 0.5, 1.5);
                let y0 = rand_vec(&mut rng, rows * n, -1.0, 1.0);
                let (xb, wb, yb) = (dev.f32s(&x), dev.f32s(&w), dev.f32s(&y0));
                dev.run(tokens(rows), DType::F32, |r| {
                    r.rmsnorm("norm", &xb, &wb, &yb, n, eps, last_only)
                });
                let got = dev.read_f32(&yb, rows * n);
                let want = if last_only {
                    // Row T−1 normed into row 0; the other rows untouched.
                    let mut want = y0.clone();
                    want[..n].copy_from_slice(&cpu::rmsnorm(&x[(rows - 1) * n..], &w, eps));
                    want
                } else {
                    cpu::rmsnorm(&x, &w, eps)
                };
                let what = format!("{} rmsnorm rows={rows} n={n} last_only={last_only}", dev.name);
                assert_close(&what, &got, &want, tol(&want));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// short_conv

#[test]
fn short_conv() {
    let mut rng = StdRng::seed_from_u64(61);
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts);
        for h in [1, 46, 70, 130] {
            for k in [2, 3, 4] {
                for has_bias in [false, true] {
                    let taps = rand_vec(&mut rng, h * k, -1.0, 1.0);
                    let bias = rand_vec(&mut rng, h, -1.0, 1.0);
                    // Continue from a non-zero state.
                    let mut state = rand_vec(&mut rng, (k - 1) * h, -1.0, 1.0);
                    let (tb, bb, sb) = (dev.f32s(&taps), dev.f32s(&bias), dev.f32s(&state));
                    // A prompt chunk, a decode step, another chunk.
                    for (call, t) in [5, 1, 3, 70].into_iter().enumerate() {
                        let z = rand_vec(&mut rng, t * 3 * h, -1.5, 1.5);
                        let (zb, yb) = (dev.f32s(&z), dev.f32s(&vec![f32::NAN; t * h]));
                        dev.run(tokens(t), DType::F32, |r| {
                            r.short_conv("conv", &zb, &tb, has_bias.then_some(&bb), &sb, &yb, h, k)
                        });
                        let want = cpu::short_conv(&z, &taps, has_bias.then_some(&bias[..]), &mut state, h);
                        let what = format!("{} short_conv H={h} K={k} bias={has_bias} call {call} T={t}", dev.name);
                        let got = dev.read_f32(&yb, t * h);
                        assert_close(&format!("{what}: y"), &got, &want, tol(&want));
                        let got = dev.read_f32(&sb, (k - 1) * h);
                        // The state is a copy of B⊙x products: exact up to the product's rounding.
                        assert_close(&format!("{what}: state"), &got, &state, tol(&state));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// qk_rope + attention (+ merge)

#[derive(Clone, Copy, Debug)]
struct AttnCase {
    nh: usize,
    nkv: usize,
    d: usize,
    pos0: usize,
    t: usize,
    splits: u32,
    /// Norm weights of 4–8 instead of 0.5–1.5: scores in the hundreds, where a wrong running
    /// max in the online softmax overflows exp.
    sharp: bool,
    /// Through the query-tiled prefill kernel instead of the split one.
    prefill: bool,
}

fn kv_bytes(kv: DType, v: &[f32]) -> Vec<u8> {
    match kv {
        DType::F32 => bytemuck::cast_slice(v).to_vec(),
        DType::F16 => v.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect(),
        q => panic!("no {q} KV cache"),
    }
}

fn read_kv(dev: &Dev, b: &wgpu::Buffer, kv: DType, n: usize) -> Vec<f32> {
    match kv {
        DType::F32 => dev.read_f32(b, n),
        DType::F16 => {
            let bytes = dev.gpu.read(b, 0, (n as u64 * 2).next_multiple_of(4)).unwrap();
            bytes[..n * 2]
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect()
        }
        q => panic!("no {q} KV cache"),
    }
}

/// cos/sin tables of positions 0..ctx (NeoX RoPE, θ = 10⁴), as (cos, sin) per position.
fn rope_tables(ctx: usize, d: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
    (0..ctx)
        .map(|pos| {
            (0..d / 2)
                .map(|i| {
                    let a = pos as f64 * 10000f64.powf(-((2 * i) as f64) / d as f64);
                    (a.cos() as f32, a.sin() as f32)
                })
                .unzip()
        })
        .collect()
}

fn check_attention(dev: &Dev, rng: &mut StdRng, kv: DType, c: AttnCase) {
    let AttnCase {
        nh,
        nkv,
        d,
        pos0,
        t,
        splits,
        sharp,
        ..
    } = c;
    let eps = 1e-5;
    let what = format!("{} attention kv={kv} {c:?}", dev.name);
    let ld = (nh + 2 * nkv) * d;
    let end = pos0 + t;
    // Two spare positions past the end, to catch writes and reads beyond it.
    let ctx = end + 2;
    let row = nkv * d;
    let qkv = rand_vec(rng, t * ld, -2.0, 2.0);
    let (lo, hi) = if sharp { (4.0, 8.0) } else { (0.5, 1.5) };
    let q_norm = rand_vec(rng, d, lo, hi);
    let k_norm = rand_vec(rng, d, lo, hi);
    let tables = rope_tables(ctx, d);
    let rope_flat: Vec<f32> = tables
        .iter()
        .flat_map(|(cos, sin)| cos.iter().zip(sin).flat_map(|(&c, &s)| [c, s]))
        .collect();
    // The cache holds earlier positions; the rest is NaN (must be written before being read).
    let mut k0 = vec![f32::NAN; ctx * row];
    let mut v0 = vec![f32::NAN; ctx * row];
    for x in k0[..pos0 * row].iter_mut().chain(&mut v0[..pos0 * row]) {
        *x = round_f16(rng.random_range(-1.5..1.5));
    }
    let (qkvb, qnb, knb, ropeb) = (
        dev.f32s(&qkv),
        dev.f32s(&q_norm),
        dev.f32s(&k_norm),
        dev.f32s(&rope_flat),
    );
    let (kb, vb) = (dev.storage(&kv_bytes(kv, &k0)), dev.storage(&kv_bytes(kv, &v0)));
    let qb = dev.f32s(&vec![f32::NAN; t * nh * d]);
    let partb = dev.f32s(&vec![f32::NAN; t * nh * splits as usize * (d + 2)]);
    let ob = dev.f32s(&vec![f32::NAN; t * nh * d]);
    let step = Step {
        n_tokens: t as u32,
        pos0: pos0 as u32,
        splits,
    };
    dev.run(step, kv, |r| {
        r.qk_rope("qk_rope", &qkvb, &qnb, &knb, &ropeb, &qb, (&kb, &vb), (nh, nkv, d), eps)?;
        let shape = if c.prefill { Shape::Prefill } else { Shape::Decode };
        r.attention(shape, "attn", &qb, (&kb, &vb), &partb, &ob, (nh, nkv, d))
    });

    // qk_rope: per-head norm + RoPE of q and k, raw v.
    let (mut want_q, mut want_k, mut want_v) = (vec![], vec![], vec![]);
    for ti in 0..t {
        let zr = &qkv[ti * ld..(ti + 1) * ld];
        let (cos, sin) = &tables[pos0 + ti];
        let mut q = cpu::rmsnorm(&zr[..nh * d], &q_norm, eps);
        let mut k = cpu::rmsnorm(&zr[nh * d..(nh + nkv) * d], &k_norm, eps);
        q.chunks_mut(d).for_each(|x| cpu::rope(x, cos, sin));
        k.chunks_mut(d).for_each(|x| cpu::rope(x, cos, sin));
        want_q.extend(q);
        want_k.extend(k);
        want_v.extend_from_slice(&zr[(nh + nkv) * d..]);
    }
    let q = dev.read_f32(&qb, t * nh * d);
    assert_close(&format!("{what}: q"), &q, &want_q, tol(&want_q));
    let kc = read_kv(dev, &kb, kv, ctx * row);
    let vc = read_kv(dev, &vb, kv, ctx * row);
    for (name, cache, init, want) in [("k", &kc, &k0, &want_k), ("v", &vc, &v0, &want_v)] {
        let written = &cache[pos0 * row..end * row];
        let bound = match kv {
            DType::F32 => tol(want),
            // One f16 ulp of rounding-boundary disagreement (module comment).
            DType::F16 => tol(want) + max_abs(want) / 1024.0,
            q => panic!("no {q} KV cache"),
        };
        assert_close(&format!("{what}: {name} cache"), written, &stored(kv, want), bound);
        assert_close(
            &format!("{what}: {name} cache before pos0"),
            &cache[..pos0 * row],
            &init[..pos0 * row],
            0.0,
        );
        assert!(
            cache[end * row..].iter().all(|v| v.is_nan()),
            "{what}: {name} cache written past pos0 + T"
        );
    }
    // attention + merge, on the caches and queries as the GPU holds them. A score's rounding
    // error is relative to the sum of its terms' magnitudes, S = Σ|q·k|/√d, and moves the
    // output by that much times |v|: bound 1e-5 × max(1, max|v|) × max(1, max S).
    let want = cpu::attention(&q, &kc[..end * row], &vc[..end * row], nh, nkv, d, pos0);
    let got = dev.read_f32(&ob, t * nh * d);
    let mut s_max = 0f32;
    for ti in 0..t {
        for hh in 0..nh {
            let qh = &q[(ti * nh + hh) * d..][..d];
            let g = hh / (nh / nkv);
            for j in 0..=pos0 + ti {
                let kh = &kc[(j * nkv + g) * d..][..d];
                let s: f32 = qh.iter().zip(kh).map(|(a, b)| (a * b).abs()).sum();
                s_max = s_max.max(s / (d as f32).sqrt());
            }
        }
    }
    let bound = TOL_REL * max_abs(&vc[..end * row]).max(1.0) * s_max.max(1.0);
    assert_close(&format!("{what}: o"), &got, &want, bound);
}

#[test]
fn qk_rope_attention() {
    let mut rng = StdRng::seed_from_u64(71);
    let mut cases = vec![];
    let case = |(nh, nkv, d), pos0, t, splits| AttnCase {
        nh,
        nkv,
        d,
        pos0,
        t,
        splits,
        sharp: false,
        prefill: false,
    };
    // Prefill (causal, T > 1), from 0 and after a pre-filled cache; T = 70 > 64 keys per block.
    cases.push(case((2, 1, 8), 0, 7, 1));
    cases.push(case((4, 2, 16), 20, 5, 1));
    cases.push(case((3, 3, 64), 10, 70, 1));
    cases.push(case((4, 1, 128), 90, 3, 1));
    cases.push(case((8, 2, 256), 3, 2, 1));
    // T > 1 split along the KV length (the kernels allow it; the engine uses it for T = 1).
    cases.push(case((6, 3, 64), 30, 4, 3));
    cases.push(case((8, 2, 256), 70, 1, 5));
    // Large scores, prefill and decode.
    for (heads, pos0, t, splits) in [
        ((4, 1, 128), 100, 3, 1),
        ((4, 2, 64), 200, 1, 3),
        ((2, 2, 128), 90, 1, 1),
    ] {
        cases.push(AttnCase {
            sharp: true,
            ..case(heads, pos0, t, splits)
        });
    }
    // Decode: T = 1 with 1, 3, 7 splits, including splits left empty (pos0 = 0, 5).
    for heads in [(2, 1, 8), (4, 2, 16), (6, 2, 64), (4, 1, 128)] {
        for pos0 in [0, 5, 150, 600] {
            for splits in [1, 3, 7] {
                cases.push(case(heads, pos0, 1, splits));
            }
        }
    }
    // Every unsplit case also through the query-tiled prefill kernel (T = 1 included).
    let tiled: Vec<AttnCase> = cases
        .iter()
        .filter(|c| c.splits == 1)
        .map(|&c| AttnCase { prefill: true, ..c })
        .collect();
    cases.extend(tiled);
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts);
        for kv in KV_DTYPES {
            for &c in &cases {
                check_attention(&dev, &mut rng, kv, c);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// route (+ grouping by expert), moe_combine

#[derive(Clone, Copy, Debug)]
struct RouteCase {
    t: usize,
    experts: usize,
    topk: usize,
    bias: bool,
    norm: bool,
    scale: f32,
    /// Logits (and bias) from a few values, so that scores tie exactly.
    ties: bool,
}

/// Logits of one token whose distinct biased scores are at least 1e-5 apart, so that the
/// top-k does not hinge on the last ulp of sigmoid (exact ties are allowed: lower id wins).
fn router_logits(rng: &mut StdRng, c: &RouteCase, bias: &[f32]) -> Vec<f32> {
    loop {
        let l: Vec<f32> = (0..c.experts)
            .map(|_| match c.ties {
                true => [-1.0, -0.5, 0.0, 0.5, 1.0][rng.random_range(0..5)],
                false => rng.random_range(-4.0..4.0),
            })
            .collect();
        let mut s: Vec<f32> = l.iter().zip(bias).map(|(&x, &b)| cpu::sigmoid(x) + b).collect();
        s.sort_by(f32::total_cmp);
        if s.windows(2).all(|w| w[0] == w[1] || w[1] - w[0] > 1e-5) {
            return l;
        }
    }
}

fn check_route(dev: &Dev, rng: &mut StdRng, shape: Shape, c: RouteCase) {
    let what = format!("{} route {shape:?} {c:?}", dev.name);
    let bias: Vec<f32> = (0..c.experts)
        .map(|_| match (c.bias, c.ties) {
            (false, _) => 0.0,
            (true, true) => [0.0, 0.25][rng.random_range(0..2)],
            (true, false) => rng.random_range(-0.3..0.3),
        })
        .collect();
    let logits: Vec<f32> = (0..c.t).flat_map(|_| router_logits(rng, &c, &bias)).collect();
    let pairs = c.t * c.topk;
    let (lb, bb) = (dev.f32s(&logits), dev.f32s(&bias));
    let (ib, wb) = (dev.u32s(&vec![u32::MAX; pairs]), dev.f32s(&vec![f32::NAN; pairs]));
    let (ob, rb) = (
        dev.u32s(&vec![u32::MAX; c.experts + 1]),
        dev.u32s(&vec![u32::MAX; pairs]),
    );
    let routing = Routing {
        ids: &ib,
        weights: &wb,
        offsets: &ob,
        rows: &rb,
        topk: c.topk as u32,
    };
    dev.run(tokens(c.t), DType::F32, |r| {
        r.route(
            shape,
            "router",
            &lb,
            c.bias.then_some(&bb),
            &routing,
            c.experts,
            c.norm,
            c.scale,
        )
    });
    let (mut want_ids, mut want_w) = (vec![], vec![]);
    for t in 0..c.t {
        let l = &logits[t * c.experts..(t + 1) * c.experts];
        let (ids, w) = cpu::route(l, c.bias.then_some(&bias[..]), c.topk, c.norm, c.scale);
        want_ids.extend(ids);
        want_w.extend(w);
    }
    let ids = dev.read_u32(&ib, pairs);
    assert_eq!(ids, want_ids, "{what}: expert ids");
    let w = dev.read_f32(&wb, pairs);
    assert_close(&format!("{what}: weights"), &w, &want_w, tol(&want_w));
    if shape == Shape::Prefill {
        // Offsets: exclusive prefix sums of the per-expert counts; rows: each expert's pairs
        // (in any order: they are appended with atomics).
        let off = dev.read_u32(&ob, c.experts + 1);
        let rows = dev.read_u32(&rb, pairs);
        let mut want_off = vec![0u32];
        for e in 0..c.experts as u32 {
            let n = want_ids.iter().filter(|&&i| i == e).count() as u32;
            want_off.push(want_off[e as usize] + n);
        }
        assert_eq!(off, want_off, "{what}: offsets");
        for e in 0..c.experts {
            let mut got: Vec<u32> = rows[off[e] as usize..off[e + 1] as usize].to_vec();
            got.sort();
            let want: Vec<u32> = (0..pairs as u32)
                .filter(|&p| want_ids[p as usize] == e as u32)
                .collect();
            assert_eq!(got, want, "{what}: pairs of expert {e}");
        }
    }
}

#[test]
fn route() {
    let mut rng = StdRng::seed_from_u64(81);
    let case = |t, experts, topk, bias, norm, scale, ties| RouteCase {
        t,
        experts,
        topk,
        bias,
        norm,
        scale,
        ties,
    };
    let cases = [
        case(1, 4, 1, false, false, 1.0, false),
        case(5, 32, 4, true, true, 2.5, false),
        case(70, 100, 8, true, false, 1.0, false),
        case(70, 256, 8, false, true, 1.5, false),
        case(33, 64, 6, true, true, 1.0, false),
        case(3, 16, 2, false, true, 1.0, true),
        case(65, 20, 4, true, false, 0.5, true),
        case(2, 8, 8, true, true, 1.0, false),
    ];
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts);
        for shape in [Shape::Prefill, Shape::Decode] {
            for c in cases {
                check_route(&dev, &mut rng, shape, c);
            }
        }
    }
    // NaN logits (a broken checkpoint): they rank last, so the ids stay distinct experts in
    // range and every slot is written.
    let dev = Dev::new("default", GpuOptions::default());
    let (experts, topk) = (12, 4);
    let mut logits: Vec<f32> = (0..experts).map(|e| e as f32 * 0.1).collect();
    for e in [1, 5, 11] {
        logits[e] = f32::NAN;
    }
    let (lb, ib, wb) = (
        dev.f32s(&logits),
        dev.u32s(&vec![u32::MAX; topk]),
        dev.f32s(&vec![0.0; topk]),
    );
    let routing = Routing {
        ids: &ib,
        weights: &wb,
        offsets: &dev.dummy,
        rows: &dev.dummy,
        topk: topk as u32,
    };
    dev.run(tokens(1), DType::F32, |r| {
        r.route(Shape::Decode, "router", &lb, None, &routing, experts, true, 1.0)
    });
    assert_eq!(dev.read_u32(&ib, topk), [10, 9, 8, 7], "NaN logits ranked last");
}

#[test]
fn moe_combine() {
    let mut rng = StdRng::seed_from_u64(91);
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts);
        for (t, h, k) in [(1, 46, 4), (5, 130, 2), (70, 1, 3), (3, 200, 1), (2, 64, 8)] {
            let y = rand_vec(&mut rng, t * k * h, -1.0, 1.0);
            let h0 = rand_vec(&mut rng, t * h, -1.0, 1.0);
            let (yb, hb) = (dev.f32s(&y), dev.f32s(&h0));
            dev.run(tokens(t), DType::F32, |r| {
                r.moe_combine("combine", &yb, &hb, h, k as u32)
            });
            let got = dev.read_f32(&hb, t * h);
            let mut want = h0.clone();
            for ti in 0..t {
                for ch in 0..h {
                    let s: f32 = (0..k).map(|j| y[(ti * k + j) * h + ch]).sum();
                    want[ti * h + ch] += s;
                }
            }
            let what = format!("{} moe_combine T={t} H={h} k={k}", dev.name);
            assert_close(&what, &got, &want, tol(&want));
        }
    }
}

// ---------------------------------------------------------------------------------------
// argmax

/// The lowest index of the largest value; `u32::MAX` (the engine's "non-finite logits"
/// answer) when the row holds a NaN or an infinity.
fn cpu_argmax(row: &[f32]) -> u32 {
    if row.iter().any(|v| !v.is_finite()) {
        return u32::MAX;
    }
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn argmax() {
    let mut rng = StdRng::seed_from_u64(101);
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts);
        for vocab in [1, 7, 256, 257, 1000, 5003] {
            for kind in ["random", "ties", "nan", "inf", "flat", "neg"] {
                for t in [1, 3] {
                    let mut logits = rand_vec(&mut rng, t * vocab, -10.0, 10.0);
                    for row in logits.chunks_mut(vocab) {
                        match kind {
                            "ties" => {
                                // The maximum at several indices, the lowest one not first.
                                for _ in 0..3 {
                                    let i = rng.random_range(0..vocab);
                                    row[i] = 11.0;
                                }
                            }
                            "inf" => {
                                let i = rng.random_range(0..vocab);
                                row[i] = if rng.random_bool(0.5) {
                                    f32::INFINITY
                                } else {
                                    f32::NEG_INFINITY
                                };
                            }
                            "nan" => {
                                row[0] = f32::NAN;
                                for _ in 0..vocab / 3 {
                                    let i = rng.random_range(0..vocab);
                                    row[i] = if rng.random_bool(0.5) { f32::NAN } else { f32::INFINITY };
                                }
                            }
                            "flat" => row.fill(0.5),
                            "neg" => row.iter_mut().for_each(|v| *v = -1e30 - v.abs() * 1e29),
                            _ => {}
                        }
                    }
                    for last_row in [false, true] {
                        let (lb, ob) = (dev.f32s(&logits), dev.u32s(&[u32::MAX; 4]));
                        dev.run(tokens(t), DType::F32, |r| r.argmax(&lb, &ob, vocab, last_row));
                        let got = dev.read_u32(&ob, 1)[0];
                        let row = if last_row { t - 1 } else { 0 };
                        let want = cpu_argmax(&logits[row * vocab..(row + 1) * vocab]);
                        assert_eq!(
                            got, want,
                            "{} argmax V={vocab} {kind} T={t} last_row={last_row}",
                            dev.name
                        );
                    }
                }
            }
        }
    }
}

/// Draws from fixed logits, many per dispatch, against the distribution transformers'
/// processors define (`cpu::sampling_probs`). Bound: every drawn token is in the support,
/// and each token's frequency is within 5 standard errors of its probability
/// (|f − p| ≤ 5·√(p(1−p)/N) + 1/N); the draws are seeded, so the test is deterministic.
#[test]
fn sample_distribution() {
    use lfm_wgpu::sampling::SamplingParams;
    let mut rng = StdRng::seed_from_u64(77);
    let draws = 4096usize;
    let base = SamplingParams {
        temperature: 1.0,
        seed: 1234,
        ..SamplingParams::greedy()
    };
    let cases = [
        (
            50,
            SamplingParams {
                temperature: 0.7,
                top_p: 0.9,
                ..base.clone()
            },
        ),
        (
            50,
            SamplingParams {
                top_k: 5,
                ..base.clone()
            },
        ),
        (
            50,
            SamplingParams {
                temperature: 0.5,
                min_p: 0.2,
                repetition_penalty: 1.3,
                ..base.clone()
            },
        ),
        (
            300,
            SamplingParams {
                temperature: 1.3,
                top_k: 20,
                top_p: 0.8,
                min_p: 0.05,
                ..base.clone()
            },
        ),
        (
            1000,
            SamplingParams {
                temperature: 2.0,
                ..base.clone()
            },
        ),
    ];
    // Subgroup and workgroup-memory reductions; unmasked, then with a random half of the
    // tokens allowed (structured output: the CPU side renormalises over the allowed tokens,
    // i.e. the others are −∞ before the chain).
    for (vocab, params, cname) in cases
        .into_iter()
        .flat_map(|(v, p)| [(v, p.clone(), "default"), (v, p, "no-subgroups, 1 row")])
    {
        let opts = configs().into_iter().find(|c| c.0 == cname).expect("a config").1;
        let dev = Dev::new(cname, opts);
        let logits = rand_vec(&mut rng, vocab, -3.0, 3.0);
        let seen: Vec<bool> = (0..vocab).map(|i| i % 7 == 3).collect();
        let allowed: Vec<bool> = (0..vocab).map(|_| rng.random_bool(0.5)).collect();
        // The mask adds no reduction: masked draws run on the default configuration only.
        let masks = match cname {
            "default" => vec![None, Some(&allowed)],
            _ => vec![None],
        };
        for mask in masks {
            let got = draw(&dev, &logits, &params, &seen, mask, draws);
            let masked: Vec<f32> = match mask {
                Some(m) => logits
                    .iter()
                    .zip(m)
                    .map(|(&l, &a)| if a { l } else { f32::NEG_INFINITY })
                    .collect(),
                None => logits.clone(),
            };
            let want = cpu::sampling_probs(&masked, &params, &seen);
            check_frequencies(&got, &want, &format!("{params:?} V={vocab} masked {}", mask.is_some()));
            let support = want.iter().filter(|&&p| p > 0.0).count();
            eprintln!(
                "sample {cname} V={vocab} masked {} {params:?}: support {support}, {draws} draws within bound",
                mask.is_some()
            );
        }
    }
}

/// Seeded draws (`advance` off) from `logits` on the GPU; `allowed`: the structured-output mask.
fn draw(
    dev: &Dev,
    logits: &[f32],
    params: &lfm_wgpu::sampling::SamplingParams,
    seen: &[bool],
    allowed: Option<&Vec<bool>>,
    draws: usize,
) -> Vec<u32> {
    let vocab = logits.len();
    let bits = |set: &[bool]| {
        let mut w = vec![0u32; vocab.div_ceil(32)];
        for (i, _) in set.iter().enumerate().filter(|(_, s)| **s) {
            w[i / 32] |= 1 << (i % 32);
        }
        w
    };
    let mut state = vec![0u32];
    state.extend(bits(seen));
    let greedy = params.is_greedy();
    let g = [
        if greedy { 1f32 } else { params.temperature }.to_bits(),
        params.top_k as u32,
        params.top_p.to_bits(),
        params.min_p.to_bits(),
        if greedy { 1f32 } else { params.repetition_penalty }.to_bits(),
        params.seed as u32,
        (params.seed >> 32) as u32,
        greedy as u32,
    ];
    let (cb, lb, ob, sb) = (
        dev.u32s(&g),
        dev.f32s(logits),
        dev.u32s(&vec![u32::MAX; draws]),
        dev.u32s(&state),
    );
    let mb = allowed.map(|a| dev.u32s(&bits(a)));
    dev.run(tokens(1), DType::F32, |r| {
        r.sample(&cb, &lb, &ob, &sb, mb.as_ref(), vocab, draws as u32, false)
    });
    dev.read_u32(&ob, draws)
}

/// Every drawn token is in the support of `want`, and each token's frequency is within 5
/// standard errors of its probability (|f − p| ≤ 5·√(p(1−p)/N) + 1/N).
fn check_frequencies(got: &[u32], want: &[f64], what: &str) {
    let mut freq = vec![0usize; want.len()];
    for &t in got {
        assert!(
            (t as usize) < want.len() && want[t as usize] > 0.0,
            "{what}: drew {t} outside the support"
        );
        freq[t as usize] += 1;
    }
    let n = got.len() as f64;
    for (i, (&f, &p)) in freq.iter().zip(want).enumerate() {
        let bound = 5.0 * (p * (1.0 - p) / n).sqrt() + 1.0 / n;
        let d = (f as f64 / n - p).abs();
        assert!(
            d <= bound,
            "{what}: token {i} frequency {} vs p {p:.4} (bound {bound:.4})",
            f as f64 / n
        );
    }
}

/// Greedy under a mask takes the largest allowed logit, the lowest id among ties, and
/// ignores disallowed tokens however large; with every token allowed it is the argmax.
#[test]
fn sample_greedy_masked() {
    use lfm_wgpu::sampling::SamplingParams;
    let mut rng = StdRng::seed_from_u64(79);
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts);
        for vocab in [7usize, 300, 4099] {
            // Coarse values so ties happen.
            let logits: Vec<f32> = (0..vocab).map(|_| rng.random_range(-8..8) as f32 * 0.5).collect();
            let seen = vec![true; vocab]; // greedy ignores the penalty
            let params = SamplingParams {
                repetition_penalty: 1.5,
                ..SamplingParams::greedy()
            };
            for density in [1.0, 0.5, 0.01] {
                let mut allowed: Vec<bool> = (0..vocab).map(|_| rng.random_bool(density)).collect();
                allowed[rng.random_range(0..vocab)] = true;
                let want = (0..vocab)
                    .filter(|&i| allowed[i])
                    .fold(None, |best: Option<usize>, i| match best {
                        Some(b) if logits[b] >= logits[i] => Some(b),
                        _ => Some(i),
                    })
                    .unwrap() as u32;
                let got = draw(&dev, &logits, &params, &seen, Some(&allowed), 3);
                assert_eq!(got, vec![want; 3], "{cname} V={vocab} density {density}");
            }
        }
    }
}

/// A logits row holding NaN or ±inf makes the sampler answer `u32::MAX` (reported by the
/// session as an error) instead of a token, and leaves its draw counter and seen mask alone.
#[test]
fn sample_non_finite() {
    use lfm_wgpu::sampling::SamplingParams;
    let mut rng = StdRng::seed_from_u64(78);
    let vocab = 300;
    let params = SamplingParams {
        temperature: 0.8,
        seed: 5,
        ..SamplingParams::greedy()
    };
    for (cname, opts) in configs() {
        let dev = Dev::new(cname, opts);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut logits = rand_vec(&mut rng, vocab, -3.0, 3.0);
            logits[rng.random_range(0..vocab)] = bad;
            let g = [
                params.temperature.to_bits(),
                0,
                1f32.to_bits(),
                0,
                1f32.to_bits(),
                5,
                0,
                0,
            ];
            let state = vec![0u32; 1 + vocab.div_ceil(32)];
            let (cb, lb, ob, sb) = (dev.u32s(&g), dev.f32s(&logits), dev.u32s(&[0; 4]), dev.u32s(&state));
            dev.run(tokens(1), DType::F32, |r| {
                r.sample(&cb, &lb, &ob, &sb, None, vocab, 1, true)
            });
            assert_eq!(dev.read_u32(&ob, 1)[0], u32::MAX, "{} sample with {bad}", dev.name);
            assert!(
                dev.read_u32(&sb, state.len()).iter().all(|&w| w == 0),
                "state untouched"
            );
        }
    }
}

//! Plain f32 CPU forward pass of LFM2-MoE: the oracle for every kernel and for the engine.
//!
//! Written for obviousness, straight from docs §4–§11; it shares [`Config`] and the
//! checkpoint reader with the GPU path so constants cannot drift, and never touches wgpu.

use crate::dtype::DType;
use crate::error::Result;
use crate::model::config::{Config, LayerKind};
use crate::model::weights::{storage_format, Ffn, MatSpec, Op, Source, WeightSink, Weights};
use half::f16;

/// A row-major matrix [rows, cols] in f32.
#[derive(Clone, Debug)]
pub struct HostMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
    /// The runs of rows the engine stores in a block format (Q8_0 … Q6_K): in int8 mode
    /// their inputs are quantized ([`crate::act_quant`]).
    pub block_rows: Vec<std::ops::Range<usize>>,
}

impl HostMatrix {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Whether row `r` is stored in a block format.
    pub fn block_row(&self, r: usize) -> bool {
        self.block_rows.iter().any(|run| run.contains(&r))
    }
}

/// `x` (rows of `k` values) as the integer-dot mat-vec sees it: each row quantized to int8
/// blocks and back.
pub fn quant_dequant(x: &[f32], k: usize) -> Vec<f32> {
    let mut q = x.to_vec();
    q.chunks_mut(k).for_each(crate::act_quant::quant_dequant_row);
    q
}

/// Loads weights into host memory, rounded as the engine stores them for `dtype` (f16
/// rounding, or quantize → dequantize per [`storage_format`]); vectors (norms, biases, conv
/// taps, expert_bias) stay f32.
pub struct HostSink {
    pub dtype: DType,
}

impl WeightSink for HostSink {
    type Matrix = HostMatrix;
    type Vector = Vec<f32>;

    fn matrix(&mut self, src: &dyn Source, spec: &MatSpec) -> Result<HostMatrix> {
        let mut data = vec![0f32; spec.rows * spec.cols];
        if let Some(st) = src.stored(spec)? {
            // Already in the engine layout: decode exactly what the GPU will read.
            match st.dtype.quant() {
                Some(q) => {
                    let scales: Vec<u16> = st
                        .scales
                        .chunks_exact(2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    crate::quant::dequantize_row(q, &st.data, &scales, &mut data)?;
                }
                None if st.dtype == DType::F32 => {
                    data.iter_mut()
                        .zip(st.data.chunks_exact(4))
                        .for_each(|(o, b)| *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                }
                None => {
                    data.iter_mut()
                        .zip(st.data.chunks_exact(2))
                        .for_each(|(o, b)| *o = f16::from_le_bytes([b[0], b[1]]).to_f32());
                }
            }
            let block_rows = match st.dtype.is_block() {
                true => std::iter::once(0..spec.rows).collect(),
                false => vec![],
            };
            return Ok(HostMatrix {
                rows: spec.rows,
                cols: spec.cols,
                data,
                block_rows,
            });
        }
        // Blocks read as they are (GGUF): the runs of rows of each part's format.
        let mut block_rows = Vec::new();
        if let Some(formats) = src.native(spec)? {
            let mut row = 0;
            for (part, dtype) in spec.parts.iter().zip(formats) {
                let rows = part.shape.iter().product::<usize>() / spec.cols;
                if dtype.is_block() {
                    block_rows.push(row..row + rows);
                }
                row += rows;
            }
        } else if storage_format(spec, self.dtype).is_block() {
            block_rows.push(0..spec.rows);
        }
        let mut at = 0;
        for part in &spec.parts {
            let n: usize = part.shape.iter().product();
            src.read_f32(&part.name, &part.shape, &mut data[at..at + n])?;
            at += n;
        }
        match storage_format(spec, self.dtype) {
            DType::F32 => {}
            DType::F16 => data.iter_mut().for_each(|x| *x = f16::from_f32(*x).to_f32()),
            q => {
                let fmt = q.quant().expect("quantized format");
                let (mut quants, mut scales) = (Vec::new(), Vec::new());
                crate::quant::quantize_row(fmt, &data, &mut quants, &mut scales)?;
                crate::quant::dequantize_row(fmt, &quants, &scales, &mut data)?;
            }
        }
        Ok(HostMatrix {
            rows: spec.rows,
            cols: spec.cols,
            data,
            block_rows,
        })
    }

    fn vector(&mut self, src: &dyn Source, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let mut data = vec![0f32; shape.iter().product()];
        src.read_f32(name, shape, &mut data)?;
        Ok(data)
    }
}

// ---------------------------------------------------------------------------------------
// Ops, each the oracle of one kernel.

/// y[m, n] = Σ_k x[m, k]·w[row0 + n, k] (+ bias[n]), for m < x.len()/w.cols.
pub fn matmul(x: &[f32], w: &HostMatrix, bias: Option<&[f32]>) -> Vec<f32> {
    let k = w.cols;
    let m = x.len() / k;
    let mut y = vec![0f32; m * w.rows];
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for n in 0..w.rows {
            let mut acc = 0f32;
            for (a, b) in xr.iter().zip(w.row(n)) {
                acc += a * b;
            }
            y[i * w.rows + n] = acc + bias.map_or(0.0, |b| b[n]);
        }
    }
    y
}

/// RMSNorm of every `n`-sized row of `x` with weight `w` [n] (docs §5).
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let n = w.len();
    let mut y = vec![0f32; x.len()];
    for (xr, yr) in x.chunks(n).zip(y.chunks_mut(n)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let r = 1.0 / (ms + eps).sqrt();
        for ((yv, xv), wv) in yr.iter_mut().zip(xr).zip(w) {
            *yv = wv * (xv * r);
        }
    }
    y
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Gated short conv over T tokens (docs §6): z [T, 3H] = B | C | x, taps w [H·K],
/// `state` [(K−1), H] oldest first, updated in place. Returns C ⊙ conv(B ⊙ x) [T, H].
pub fn short_conv(z: &[f32], w: &[f32], bias: Option<&[f32]>, state: &mut [f32], h: usize) -> Vec<f32> {
    let k = w.len() / h;
    let t_len = z.len() / (3 * h);
    let mut hist: Vec<f32> = state.to_vec(); // grows: [(K−1) + T, H]
    for t in 0..t_len {
        let zr = &z[t * 3 * h..(t + 1) * 3 * h];
        hist.extend((0..h).map(|c| zr[c] * zr[2 * h + c]));
    }
    let mut y = vec![0f32; t_len * h];
    for t in 0..t_len {
        let zr = &z[t * 3 * h..(t + 1) * 3 * h];
        for c in 0..h {
            let mut v = bias.map_or(0.0, |b| b[c]);
            for j in 0..k {
                v += w[c * k + j] * hist[(t + j) * h + c];
            }
            y[t * h + c] = zr[h + c] * v;
        }
    }
    let n = hist.len();
    state.copy_from_slice(&hist[n - (k - 1) * h..]);
    y
}

/// NeoX rotate-half RoPE of one head `x` [d] in place.
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    for i in 0..half {
        let (a, b) = (x[i], x[i + half]);
        x[i] = a * cos[i] - b * sin[i];
        x[i + half] = b * cos[i] + a * sin[i];
    }
}

/// Causal GQA attention of `q` [T, nh·d] for tokens at positions pos0.. over caches
/// `k`, `v` [pos0+T, nkv·d]. Returns [T, nh·d].
pub fn attention(q: &[f32], k: &[f32], v: &[f32], nh: usize, nkv: usize, d: usize, pos0: usize) -> Vec<f32> {
    let t_len = q.len() / (nh * d);
    let scale = 1.0 / (d as f32).sqrt();
    let mut o = vec![0f32; q.len()];
    for t in 0..t_len {
        let p = pos0 + t;
        for hh in 0..nh {
            let g = hh / (nh / nkv);
            let qh = &q[(t * nh + hh) * d..][..d];
            let scores: Vec<f32> = (0..=p)
                .map(|s| {
                    qh.iter()
                        .zip(&k[(s * nkv + g) * d..][..d])
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                        * scale
                })
                .collect();
            let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
            let l: f32 = e.iter().sum();
            let oh = &mut o[(t * nh + hh) * d..][..d];
            for (s, es) in e.iter().enumerate() {
                for (j, ov) in oh.iter_mut().enumerate() {
                    *ov += es / l * v[(s * nkv + g) * d + j];
                }
            }
        }
    }
    o
}

/// Expert selection for one token (docs §9): sigmoid scores, top-k of score + bias,
/// weights from the unbiased scores, optionally normalised, then scaled.
/// Returns (expert ids, weights) in descending order of biased score.
pub fn route(logits: &[f32], bias: Option<&[f32]>, k: usize, norm: bool, scale: f32) -> (Vec<u32>, Vec<f32>) {
    let s: Vec<f32> = logits.iter().map(|&l| sigmoid(l)).collect();
    let biased: Vec<f32> = s
        .iter()
        .enumerate()
        .map(|(e, v)| v + bias.map_or(0.0, |b| b[e]))
        .collect();
    let mut order: Vec<usize> = (0..s.len()).collect();
    // Stable: equal scores keep the lower expert id first.
    order.sort_by(|&a, &b| biased[b].partial_cmp(&biased[a]).unwrap_or(std::cmp::Ordering::Equal));
    let ids: Vec<u32> = order[..k].iter().map(|&e| e as u32).collect();
    let mut w: Vec<f32> = ids.iter().map(|&e| s[e as usize]).collect();
    if norm {
        let sum: f32 = w.iter().sum::<f32>() + 1e-6;
        w.iter_mut().for_each(|x| *x /= sum);
    }
    w.iter_mut().for_each(|x| *x *= scale);
    (ids, w)
}

/// SwiGLU down·(silu(gate·x) ⊙ up·x) for one token with expert `e`'s slice of stacked
/// matrices (e = 0 for a dense FFN).
/// Expert `e` (or the dense FFN, e = 0) on one token `x`; with `int8`, the inputs of its
/// block-format matrices quantized as the integer-dot mat-vec quantizes them.
fn swiglu(x: &[f32], gate: &HostMatrix, up: &HostMatrix, down: &HostMatrix, e: usize, int8: bool) -> Vec<f32> {
    let i_rows = down.cols; // width of the hidden layer
    let h = x.len();
    let xq;
    let x = match int8 && gate.block_row(e * i_rows) {
        true => {
            xq = quant_dequant(x, h);
            &xq[..]
        }
        false => x,
    };
    let act: Vec<f32> = (0..i_rows)
        .map(|r| {
            let g: f32 = gate.row(e * i_rows + r).iter().zip(x).map(|(a, b)| a * b).sum();
            let u: f32 = up.row(e * i_rows + r).iter().zip(x).map(|(a, b)| a * b).sum();
            silu(g) * u
        })
        .collect();
    let act = match int8 && down.block_row(e * h) {
        true => quant_dequant(&act, i_rows),
        false => act,
    };
    (0..h)
        .map(|o| down.row(e * h + o).iter().zip(&act).map(|(a, b)| a * b).sum())
        .collect()
}

// ---------------------------------------------------------------------------------------

/// The CPU model.
pub struct Reference {
    pub cfg: Config,
    pub w: Weights<HostMatrix, Vec<f32>>,
    inv_freq: Vec<f32>,
    /// Int8 mode: the inputs of block-format matrices quantized to int8 blocks first, as a
    /// session with int8 activations decodes (set it for decode steps; prompts are exact).
    pub int8: bool,
}

/// Per-sequence state of the CPU model.
#[derive(Clone, Debug)]
pub struct RefState {
    /// Tokens already processed (the next token's position).
    pub pos: usize,
    /// Per layer: conv state [(K−1), H] (empty for attention layers).
    pub conv: Vec<Vec<f32>>,
    /// Per layer: K and V caches [pos, nkv·d] (empty for conv layers).
    pub k: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

impl Reference {
    /// Loads `ckpt` with weights rounded as the engine stores them for `dtype`.
    pub fn load(src: &dyn Source, dtype: DType) -> Result<Self> {
        let cfg = src.config().clone();
        let w = Weights::load(src, &mut HostSink { dtype })?;
        let inv_freq = cfg.rope_inv_freq();
        Ok(Reference {
            cfg,
            w,
            inv_freq,
            int8: false,
        })
    }

    pub fn new_state(&self) -> RefState {
        let c = &self.cfg;
        let conv = c
            .layer_types
            .iter()
            .map(|k| match k {
                LayerKind::Conv => vec![0.0; (c.conv_l_cache - 1) * c.hidden_size],
                LayerKind::Attention => vec![],
            })
            .collect();
        RefState {
            pos: 0,
            conv,
            k: vec![vec![]; c.num_layers()],
            v: vec![vec![]; c.num_layers()],
        }
    }

    /// y = x·Wᵀ (+ bias), in int8 mode with the block-format rows on quantized x.
    fn mm(&self, x: &[f32], w: &HostMatrix, bias: Option<&[f32]>) -> Vec<f32> {
        if !self.int8 || w.block_rows.is_empty() {
            return matmul(x, w, bias);
        }
        let yq = matmul(&quant_dequant(x, w.cols), w, bias);
        if w.block_rows.len() == 1 && w.block_rows[0] == (0..w.rows) {
            return yq;
        }
        let y = matmul(x, w, bias);
        let n = w.rows;
        (0..y.len())
            .map(|i| if w.block_row(i % n) { yq[i] } else { y[i] })
            .collect()
    }

    /// Runs `tokens` through the model from `st`, returning the logits [T, vocab].
    /// `hidden` (if given) receives the residual stream after each layer, HF-style.
    pub fn forward(&self, st: &mut RefState, tokens: &[u32], mut hidden: Option<&mut Vec<Vec<f32>>>) -> Vec<f32> {
        let c = &self.cfg;
        let h_dim = c.hidden_size;
        let t_len = tokens.len();
        let mut h: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| self.w.embed.row(t as usize).to_vec())
            .collect();
        if let Some(hs) = hidden.as_deref_mut() {
            hs.push(h.clone());
        }
        for (i, layer) in self.w.layers.iter().enumerate() {
            let a = rmsnorm(&h, &layer.operator_norm, c.norm_eps);
            let y = match &layer.op {
                Op::Conv {
                    in_proj,
                    in_bias,
                    conv,
                    conv_bias,
                    out_proj,
                    out_bias,
                } => {
                    let z = self.mm(&a, in_proj, in_bias.as_deref());
                    let u = short_conv(&z, conv, conv_bias.as_deref(), &mut st.conv[i], h_dim);
                    self.mm(&u, out_proj, out_bias.as_deref())
                }
                Op::Attention {
                    qkv,
                    q_norm,
                    k_norm,
                    out_proj,
                } => {
                    let (nh, nkv, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
                    let z = self.mm(&a, qkv, None);
                    let mut q = Vec::with_capacity(t_len * nh * d);
                    for t in 0..t_len {
                        let zr = &z[t * qkv.rows..(t + 1) * qkv.rows];
                        let (cos, sin) = c.rope_cos_sin(&self.inv_freq, st.pos + t);
                        let mut qt = rmsnorm(&zr[..nh * d], q_norm, c.norm_eps);
                        let mut kt = rmsnorm(&zr[nh * d..(nh + nkv) * d], k_norm, c.norm_eps);
                        qt.chunks_mut(d).for_each(|x| rope(x, &cos, &sin));
                        kt.chunks_mut(d).for_each(|x| rope(x, &cos, &sin));
                        q.extend(qt);
                        st.k[i].extend(kt);
                        st.v[i].extend_from_slice(&zr[(nh + nkv) * d..]);
                    }
                    let o = attention(&q, &st.k[i], &st.v[i], nh, nkv, d, st.pos);
                    self.mm(&o, out_proj, None)
                }
            };
            h.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
            let b = rmsnorm(&h, &layer.ffn_norm, c.norm_eps);
            let y = match &layer.ffn {
                Ffn::Dense { gate, up, down } => b
                    .chunks(h_dim)
                    .flat_map(|x| swiglu(x, gate, up, down, 0, self.int8))
                    .collect::<Vec<_>>(),
                Ffn::Moe {
                    router,
                    expert_bias,
                    gate,
                    up,
                    down,
                } => {
                    let logits = self.mm(&b, router, None);
                    let mut y = vec![0f32; t_len * h_dim];
                    for t in 0..t_len {
                        let (ids, wts) = route(
                            &logits[t * c.num_experts..(t + 1) * c.num_experts],
                            expert_bias.as_deref(),
                            c.num_experts_per_tok,
                            c.norm_topk_prob,
                            c.routed_scaling_factor,
                        );
                        let x = &b[t * h_dim..(t + 1) * h_dim];
                        for (e, wt) in ids.iter().zip(wts) {
                            let o = swiglu(x, gate, up, down, *e as usize, self.int8);
                            y[t * h_dim..(t + 1) * h_dim]
                                .iter_mut()
                                .zip(o)
                                .for_each(|(a, b)| *a += wt * b);
                        }
                    }
                    y
                }
            };
            h.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
            if let Some(hs) = hidden.as_deref_mut() {
                hs.push(h.clone());
            }
        }
        st.pos += t_len;
        let hn = rmsnorm(&h, &self.w.final_norm, c.norm_eps);
        self.mm(&hn, self.w.head(), None)
    }
}

/// The distribution transformers samples from, by its logits processors in order:
/// repetition penalty on the `seen` tokens, temperature, top-k (ties with the k-th kept),
/// top-p (the smallest most-likely set reaching `top_p`), min-p. Sort-based, written
/// independently of the GPU's bisection (shaders/sample.wgsl).
pub fn sampling_probs(logits: &[f32], p: &crate::sampling::SamplingParams, seen: &[bool]) -> Vec<f64> {
    let n = logits.len();
    let mut l: Vec<f64> = logits
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let mut x = x as f64;
            if seen.get(i).copied().unwrap_or(false) && p.repetition_penalty != 1.0 {
                let r = p.repetition_penalty as f64;
                x = if x < 0.0 { x * r } else { x / r };
            }
            x / p.temperature as f64
        })
        .collect();
    if p.top_k > 0 && p.top_k < n {
        let mut s = l.clone();
        s.sort_by(|a, b| b.total_cmp(a));
        let kth = s[p.top_k - 1];
        l.iter_mut().filter(|x| **x < kth).for_each(|x| *x = f64::NEG_INFINITY);
    }
    let softmax = |l: &[f64]| -> Vec<f64> {
        let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.iter().map(|x| x / z).collect()
    };
    if p.top_p < 1.0 {
        let probs = softmax(&l);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| l[a].total_cmp(&l[b])); // ascending
        let mut cum = 0.0;
        for (j, &i) in order.iter().enumerate() {
            cum += probs[i];
            if cum <= 1.0 - p.top_p as f64 && j + 1 < n {
                l[i] = f64::NEG_INFINITY;
            }
        }
    }
    if p.min_p > 0.0 {
        let probs = softmax(&l);
        let top = probs.iter().cloned().fold(0.0, f64::max);
        for (x, q) in l.iter_mut().zip(&probs) {
            if *q < p.min_p as f64 * top {
                *x = f64::NEG_INFINITY;
            }
        }
    }
    softmax(&l)
}

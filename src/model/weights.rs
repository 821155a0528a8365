//! The checkpoint: HF safetensors (single file or sharded), read through mmap.
//!
//! This is the only module that knows checkpoint key strings (docs §3.1). It describes the
//! engine's view of the weights — q|k|v fused along rows, experts stacked per projection —
//! as [`MatSpec`]s assembled from on-disk parts, and hands them to a [`WeightSink`] (host f32
//! for the CPU reference, GPU buffers for the engine), one tensor at a time.

use super::config::{Config, LayerKind};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::{stored_row_bytes, StoredMatrix};
use half::{bf16, f16};
#[cfg(not(target_arch = "wasm32"))]
use memmap2::Mmap;

mod streamed;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
pub use streamed::{Pieces, Streamable, StreamedLoad};

/// What a matrix is for (the storage policy treats some roles differently).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The embedding table, also the head when tied.
    Embed,
    /// An untied head.
    Head,
    /// The MoE router.
    Router,
    /// Projections of the operators and the dense FFN.
    Proj,
    /// Stacked routed experts.
    Expert,
}

/// A matrix as the engine stores it: `rows × cols`, row-major, y = W·x over `cols`.
/// It is assembled from `parts` stacked along rows, in order (q|k|v, or expert 0..E).
#[derive(Clone, Debug)]
pub struct MatSpec {
    /// HF-style module path, used as the GPU label (e.g. `model.layers.3.conv.in_proj`).
    pub label: String,
    pub role: Role,
    pub rows: usize,
    pub cols: usize,
    /// Rows that must stay in one binding when the matrix is split (rows of one expert).
    pub group_rows: usize,
    pub parts: Vec<Part>,
}

/// One on-disk tensor, checked against `shape`; it contributes `rows` rows of the matrix.
#[derive(Clone, Debug)]
pub struct Part {
    pub name: String,
    pub shape: Vec<usize>,
}

/// Where tensors come from: a checkpoint on disk, or synthetic weights.
pub trait Source {
    fn config(&self) -> &Config;
    /// Reads tensor `name`, checked to have exactly `shape`, as f32 into `out`.
    fn read_f32(&self, name: &str, shape: &[usize], out: &mut [f32]) -> Result<()>;
    /// A matrix already stored in the engine's GPU layout (a checkpoint written by
    /// `lfm quantize`): its format and bytes, quants then scales. None: read parts.
    fn stored(&self, _spec: &MatSpec) -> Result<Option<StoredMatrix<'_>>> {
        Ok(None)
    }
    /// The formats the parts of `spec` are stored in (one per part) when the GPU reads them
    /// as they are (GGUF blocks, see [`crate::blocks`]). None: convert through `read_f32`.
    fn native(&self, _spec: &MatSpec) -> Result<Option<Vec<DType>>> {
        Ok(None)
    }
    /// Rows `row0..` of `part`, stored as `dtype` (what [`Self::native`] said), in the engine
    /// layout: their quant bytes (or values) into `quants`, their scale bytes into `scales`
    /// (the lengths give the number of rows).
    fn read_native(
        &self,
        part: &Part,
        dtype: DType,
        _row0: usize,
        _quants: &mut [u8],
        _scales: &mut [u8],
    ) -> Result<()> {
        Err(Error::Invalid(format!(
            "{}: {dtype} blocks cannot be read as they are",
            part.name
        )))
    }
    /// What to call it in messages (a path).
    fn describe(&self) -> String;
    /// The stored matrix `spec` has been consumed: its pages need not stay resident.
    fn release(&self, _spec: &MatSpec) {}
}

/// Where loaded weights go: host vectors for the reference, GPU buffers for the engine.
pub trait WeightSink {
    type Matrix;
    type Vector;
    fn matrix(&mut self, src: &dyn Source, spec: &MatSpec) -> Result<Self::Matrix>;
    /// A float32 vector read from `name` (checked against `shape`).
    fn vector(&mut self, src: &dyn Source, name: &str, shape: &[usize]) -> Result<Self::Vector>;
}

/// The whole model, generic over how matrices (`M`) and vectors (`V`) are stored.
#[derive(Debug)]
pub struct Weights<M, V> {
    /// [vocab, H]
    pub embed: M,
    /// [H], `model.embedding_norm` — the final norm.
    pub final_norm: V,
    /// [vocab, H] when untied; the head is `embed` otherwise.
    pub lm_head: Option<M>,
    pub layers: Vec<Layer<M, V>>,
}

impl<M, V> Weights<M, V> {
    /// Every matrix, in load order.
    pub fn matrices(&self) -> impl Iterator<Item = &M> {
        let layers = self.layers.iter().flat_map(|l| {
            let op: Vec<&M> = match &l.op {
                Op::Conv { in_proj, out_proj, .. } => vec![in_proj, out_proj],
                Op::Attention { qkv, out_proj, .. } => vec![qkv, out_proj],
            };
            let ffn: Vec<&M> = match &l.ffn {
                Ffn::Dense { gate, up, down } => vec![gate, up, down],
                Ffn::Moe {
                    router, gate, up, down, ..
                } => vec![router, gate, up, down],
            };
            op.into_iter().chain(ffn)
        });
        std::iter::once(&self.embed).chain(layers).chain(self.lm_head.as_ref())
    }
}

#[derive(Debug)]
pub struct Layer<M, V> {
    /// [H]
    pub operator_norm: V,
    /// [H]
    pub ffn_norm: V,
    pub op: Op<M, V>,
    pub ffn: Ffn<M, V>,
}

#[derive(Debug)]
pub enum Op<M, V> {
    Conv {
        /// [3H, H], output order B | C | x
        in_proj: M,
        /// [3H] when conv_bias
        in_bias: Option<V>,
        /// [H·K], channel-major (w[c·K + k]); tap K−1 multiplies the newest input
        conv: V,
        /// [H] when conv_bias
        conv_bias: Option<V>,
        /// [H, H]
        out_proj: M,
        /// [H] when conv_bias
        out_bias: Option<V>,
    },
    Attention {
        /// [(nh + 2·nkv)·d, H], rows q | k | v
        qkv: M,
        /// [d]
        q_norm: V,
        /// [d]
        k_norm: V,
        /// [H, nh·d]
        out_proj: M,
    },
}

#[derive(Debug)]
pub enum Ffn<M, V> {
    Dense {
        /// w1 [I, H]
        gate: M,
        /// w3 [I, H]
        up: M,
        /// w2 [H, I]
        down: M,
    },
    Moe {
        /// [E, H]
        router: M,
        /// [E], selection-only bias; None when use_expert_bias is false
        expert_bias: Option<V>,
        /// w1 stacked: [E·Im, H]
        gate: M,
        /// w3 stacked: [E·Im, H]
        up: M,
        /// w2 stacked: [E·H, Im]
        down: M,
    },
}

fn layer_name(i: usize, suffix: &str) -> String {
    format!("model.layers.{i}.{suffix}")
}

fn single(role: Role, label: String, name: String, rows: usize, cols: usize) -> MatSpec {
    MatSpec {
        label,
        role,
        rows,
        cols,
        group_rows: 1,
        parts: vec![Part {
            name,
            shape: vec![rows, cols],
        }],
    }
}

fn experts(cfg: &Config, i: usize, w: &str, rows: usize, cols: usize) -> MatSpec {
    let e = cfg.num_experts;
    MatSpec {
        label: layer_name(i, &format!("feed_forward.experts.{w}")),
        role: Role::Expert,
        rows: e * rows,
        cols,
        group_rows: rows,
        parts: (0..e)
            .map(|x| Part {
                name: layer_name(i, &format!("feed_forward.experts.{x}.{w}.weight")),
                shape: vec![rows, cols],
            })
            .collect(),
    }
}

impl<M, V> Weights<M, V> {
    /// Reads every tensor the config calls for into `sink`, checking names and shapes.
    pub fn load<S>(src: &dyn Source, sink: &mut S) -> Result<Self>
    where
        S: WeightSink<Matrix = M, Vector = V>,
    {
        let cfg = src.config();
        let h = cfg.hidden_size;
        let v = cfg.vocab_size;
        let embed = sink.matrix(
            src,
            &single(
                Role::Embed,
                "model.embed_tokens".into(),
                "model.embed_tokens.weight".into(),
                v,
                h,
            ),
        )?;
        let final_norm = sink.vector(src, "model.embedding_norm.weight", &[h])?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(sink.matrix(
                src,
                &single(Role::Head, "lm_head".into(), "lm_head.weight".into(), v, h),
            )?)
        };
        let mut layers = Vec::with_capacity(cfg.num_layers());
        for (i, kind) in cfg.layer_types.iter().enumerate() {
            let operator_norm = sink.vector(src, &layer_name(i, "operator_norm.weight"), &[h])?;
            let ffn_norm = sink.vector(src, &layer_name(i, "ffn_norm.weight"), &[h])?;
            let op = match kind {
                LayerKind::Conv => {
                    let k = cfg.conv_l_cache;
                    let bias = |sink: &mut S, name: &str, n: usize| -> Result<Option<V>> {
                        match cfg.conv_bias {
                            true => sink.vector(src, &layer_name(i, name), &[n]).map(Some),
                            false => Ok(None),
                        }
                    };
                    Op::Conv {
                        in_proj: sink.matrix(
                            src,
                            &single(
                                Role::Proj,
                                layer_name(i, "conv.in_proj"),
                                layer_name(i, "conv.in_proj.weight"),
                                3 * h,
                                h,
                            ),
                        )?,
                        in_bias: bias(sink, "conv.in_proj.bias", 3 * h)?,
                        conv: sink.vector(src, &layer_name(i, "conv.conv.weight"), &[h, 1, k])?,
                        conv_bias: bias(sink, "conv.conv.bias", h)?,
                        out_proj: sink.matrix(
                            src,
                            &single(
                                Role::Proj,
                                layer_name(i, "conv.out_proj"),
                                layer_name(i, "conv.out_proj.weight"),
                                h,
                                h,
                            ),
                        )?,
                        out_bias: bias(sink, "conv.out_proj.bias", h)?,
                    }
                }
                LayerKind::Attention => {
                    let d = cfg.head_dim;
                    let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
                    let part = |w: &str, rows: usize| Part {
                        name: layer_name(i, &format!("self_attn.{w}.weight")),
                        shape: vec![rows, h],
                    };
                    let qkv = MatSpec {
                        label: layer_name(i, "self_attn.qkv_proj"),
                        role: Role::Proj,
                        rows: cfg.qkv_dim(),
                        cols: h,
                        group_rows: 1,
                        parts: vec![part("q_proj", nh * d), part("k_proj", nkv * d), part("v_proj", nkv * d)],
                    };
                    Op::Attention {
                        qkv: sink.matrix(src, &qkv)?,
                        q_norm: sink.vector(src, &layer_name(i, "self_attn.q_layernorm.weight"), &[d])?,
                        k_norm: sink.vector(src, &layer_name(i, "self_attn.k_layernorm.weight"), &[d])?,
                        out_proj: sink.matrix(
                            src,
                            &single(
                                Role::Proj,
                                layer_name(i, "self_attn.out_proj"),
                                layer_name(i, "self_attn.out_proj.weight"),
                                h,
                                nh * d,
                            ),
                        )?,
                    }
                }
            };
            let ffn = if cfg.is_moe(i) {
                let (e, im) = (cfg.num_experts, cfg.moe_intermediate_size);
                Ffn::Moe {
                    router: sink.matrix(
                        src,
                        &single(
                            Role::Router,
                            layer_name(i, "feed_forward.gate"),
                            layer_name(i, "feed_forward.gate.weight"),
                            e,
                            h,
                        ),
                    )?,
                    expert_bias: match cfg.use_expert_bias {
                        true => Some(sink.vector(src, &layer_name(i, "feed_forward.expert_bias"), &[e])?),
                        false => None,
                    },
                    gate: sink.matrix(src, &experts(cfg, i, "w1", im, h))?,
                    up: sink.matrix(src, &experts(cfg, i, "w3", im, h))?,
                    down: sink.matrix(src, &experts(cfg, i, "w2", h, im))?,
                }
            } else {
                let im = cfg.intermediate_size;
                let m = |w: &str, rows, cols| {
                    single(
                        Role::Proj,
                        layer_name(i, &format!("feed_forward.{w}")),
                        layer_name(i, &format!("feed_forward.{w}.weight")),
                        rows,
                        cols,
                    )
                };
                Ffn::Dense {
                    gate: sink.matrix(src, &m("w1", im, h))?,
                    up: sink.matrix(src, &m("w3", im, h))?,
                    down: sink.matrix(src, &m("w2", h, im))?,
                }
            };
            layers.push(Layer {
                operator_norm,
                ffn_norm,
                op,
                ffn,
            });
        }
        Ok(Weights {
            embed,
            final_norm,
            lm_head,
            layers,
        })
    }

    /// The matrix the logits are computed with (tied to the embedding unless untied).
    pub fn head(&self) -> &M {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }
}

/// Element type of a tensor on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskDtype {
    F32,
    F16,
    Bf16,
}

impl DiskDtype {
    pub fn size(self) -> usize {
        match self {
            DiskDtype::F32 => 4,
            _ => 2,
        }
    }
}

/// The bytes of one shard: a read-only file mapping, bytes held in memory, or the pieces of
/// a file that arrives piece by piece (a page's downloads, see `streamed.rs`).
enum ShardBytes {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(Mmap),
    Owned(Vec<u8>),
    Streamed(streamed::Pieces),
}

impl ShardBytes {
    /// The whole file, when it is all here.
    fn whole(&self) -> Option<&[u8]> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            ShardBytes::Mapped(m) => Some(m),
            ShardBytes::Owned(v) => Some(v),
            ShardBytes::Streamed(_) => None,
        }
    }

    /// Bytes `range` of the file; None when they are outside it (or not here yet).
    fn get(&self, range: std::ops::Range<usize>) -> Option<&[u8]> {
        match self {
            ShardBytes::Streamed(p) => p.get(range),
            other => other.whole()?.get(range),
        }
    }

    fn len(&self) -> usize {
        match self {
            ShardBytes::Streamed(p) => p.len,
            other => other.whole().map_or(0, <[u8]>::len),
        }
    }
}

struct Shard {
    path: PathBuf,
    map: ShardBytes,
    header_len: usize,
    meta: safetensors::tensor::Metadata,
}

/// An opened checkpoint directory: config plus memory-mapped safetensors shards.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: Config,
    /// Set when the files were written by `lfm quantize` (engine layout): the dtype asked for.
    pub prequantized: Option<DType>,
    shards: Vec<Shard>,
    /// tensor name → shard index
    index: HashMap<String, usize>,
}

/// A tensor's bytes as stored on disk (borrowed from the mapping).
pub struct TensorView<'a> {
    pub dtype: DiskDtype,
    pub shape: Vec<usize>,
    pub bytes: &'a [u8],
}

impl TensorView<'_> {
    /// Converts into `out` (exactly as many values as the tensor has).
    pub fn read_f32(&self, out: &mut [f32]) {
        debug_assert_eq!(out.len() * self.dtype.size(), self.bytes.len());
        let chunks = self.bytes.chunks_exact(self.dtype.size());
        match self.dtype {
            DiskDtype::F32 => {
                for (o, b) in out.iter_mut().zip(chunks) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            DiskDtype::F16 => {
                for (o, b) in out.iter_mut().zip(chunks) {
                    *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            DiskDtype::Bf16 => {
                for (o, b) in out.iter_mut().zip(chunks) {
                    *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        }
    }
}

impl Checkpoint {
    /// Opens `dir/config.json` and `dir/model.safetensors` (or the shards listed in
    /// `dir/model.safetensors.index.json`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: &Path) -> Result<Self> {
        let config = Config::from_file(&dir.join("config.json"))?;
        let index_path = dir.join("model.safetensors.index.json");
        // The index's weight_map (tensor → shard file) is authoritative when present.
        let (names, assigned) = match index_path.exists() {
            true => {
                let map = read_weight_map(&index_path)?;
                let mut names: Vec<String> = map.values().cloned().collect();
                names.sort();
                names.dedup();
                (names, Some(map))
            }
            false => (vec!["model.safetensors".to_string()], None),
        };
        let source = match assigned {
            Some(_) => index_path.clone(),
            None => dir.join("model.safetensors"),
        };
        let mut shards = Vec::new();
        for name in names {
            let path = crate::files::model_file(dir, &source, &name)?;
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: the file is only read; a concurrent writer would be the user's error,
            // and every offset is validated against the mapping's length.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            shards.push((name, path, ShardBytes::Mapped(map)));
        }
        Self::assemble(dir, config, &index_path, assigned.as_ref(), shards)
    }

    /// A checkpoint held in memory: `shards` are (name used in messages, safetensors bytes).
    /// Everything but the file access is what [`Checkpoint::open`] does for a checkpoint
    /// without an index (fuzzing, tests).
    pub fn from_bytes(dir: &Path, config: Config, shards: Vec<(PathBuf, Vec<u8>)>) -> Result<Self> {
        let shards = shards
            .into_iter()
            .map(|(p, b)| (p.display().to_string(), p, ShardBytes::Owned(b)))
            .collect();
        Self::assemble(dir, config, &dir.join("model.safetensors.index.json"), None, shards)
    }

    /// Reads the headers of `files` (shard name, path, bytes), checking each tensor against
    /// the index's weight map when there is one (`index_path` names it in errors).
    fn assemble(
        dir: &Path,
        config: Config,
        index_path: &Path,
        assigned: Option<&std::collections::BTreeMap<String, String>>,
        files: Vec<(String, PathBuf, ShardBytes)>,
    ) -> Result<Self> {
        let mut shards: Vec<Shard> = Vec::new();
        let mut index = HashMap::new();
        let bad = |msg: String| Error::Safetensors {
            path: index_path.to_path_buf(),
            msg,
        };
        let names: Vec<String> = files.iter().map(|f| f.0.clone()).collect();
        for (file_name, path, map) in files {
            let (header_len, meta) = match &map {
                ShardBytes::Streamed(p) => p.metadata(&path)?,
                whole => {
                    let bytes = whole.whole().expect("a mapped or owned shard is whole");
                    safetensors::SafeTensors::read_metadata(bytes).map_err(|e| Error::Safetensors {
                        path: path.clone(),
                        msg: format!("{e:?} (file truncated or corrupt?)"),
                    })?
                }
            };
            for name in meta.tensors().keys() {
                if let Some(map) = assigned {
                    match map.get(name) {
                        Some(f) if *f == file_name => {}
                        Some(f) => {
                            return Err(bad(format!(
                                "tensor {name} is in shard {file_name} but the weight_map assigns it to {f}"
                            )))
                        }
                        None => {
                            return Err(bad(format!(
                                "shard {file_name} holds tensor {name}, which the weight_map does not list"
                            )))
                        }
                    }
                }
                if let Some(&other) = index.get(name) {
                    return Err(bad(format!(
                        "tensor {name} is in two shards: {} and {file_name}",
                        names[other]
                    )));
                }
                index.insert(name.clone(), shards.len());
            }
            shards.push(Shard {
                path,
                map,
                header_len,
                meta,
            });
        }
        if let Some(map) = assigned {
            if let Some((name, f)) = map.iter().find(|(name, _)| !index.contains_key(*name)) {
                return Err(bad(format!(
                    "the weight_map puts tensor {name} in shard {f}, which does not hold it"
                )));
            }
        }
        let prequantized = prequantized_dtype(&shards)?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            prequantized,
            shards,
            index,
        })
    }

    /// The raw bytes of `name` (any dtype), checked to have `shape` and `dtype`.
    fn raw(&self, name: &str, dtype: safetensors::Dtype, shape: &[usize]) -> Result<&[u8]> {
        let &s = self.index.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            dir: self.dir.clone(),
        })?;
        let shard = &self.shards[s];
        let info = shard.meta.info(name).expect("indexed tensor has info");
        if info.shape != shape || info.dtype != dtype {
            return Err(Error::Shape {
                name: match info.dtype == dtype {
                    true => name.to_string(),
                    false => format!("{name} (dtype {:?}, expected {dtype:?})", info.dtype),
                },
                found: info.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        let start = 8 + shard.header_len + info.data_offsets.0;
        let end = 8 + shard.header_len + info.data_offsets.1;
        shard.map.get(start..end).ok_or_else(|| Error::Safetensors {
            path: shard.path.clone(),
            msg: format!("tensor {name} lies outside the file"),
        })
    }

    /// The tensor `name`, checked to have exactly `shape` and a float dtype.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<TensorView<'_>> {
        let &s = self.index.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            dir: self.dir.clone(),
        })?;
        let shard = &self.shards[s];
        let info = shard.meta.info(name).expect("indexed tensor has info");
        if info.shape != shape {
            return Err(Error::Shape {
                name: name.to_string(),
                found: info.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        let dtype = match info.dtype {
            safetensors::Dtype::F32 => DiskDtype::F32,
            safetensors::Dtype::F16 => DiskDtype::F16,
            safetensors::Dtype::BF16 => DiskDtype::Bf16,
            other => {
                return Err(Error::Dtype {
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        let start = 8 + shard.header_len + info.data_offsets.0;
        let end = 8 + shard.header_len + info.data_offsets.1;
        let bytes = shard.map.get(start..end).ok_or_else(|| Error::Safetensors {
            path: shard.path.clone(),
            msg: format!("tensor {name} lies outside the file"),
        })?;
        Ok(TensorView {
            dtype,
            shape: info.shape.clone(),
            bytes,
        })
    }

    /// Tells the OS that tensor `name` has been read: its file pages may leave this process's
    /// resident memory (they are re-read from the file if touched again), so loading holds
    /// about one tensor at a time rather than the whole mapping.
    fn drop_pages(&self, name: &str) {
        let Some(&s) = self.index.get(name) else { return };
        let shard = &self.shards[s];
        let Some(info) = shard.meta.info(name) else { return };
        const PAGE: usize = 4096;
        let start = (8 + shard.header_len + info.data_offsets.0).next_multiple_of(PAGE);
        let end = (8 + shard.header_len + info.data_offsets.1) / PAGE * PAGE;
        if end > start {
            #[cfg(unix)]
            if let ShardBytes::Mapped(map) = &shard.map {
                // SAFETY: the mapping is read-only and file-backed: dropped pages are re-read
                // from the file on the next access, so no data can be lost or changed.
                unsafe {
                    let _ = map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start);
                }
            }
        }
    }

    /// Total bytes of tensor data in the shards.
    pub fn file_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.map.len() as u64).sum()
    }
}

/// The `weight_map` of a `model.safetensors.index.json`: tensor name → shard file name, every
/// shard name checked to be a plain relative name inside the model directory.
pub fn read_weight_map(index_path: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
    parse_weight_map(&text, index_path)
}

/// [`read_weight_map`] on the index's text (`index_path` names it in errors).
pub fn parse_weight_map(index_json: &str, index_path: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    let bad = |msg: String| Error::Safetensors {
        path: index_path.to_path_buf(),
        msg,
    };
    let v: serde_json::Value = serde_json::from_str(index_json).map_err(|e| bad(format!("invalid index: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("index has no `weight_map` object".into()))?;
    let mut out = std::collections::BTreeMap::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("weight_map[{tensor:?}] is not a file name")))?;
        crate::files::check_relative_name(index_path, file)?;
        out.insert(tensor.clone(), file.to_string());
    }
    if out.is_empty() {
        return Err(bad("the weight_map is empty".into()));
    }
    Ok(out)
}

/// The shard file names of an index (text `index_json`), checked, sorted, without repeats.
pub fn shard_names(index_json: &str, index_path: &Path) -> Result<Vec<String>> {
    let mut files: Vec<String> = parse_weight_map(index_json, index_path)?.into_values().collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// The storage format of a matrix when the model is loaded as `requested` — the default
/// policy, chosen by measurement on the fixtures (README "Quantization"):
/// - projections and experts take the requested format;
/// - at q4_0 the embedding / head stays q8_0 (it cut the KL divergence to transformers by
///   15–40% on the fixtures, for +67 MB resident and read per token on the 8B model);
/// - the router stays f16: it is tiny and expert choice is sensitive to it;
/// - a matrix whose rows are not whole 32-weight blocks falls back to f16.
pub fn storage_format(spec: &MatSpec, requested: DType) -> DType {
    let requested = requested.conversion_target();
    let want = match (requested, spec.role) {
        (DType::F32 | DType::F16, _) => return requested,
        (_, Role::Router) => DType::F16,
        (DType::Q4_0, Role::Embed | Role::Head) => DType::Q8_0,
        _ => requested,
    };
    if want.fits_cols(spec.cols) {
        want
    } else {
        DType::F16
    }
}

/// Metadata keys of checkpoints written by `lfm quantize`.
pub const META_LAYOUT: &str = "lfm_wgpu.layout";
pub const META_DTYPE: &str = "lfm_wgpu.dtype";
pub const META_POLICY: &str = "lfm_wgpu.policy";
/// Per matrix: `lfm_wgpu.format.<label>` = its storage format.
pub const META_FORMAT_PREFIX: &str = "lfm_wgpu.format.";
/// Version of the engine layout written by `lfm quantize`.
pub const LAYOUT_VERSION: &str = "1";

fn prequantized_dtype(shards: &[Shard]) -> Result<Option<DType>> {
    let mut found = None;
    for sh in shards {
        let Some(meta) = sh.meta.metadata() else { continue };
        let Some(layout) = meta.get(META_LAYOUT) else { continue };
        let bad = |msg: String| Error::Safetensors {
            path: sh.path.clone(),
            msg,
        };
        if layout != LAYOUT_VERSION {
            return Err(bad(format!(
                "engine layout version {layout:?} is not supported (expected {LAYOUT_VERSION})"
            )));
        }
        let d = meta
            .get(META_DTYPE)
            .ok_or_else(|| bad(format!("{META_LAYOUT} without {META_DTYPE}")))?;
        found = Some(DType::parse(d).map_err(|_| bad(format!("unknown format tag {d:?} in {META_DTYPE}")))?);
    }
    Ok(found)
}

impl Checkpoint {
    fn stored_format(&self, label: &str) -> Result<Option<DType>> {
        let key = format!("{META_FORMAT_PREFIX}{label}");
        for sh in &self.shards {
            if let Some(tag) = sh.meta.metadata().as_ref().and_then(|m| m.get(&key)) {
                return DType::parse(tag).map(Some).map_err(|_| Error::Safetensors {
                    path: sh.path.clone(),
                    msg: format!("unknown format tag {tag:?} for {label}"),
                });
            }
        }
        Ok(None)
    }
}

impl Source for Checkpoint {
    fn config(&self) -> &Config {
        &self.config
    }

    fn stored(&self, spec: &MatSpec) -> Result<Option<StoredMatrix<'_>>> {
        if self.prequantized.is_none() {
            return Ok(None);
        }
        let dtype = self.stored_format(&spec.label)?.ok_or_else(|| Error::MissingTensor {
            name: format!("{META_FORMAT_PREFIX}{} (metadata)", spec.label),
            dir: self.dir.clone(),
        })?;
        let (row_data, row_scales) = stored_row_bytes(dtype, spec.cols);
        let data = self.raw(&spec.label, safetensors::Dtype::U8, &[spec.rows, row_data])?;
        let scales = match row_scales {
            0 => &[][..],
            n => self.raw(
                &format!("{}.scales", spec.label),
                safetensors::Dtype::U8,
                &[spec.rows, n],
            )?,
        };
        check_stored_finite(&spec.label, dtype, data, scales)?;
        Ok(Some(StoredMatrix {
            dtype,
            data: data.into(),
            scales: scales.into(),
        }))
    }

    fn read_f32(&self, name: &str, shape: &[usize], out: &mut [f32]) -> Result<()> {
        self.tensor(name, shape)?.read_f32(out);
        self.drop_pages(name);
        DType::F32.check_values(name, out)
    }

    fn release(&self, spec: &MatSpec) {
        self.drop_pages(&spec.label);
        self.drop_pages(&format!("{}.scales", spec.label));
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Checks that a matrix stored in the engine layout holds no NaN or infinity: its f16 / f32
/// values, or the f16 scales of its blocks (quants are integers). The error names the matrix
/// (`label`, or `label.scales` with the block's index) and the index of the first bad value.
fn check_stored_finite(label: &str, dtype: DType, data: &[u8], scales: &[u8]) -> Result<()> {
    let Some(at) = crate::blocks::first_non_finite(dtype, data, scales) else {
        return Ok(());
    };
    let (tensor, index, value) = match dtype {
        DType::F32 => (
            label.to_string(),
            at,
            f32::from_le_bytes(data[at * 4..at * 4 + 4].try_into().expect("4 bytes")),
        ),
        DType::F16 => (
            label.to_string(),
            at,
            f16::from_le_bytes([data[at * 2], data[at * 2 + 1]]).to_f32(),
        ),
        _ => {
            let (bv, _, sb) = dtype.block();
            let block = at / bv;
            let s = &scales[block * sb..(block + 1) * sb];
            let value = crate::blocks::f16_fields(dtype)
                .iter()
                .map(|&f| f16::from_le_bytes([s[f], s[f + 1]]).to_f32())
                .find(|v| !v.is_finite())
                .unwrap_or(f32::NAN);
            (format!("{label}.scales"), block, value)
        }
    };
    Err(Error::NonFinite { tensor, index, value })
}

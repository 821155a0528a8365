//! A checkpoint whose bytes arrive piece by piece (a page: `fetch` Range requests on the
//! Hub's resolve URLs, or slices of a picked `File`), loaded with one matrix or vector in host
//! memory at a time: a safetensors file ([`Checkpoint::streamed`]) or a GGUF file
//! (`GgufModel::streamed`), each a [`Streamable`] source.
//!
//! The header is read first (the source's constructor). The loader then
//! asks for the byte ranges of the next item in load order ([`StreamedLoad::wanted`]: one
//! range per on-disk tensor), takes them ([`StreamedLoad::feed`]), hands the item to the sink
//! as soon as all are here and drops them. [`StreamedLoad::finish`] assembles the
//! [`Weights`] in the same order, so the order is the one [`Weights::load`] defines.

use super::{Checkpoint, MatSpec, ShardBytes, Source, WeightSink, Weights};
use crate::error::{Error, Result};
use crate::model::config::Config;
use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The pieces of a file present now: its length, and (offset, bytes) runs.
pub struct Pieces {
    pub len: usize,
    runs: Vec<(usize, Vec<u8>)>,
}

/// A source whose tensors arrive piece by piece.
pub trait Streamable: Source {
    /// The file bytes of tensor `name` (checked to have `shape`).
    fn range(&self, name: &str, shape: &[usize]) -> Result<Range<u64>>;
    /// The pieces present now (None: the source is not streamed).
    fn pieces(&mut self) -> Option<&mut Pieces>;
}

impl Pieces {
    /// A file of `len` bytes of which `head` (its first bytes) is here.
    pub fn new(len: usize, head: Vec<u8>) -> Self {
        Pieces {
            len,
            runs: vec![(0, head)],
        }
    }

    /// The bytes from offset 0 that are here (the header, while loading has not begun).
    pub fn head(&self) -> &[u8] {
        self.runs.iter().find(|r| r.0 == 0).map_or(&[], |r| r.1.as_slice())
    }

    pub fn get(&self, range: Range<usize>) -> Option<&[u8]> {
        self.runs.iter().find_map(|(at, bytes)| {
            let from = range.start.checked_sub(*at)?;
            bytes.get(from..from + range.len())
        })
    }

    /// The header's length and tensors, checked against the file's length (the run at 0
    /// holds the 8-byte length and the JSON header).
    pub fn metadata(&self, path: &Path) -> Result<(usize, safetensors::tensor::Metadata)> {
        let bad = |msg: String| Error::Safetensors {
            path: path.to_path_buf(),
            msg,
        };
        let head = self
            .get(0..8)
            .ok_or_else(|| bad("the file is shorter than 8 bytes".into()))?;
        let n = u64::from_le_bytes(head.try_into().expect("8 bytes"));
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= 100 << 20 && 8 + n <= self.len)
            .ok_or_else(|| {
                bad(format!(
                    "a header of {n} bytes does not fit the file ({} bytes)",
                    self.len
                ))
            })?;
        let json = self
            .get(8..8 + n)
            .ok_or_else(|| bad(format!("the header's {n} bytes were not given")))?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(json).map_err(|e| bad(format!("the header is not a JSON object: {e}")))?;
        let data = self.len - 8 - n;
        for (name, info) in header.iter().filter(|(k, _)| *k != "__metadata__") {
            let info: safetensors::tensor::TensorInfo =
                serde_json::from_value(info.clone()).map_err(|e| bad(format!("tensor {name}: {e}")))?;
            let (a, b) = info.data_offsets;
            let numel = info.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
            let want = numel.and_then(|e| e.checked_mul(info.dtype.bitsize() / 8));
            if a > b || b > data || want != Some(b - a) {
                return Err(bad(format!(
                    "tensor {name}: bytes {a}..{b} do not hold {:?} {:?} inside the file's {data} data bytes",
                    info.dtype, info.shape
                )));
            }
        }
        let meta: safetensors::tensor::Metadata = serde_json::from_slice(json)
            .map_err(|e| bad(format!("the header is not valid safetensors metadata: {e}")))?;
        Ok((n, meta))
    }
}

/// One step of the load: a matrix or a vector, as [`Weights::load`] asks for it.
#[derive(Clone, Debug)]
enum Item {
    Matrix(MatSpec),
    Vector(String, Vec<usize>),
}

impl Item {
    /// The on-disk tensors it is read from, with their shapes.
    fn tensors(&self) -> Vec<(&str, &[usize])> {
        match self {
            Item::Matrix(m) => m.parts.iter().map(|p| (p.name.as_str(), p.shape.as_slice())).collect(),
            Item::Vector(name, shape) => vec![(name.as_str(), shape.as_slice())],
        }
    }
}

/// Records the items without reading anything.
struct Plan(Vec<Item>);

impl WeightSink for Plan {
    type Matrix = ();
    type Vector = ();
    fn matrix(&mut self, _: &dyn Source, spec: &MatSpec) -> Result<()> {
        self.0.push(Item::Matrix(spec.clone()));
        Ok(())
    }
    fn vector(&mut self, _: &dyn Source, name: &str, shape: &[usize]) -> Result<()> {
        self.0.push(Item::Vector(name.to_string(), shape.to_vec()));
        Ok(())
    }
}

/// Hands back the loaded items in order, each checked to be the one asked for.
struct Replay<M, V>(VecDeque<(String, Loaded<M, V>)>);

enum Loaded<M, V> {
    Matrix(M),
    Vector(V),
}

impl<M, V> Replay<M, V> {
    fn next(&mut self, want: &str) -> Result<Loaded<M, V>> {
        match self.0.pop_front() {
            Some((name, item)) if name == want => Ok(item),
            other => Err(Error::Invalid(format!(
                "streamed load out of order: {want} asked for, {} loaded",
                other.map_or("nothing".to_string(), |o| o.0)
            ))),
        }
    }
}

impl<M, V> WeightSink for Replay<M, V> {
    type Matrix = M;
    type Vector = V;
    fn matrix(&mut self, _: &dyn Source, spec: &MatSpec) -> Result<M> {
        match self.next(&spec.label)? {
            Loaded::Matrix(m) => Ok(m),
            Loaded::Vector(_) => Err(Error::Invalid(format!("{}: loaded as a vector", spec.label))),
        }
    }
    fn vector(&mut self, _: &dyn Source, name: &str, _: &[usize]) -> Result<V> {
        match self.next(name)? {
            Loaded::Vector(v) => Ok(v),
            Loaded::Matrix(_) => Err(Error::Invalid(format!("{name}: loaded as a matrix"))),
        }
    }
}

/// A checkpoint being loaded from pieces into a sink of `M` matrices and `V` vectors.
pub struct StreamedLoad<M, V> {
    src: Box<dyn Streamable>,
    items: Vec<Item>,
    next: usize,
    loaded: VecDeque<(String, Loaded<M, V>)>,
}

impl Checkpoint {
    /// A safetensors file that arrives in pieces: `header` holds at least its first 8 + n
    /// bytes (the length field and the JSON header), `len` is its size; `name` names it.
    pub fn streamed(name: &str, config: Config, header: Vec<u8>, len: u64) -> Result<Self> {
        let path = PathBuf::from(name);
        let len = usize::try_from(len).map_err(|_| Error::Safetensors {
            path: path.clone(),
            msg: format!("{len} bytes is more than this machine can address"),
        })?;
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let ckpt = Checkpoint::assemble(
            &dir,
            config,
            &dir.join("model.safetensors.index.json"),
            None,
            vec![(name.to_string(), path, ShardBytes::Streamed(Pieces::new(len, header)))],
        )?;
        if let Some(p) = ckpt.prequantized {
            return Err(Error::Invalid(format!(
                "{name}: a checkpoint written by `lfm quantize` ({p}) cannot be streamed; use the original"
            )));
        }
        Ok(ckpt)
    }
}

impl Streamable for Checkpoint {
    fn range(&self, name: &str, _shape: &[usize]) -> Result<Range<u64>> {
        let shard = &self.shards[0];
        let info = shard.meta.info(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            dir: self.dir.clone(),
        })?;
        let base = (8 + shard.header_len) as u64;
        Ok(base + info.data_offsets.0 as u64..base + info.data_offsets.1 as u64)
    }

    fn pieces(&mut self) -> Option<&mut Pieces> {
        match &mut self.shards.first_mut()?.map {
            ShardBytes::Streamed(p) => Some(p),
            _ => None,
        }
    }
}

impl<M, V> StreamedLoad<M, V> {
    /// Plans the load of `src` (nothing is read yet).
    pub fn new(mut src: Box<dyn Streamable>) -> Result<Self> {
        if src.pieces().is_none() {
            return Err(Error::Invalid(format!(
                "{} is not a file arriving in pieces",
                src.describe()
            )));
        }
        let mut plan = Plan(Vec::new());
        Weights::load(src.as_ref(), &mut plan)?;
        Ok(StreamedLoad {
            src,
            items: plan.0,
            next: 0,
            loaded: VecDeque::new(),
        })
    }

    pub fn config(&self) -> &Config {
        self.src.config()
    }

    /// The checkpoint as a source (its config and tensor list: the memory estimate).
    pub fn source(&self) -> &dyn Source {
        self.src.as_ref()
    }

    /// Items loaded so far, and in all.
    pub fn progress(&self) -> (usize, usize) {
        (self.next, self.items.len())
    }

    /// The file byte ranges the next item needs (one per tensor), or None when every item
    /// is loaded. An unknown tensor is an error naming it.
    pub fn wanted(&self) -> Result<Option<Vec<Range<u64>>>> {
        let Some(item) = self.items.get(self.next) else {
            return Ok(None);
        };
        let ranges = item
            .tensors()
            .into_iter()
            .map(|(name, shape)| self.src.range(name, shape))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(ranges))
    }

    /// Takes `bytes` at file offset `at`. Once the next item's ranges are all here, it goes
    /// to `sink` and its bytes are dropped; returns whether that happened.
    pub fn feed(&mut self, at: u64, bytes: Vec<u8>, sink: &mut dyn WeightSink<Matrix = M, Vector = V>) -> Result<bool> {
        let Some(wanted) = self.wanted()? else {
            return Err(Error::Invalid("every tensor is loaded already".into()));
        };
        let pieces = self.src.pieces().expect("checked in new");
        pieces.runs.push((at as usize, bytes));
        let have = |r: &Range<u64>| pieces.get(r.start as usize..r.end as usize).is_some();
        if !wanted.iter().all(have) {
            return Ok(false);
        }
        let (name, loaded) = match &self.items[self.next] {
            Item::Matrix(spec) => (
                spec.label.clone(),
                Loaded::Matrix(sink.matrix(self.src.as_ref(), spec)?),
            ),
            Item::Vector(name, shape) => (
                name.clone(),
                Loaded::Vector(sink.vector(self.src.as_ref(), name, shape)?),
            ),
        };
        self.loaded.push_back((name, loaded));
        self.next += 1;
        self.src.pieces().expect("checked in new").runs.clear();
        Ok(true)
    }

    /// The loaded weights, once [`Self::wanted`] is None.
    pub fn finish(self) -> Result<Weights<M, V>> {
        if self.next < self.items.len() {
            return Err(Error::Invalid(format!(
                "streamed load stopped after {} of {} tensors",
                self.next,
                self.items.len()
            )));
        }
        Weights::load(self.src.as_ref(), &mut Replay(self.loaded))
    }
}

//! The GGUF container, memory-mapped and never read whole.
//!
//! Layout (little-endian): `"GGUF"`, version u32 (2 or 3), tensor count u64, metadata count
//! u64, the metadata (key string, value type u32, value), the tensor infos (name string,
//! n_dims u32, `ne[n_dims]` u64 innermost first, ggml type u32, offset u64), padding to
//! `general.alignment` (default 32), then the tensor data; offsets are relative to its start.
//! Strings are a u64 length and UTF-8 bytes. Version 1 (u32 counts) and big-endian files are
//! refused.
//!
//! Every count and length is checked against the bytes left before anything is allocated for
//! it, and every tensor against the file's end, its alignment and the other tensors, so a
//! lying header gives [`Error::Gguf`] naming the field, never a panic or a huge allocation.
//!
//! A file may also arrive in pieces (a page's downloads, [`GgufFile::streamed`]): the header
//! from a prefix of the file, the tensors' bytes as the loader asks for them.

use super::GgmlType;
use crate::error::{Error, Result};
use crate::model::weights::Pieces;
#[cfg(not(target_arch = "wasm32"))]
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Most dimensions of a ggml tensor.
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of metadata arrays accepted (real files use 1).
const MAX_ARRAY_DEPTH: usize = 8;
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    /// Any integer type, when non-negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(x) => Some(x.into()),
            Value::U16(x) => Some(x.into()),
            Value::U32(x) => Some(x.into()),
            Value::U64(x) => Some(x),
            Value::I8(x) => u64::try_from(x).ok(),
            Value::I16(x) => u64::try_from(x).ok(),
            Value::I32(x) => u64::try_from(x).ok(),
            Value::I64(x) => u64::try_from(x).ok(),
            _ => None,
        }
    }

    /// Any integer or float type.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(x) => Some(x.into()),
            Value::F64(x) => Some(x),
            Value::I8(x) => Some(x.into()),
            Value::I16(x) => Some(x.into()),
            Value::I32(x) => Some(x.into()),
            Value::I64(x) => Some(x as f64),
            _ => self.as_u64().map(|x| x as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The GGUF name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "uint8",
            Value::I8(_) => "int8",
            Value::U16(_) => "uint16",
            Value::I16(_) => "int16",
            Value::U32(_) => "uint32",
            Value::I32(_) => "int32",
            Value::U64(_) => "uint64",
            Value::I64(_) => "int64",
            Value::F32(_) => "float32",
            Value::F64(_) => "float64",
            Value::Bool(_) => "bool",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
        }
    }
}

/// One tensor's header entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ne, innermost first: an HF `[out, in]` matrix is `[in, out]`.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Start of the data, relative to the data section.
    pub offset: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// `dims` as usize (they were checked to fit when the file was opened).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().map(|&d| d as usize).collect()
    }
}

/// An opened GGUF file: metadata and tensor infos parsed, data left in the mapping.
pub struct GgufFile {
    pub path: PathBuf,
    data: Data,
    pub version: u32,
    pub alignment: u64,
    /// Byte offset of the data section in the file.
    pub data_start: u64,
    meta: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    /// Raised when the file is dropped: the background reader ([`Self::prefetch`]) stops.
    /// None until it starts.
    prefetch_stop: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// The file's bytes: mapped, or the pieces that have arrived.
enum Data {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(Mmap),
    Streamed(Pieces),
}

impl Data {
    fn len(&self) -> u64 {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Data::Mapped(m) => m.len() as u64,
            Data::Streamed(p) => p.len as u64,
        }
    }
}

impl Drop for GgufFile {
    fn drop(&mut self) {
        if let Some(stop) = self.prefetch_stop.get() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.meta.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// A parsed header.
struct Header {
    version: u32,
    alignment: u64,
    data_start: u64,
    meta: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
}

/// A bounds-checked little-endian reader over the header bytes: the file, or a prefix of it
/// (`len`: the file's length; `short` is raised when a longer prefix would have helped).
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
    len: u64,
    short: bool,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: String) -> Error {
        Error::Gguf {
            path: self.path.to_path_buf(),
            msg,
        }
    }

    /// Bytes left in the file.
    fn left(&self) -> u64 {
        self.len - self.pos as u64
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.left() {
            return Err(self.err(format!(
                "header cut while reading {what}: {n} bytes needed at offset {}, the file has {}",
                self.pos, self.len
            )));
        }
        if n > (self.buf.len() - self.pos) as u64 {
            self.short = true;
            return Err(self.err(format!(
                "{what} lies past the first {} bytes given of the header",
                self.buf.len()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let b = self.bytes(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count of items of at least `min_size` bytes each, checked against the bytes left.
    fn count(&mut self, min_size: u64, what: &str) -> Result<u64> {
        let n = self.u64(what)?;
        if n > self.left() / min_size.max(1) {
            return Err(self.err(format!(
                "{what} {n} is impossible: only {} bytes are left in the file",
                self.left()
            )));
        }
        Ok(n)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(&format!("the length of {what}"))?;
        if len > self.left() {
            return Err(self.err(format!(
                "{what}: string length {len} at offset {} runs past the end of the file ({} bytes)",
                self.pos - 8,
                self.len
            )));
        }
        let b = self.bytes(len, what)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn value(&mut self, ty: u32, what: &str, depth: usize) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>(what)?[0]),
            1 => Value::I8(self.array::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("{what}: bool byte {b} is neither 0 nor 1"))),
            },
            8 => Value::Str(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!("{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}")));
                }
                let elem = self.u32(&format!("the element type of {what}"))?;
                let min = min_value_size(elem)
                    .ok_or_else(|| self.err(format!("{what}: unknown array element type {elem}")))?;
                let n = self.count(min, &format!("the length of array {what}"))?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, what, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            t => return Err(self.err(format!("{what}: unknown metadata value type {t}"))),
        })
    }
}

/// Fewest bytes a value of type `ty` takes (None: unknown type).
fn min_value_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

impl GgufFile {
    /// Opens and checks `path`; tensor data stays on disk until read.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the mapping is only read; a concurrent writer would be the user's error, and
        // every offset is validated against the mapping's length before use.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path, Data::Mapped(map)).map_err(|(e, _)| e)
    }

    /// Parses a GGUF held in memory (copied into an anonymous mapping); `path` names it in
    /// messages.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let mut m = memmap2::MmapMut::map_anon(bytes.len().max(1)).map_err(|e| Error::io(path, e))?;
        m[..bytes.len()].copy_from_slice(bytes);
        let map = m.make_read_only().map_err(|e| Error::io(path, e))?;
        Self::parse(path, Data::Mapped(map)).map_err(|(e, _)| e)
    }

    /// A file of `len` bytes arriving in pieces, of which `head` (its first bytes) is here:
    /// None when the header runs past `head` (ask again with more), else the file with its
    /// header checked, whose tensors' bytes come through [`Self::pieces`].
    pub fn streamed(path: &Path, mut head: Vec<u8>, len: u64) -> Result<Option<Self>> {
        let len_usize = usize::try_from(len).map_err(|_| Error::Gguf {
            path: path.to_path_buf(),
            msg: format!("{len} bytes is more than this machine can address"),
        })?;
        head.truncate(len_usize);
        let data = Data::Streamed(Pieces::new(len_usize, head));
        match Self::parse(path, data) {
            Ok(f) => Ok(Some(f)),
            Err((_, true)) => Ok(None),
            Err((e, false)) => Err(e),
        }
    }

    /// The pieces of a streamed file (None for a mapped one).
    pub fn pieces(&mut self) -> Option<&mut Pieces> {
        match &mut self.data {
            Data::Streamed(p) => Some(p),
            #[cfg(not(target_arch = "wasm32"))]
            Data::Mapped(_) => None,
        }
    }

    /// Parses the header; the error says whether a longer prefix would have helped.
    fn parse(path: &Path, data: Data) -> std::result::Result<Self, (Error, bool)> {
        let head = match &data {
            #[cfg(not(target_arch = "wasm32"))]
            Data::Mapped(m) => &m[..],
            Data::Streamed(p) => p.head(),
        };
        let mut c = Cursor {
            buf: head,
            pos: 0,
            path,
            len: data.len(),
            short: false,
        };
        match Self::read_header(&mut c) {
            Ok(h) => {
                let mut file = GgufFile {
                    path: path.to_path_buf(),
                    version: h.version,
                    alignment: h.alignment,
                    data_start: h.data_start,
                    meta: h.meta,
                    meta_index: h.meta_index,
                    tensor_index: HashMap::new(),
                    tensors: h.tensors,
                    data,
                    prefetch_stop: std::sync::OnceLock::new(),
                };
                file.check_tensors().map_err(|e| (e, false))?;
                Ok(file)
            }
            Err(e) => Err((e, c.short)),
        }
    }

    fn read_header(c: &mut Cursor) -> Result<Header> {
        let magic = c.array::<4>("the magic")?;
        if &magic != b"GGUF" {
            return Err(c.err(format!("not a GGUF file (magic {magic:02x?}, expected \"GGUF\")")));
        }
        let version = c.u32("the version")?;
        match version {
            2 | 3 => {}
            1 => return Err(c.err("GGUF version 1 is not supported (only 2 and 3)".into())),
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(c.err("big-endian GGUF files are not supported".into()))
            }
            v => return Err(c.err(format!("unknown GGUF version {v} (only 2 and 3)"))),
        }
        // A tensor info takes at least 24 bytes, a metadata entry at least 13.
        let n_tensors = c.count(24, "tensor count")?;
        let n_meta = c.count(13, "metadata count")?;
        let mut meta = Vec::with_capacity(n_meta as usize);
        let mut meta_index = HashMap::new();
        for i in 0..n_meta {
            let key = c.string(&format!("metadata key {i}"))?;
            let ty = c.u32(&format!("the type of metadata {key}"))?;
            let value = c.value(ty, &format!("metadata {key}"), 0)?;
            if meta_index.insert(key.clone(), meta.len()).is_some() {
                return Err(c.err(format!("metadata key {key} appears twice")));
            }
            meta.push((key, value));
        }
        let alignment = match meta_index.get("general.alignment").map(|&i| &meta[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => *a as u64,
            Some(v) => return Err(c.err(format!("general.alignment {v:?} is not a power of two (u32)"))),
        };
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            tensors.push(tensor_info(c, i)?);
        }
        let data_start = (c.pos as u64).next_multiple_of(alignment);
        Ok(Header {
            version,
            alignment,
            data_start,
            meta,
            meta_index,
            tensors,
        })
    }

    fn err(&self, msg: String) -> Error {
        Error::Gguf {
            path: self.path.clone(),
            msg,
        }
    }

    /// Each tensor is unique, aligned, inside the file, and overlaps no other.
    fn check_tensors(&mut self) -> Result<()> {
        let len = self.data.len();
        for (i, t) in self.tensors.iter().enumerate() {
            if self.tensor_index.insert(t.name.clone(), i).is_some() {
                return Err(self.err(format!("tensor {} appears twice", t.name)));
            }
            if !t.offset.is_multiple_of(self.alignment) {
                return Err(self.err(format!(
                    "tensor {}: offset {} is not a multiple of the alignment {}",
                    t.name, t.offset, self.alignment
                )));
            }
            let end = self
                .data_start
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes));
            if end.is_none_or(|e| e > len) {
                return Err(self.err(format!(
                    "tensor {}: data at {}+{} ({} bytes) runs past the end of the file ({len} bytes)",
                    t.name, self.data_start, t.offset, t.n_bytes
                )));
            }
        }
        let mut order: Vec<&TensorInfo> = self.tensors.iter().collect();
        order.sort_by_key(|t| t.offset);
        for w in order.windows(2) {
            if w[0].offset + w[0].n_bytes > w[1].offset {
                return Err(self.err(format!(
                    "tensors {} and {} overlap (offsets {} + {} bytes and {})",
                    w[0].name, w[1].name, w[0].offset, w[0].n_bytes, w[1].offset
                )));
            }
        }
        Ok(())
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.data.len()
    }

    /// Metadata `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.meta[i].1)
    }

    /// All metadata in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.meta.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Metadata `key` as a string; an error when absent or not a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Ok(s),
            Some(v) => Err(self.err(format!("metadata {key} is a {}, expected a string", v.type_name()))),
            None => Err(self.err(format!("metadata {key} is missing"))),
        }
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The file bytes of `t` (checked to lie inside the file at open).
    pub fn tensor_range(&self, t: &TensorInfo) -> std::ops::Range<u64> {
        let start = self.data_start + t.offset;
        start..start + t.n_bytes
    }

    /// The bytes of `t`; an error when the file is streamed and they have not arrived.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> Result<&[u8]> {
        self.bytes(self.tensor_range(t), &t.name)
    }

    /// File bytes `range` (inside the file: a tensor's, checked at open) of tensor `name`;
    /// an error when the file is streamed and they have not arrived.
    pub fn bytes(&self, range: std::ops::Range<u64>, name: &str) -> Result<&[u8]> {
        let r = range.start as usize..range.end as usize;
        match &self.data {
            #[cfg(not(target_arch = "wasm32"))]
            Data::Mapped(m) => m.get(r),
            Data::Streamed(p) => p.get(r),
        }
        .ok_or_else(|| self.err(format!("tensor {name}: bytes {range:?} are not here")))
    }

    /// Tensor `name` (GGUF name) dequantized to f32, in GGUF order (innermost dim fastest).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            dir: self.path.clone(),
        })?;
        let mut out = vec![0f32; t.n_elements() as usize];
        self.dequantize(t, self.tensor_bytes(t)?, &mut out)?;
        Ok(out)
    }

    /// An error naming `t`, its type and the supported types, unless its type is supported.
    pub(crate) fn check_supported(&self, t: &TensorInfo) -> Result<()> {
        match t.ty.is_supported() {
            true => Ok(()),
            false => Err(self.err(format!(
                "tensor {} has type {}, which is not supported (supported: {})",
                t.name,
                t.ty,
                GgmlType::supported_list()
            ))),
        }
    }

    /// Dequantizes `bytes` (all or a block-aligned part of `t`'s data) into `out`.
    pub(crate) fn dequantize(&self, t: &TensorInfo, bytes: &[u8], out: &mut [f32]) -> Result<()> {
        self.check_supported(t)?;
        super::dequant::dequantize(t.ty, bytes, out).map_err(|msg| self.err(format!("tensor {}: {msg}", t.name)))
    }

    /// Asks the OS to read `t`'s pages ahead, in the background (loading reads tensors in file
    /// order and repacks one while the next one arrives).
    pub(crate) fn will_need(&self, t: &TensorInfo) {
        #[cfg(unix)]
        if let Data::Mapped(map) = &self.data {
            let start = (self.data_start + t.offset) as usize;
            let _ = map.advise_range(memmap2::Advice::WillNeed, start, t.n_bytes as usize);
        }
        #[cfg(not(unix))]
        let _ = t;
    }

    /// Reads the data section once, in file order, on a background thread (the first call
    /// only), so that from a cold start the disk streams at its sequential speed while the
    /// loader repacks what has arrived, instead of waiting on page faults. It stops at the
    /// end, on an error, or when the file is dropped.
    pub(crate) fn prefetch(&self) {
        use std::io::{Read, Seek};
        use std::sync::atomic::{AtomicBool, Ordering};
        // Only the file this was mapped from (not a parse from memory).
        if !self.is_mapped() || std::fs::metadata(&self.path).map(|m| m.len()).ok() != Some(self.data.len()) {
            return;
        }
        let mut started = false;
        let stop = self.prefetch_stop.get_or_init(|| {
            started = true;
            std::sync::Arc::new(AtomicBool::new(false))
        });
        if !started {
            return;
        }
        let (stop, path, start) = (stop.clone(), self.path.clone(), self.data_start);
        let read = move || {
            let Ok(mut f) = std::fs::File::open(&path) else { return };
            if f.seek(std::io::SeekFrom::Start(start)).is_err() {
                return;
            }
            let mut buf = vec![0u8; 4 << 20];
            while !stop.load(Ordering::Relaxed) {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        // Without a thread (a failed spawn) loading is only slower.
        let _ = std::thread::Builder::new().name("gguf-prefetch".into()).spawn(read);
    }

    fn is_mapped(&self) -> bool {
        match self.data {
            #[cfg(not(target_arch = "wasm32"))]
            Data::Mapped(_) => true,
            Data::Streamed(_) => false,
        }
    }

    /// The tensor stored after `t` in the file, if any.
    pub(crate) fn next_in_file(&self, t: &TensorInfo) -> Option<&TensorInfo> {
        self.tensors
            .iter()
            .filter(|u| u.offset > t.offset)
            .min_by_key(|u| u.offset)
    }

    /// Tells the OS that the pages of `t` may leave this process's resident memory.
    pub(crate) fn drop_pages(&self, t: &TensorInfo) {
        const PAGE: u64 = 4096;
        let start = (self.data_start + t.offset).next_multiple_of(PAGE);
        let end = (self.data_start + t.offset + t.n_bytes) / PAGE * PAGE;
        if end > start {
            #[cfg(unix)]
            if let Data::Mapped(map) = &self.data {
                // SAFETY: the mapping is read-only and file-backed: dropped pages are re-read
                // from the file on the next access, so no data can be lost or changed.
                unsafe {
                    let _ = map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start as usize,
                        (end - start) as usize,
                    );
                }
            }
        }
    }
}

/// Reads tensor info `i`, checking its dims, type and byte size.
fn tensor_info(c: &mut Cursor, i: u64) -> Result<TensorInfo> {
    let name = c.string(&format!("the name of tensor {i}"))?;
    let n_dims = c.u32(&format!("n_dims of tensor {name}"))?;
    if n_dims == 0 || n_dims as usize > MAX_DIMS {
        return Err(c.err(format!("tensor {name}: {n_dims} dimensions (1 to {MAX_DIMS} allowed)")));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        dims.push(c.u64(&format!("dimension {d} of tensor {name}"))?);
    }
    let id = c.u32(&format!("the type of tensor {name}"))?;
    let offset = c.u64(&format!("the offset of tensor {name}"))?;
    let ty = GgmlType::from_id(id).ok_or_else(|| c.err(format!("tensor {name}: unknown ggml type id {id}")))?;
    let n = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64 && dims.iter().all(|&d| d > 0))
        .ok_or_else(|| c.err(format!("tensor {name}: invalid dimensions {dims:?}")))?;
    if !dims[0].is_multiple_of(ty.block_size()) {
        return Err(c.err(format!(
            "tensor {name}: innermost dimension {} is not a multiple of the {ty} block size {}",
            dims[0],
            ty.block_size()
        )));
    }
    let n_bytes = (n / ty.block_size())
        .checked_mul(ty.type_size())
        .ok_or_else(|| c.err(format!("tensor {name}: {n} {ty} values do not fit in a file")))?;
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
        n_bytes,
    })
}

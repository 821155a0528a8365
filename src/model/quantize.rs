//! `lfm quantize`: rewrites a checkpoint in the engine's GPU layout, so that loading it is
//! mmap + upload with no conversion.
//!
//! Every matrix of the engine's view (q|k|v fused, experts stacked) is one U8 tensor named by
//! its label, [rows, bytes per row] — quant bytes of each row's blocks, or f16 / f32 values —
//! plus `<label>.scales` [rows, 2 × blocks per row] (f16) for quantized formats. Vectors keep
//! their HF names as F32. The safetensors metadata records the layout version, the requested
//! dtype, the policy and each matrix's format. The file is written in two passes: the plan
//! (shapes only) gives the header, then tensors are converted and streamed out one on-disk
//! tensor at a time.

use super::weights::{
    storage_format, Checkpoint, MatSpec, Source, WeightSink, Weights, LAYOUT_VERSION, META_DTYPE, META_FORMAT_PREFIX,
    META_LAYOUT, META_POLICY,
};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::files::{copy_atomic, prepare_output_dir, AtomicFile};
use crate::layout::stored_row_bytes;
use half::f16;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Files copied next to the weights when present.
const SIDE_FILES: [&str; 6] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];

/// One tensor of a safetensors file being written.
pub(crate) struct Entry {
    pub name: String,
    /// safetensors dtype tag (`U8`, `F32`, `BF16`, …)
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: usize,
}

/// A safetensors file whose header is written and whose tensor data is to follow, in the
/// order of the entries; it appears at its path on `out.commit()`.
pub(crate) struct SafetensorsWriter {
    pub out: AtomicFile,
    /// Header bytes (length prefix included).
    pub header_bytes: u64,
    /// Tensor bytes the header promises.
    pub data_bytes: u64,
}

/// Starts `path` (atomically) and writes the header for `entries` with `meta` (no
/// `__metadata__` when empty); the caller then writes each entry's bytes in order and commits.
pub(crate) fn create_safetensors(
    path: &Path,
    meta: &BTreeMap<String, String>,
    entries: &[Entry],
) -> Result<SafetensorsWriter> {
    let mut header = serde_json::Map::new();
    if !meta.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(meta).expect("strings"));
    }
    let mut at = 0usize;
    for e in entries {
        header.insert(
            e.name.clone(),
            serde_json::json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [at, at + e.bytes]}),
        );
        at += e.bytes;
    }
    let mut text = serde_json::to_string(&header).expect("json");
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = AtomicFile::create(path)?;
    out.write_all(&(text.len() as u64).to_le_bytes())
        .and_then(|_| out.write_all(text.as_bytes()))
        .map_err(|e| Error::io(path, e))?;
    Ok(SafetensorsWriter {
        out,
        header_bytes: 8 + text.len() as u64,
        data_bytes: at as u64,
    })
}

/// Pass 1: the tensors to write, in load order, and each matrix's format.
struct Plan {
    dtype: DType,
    entries: Vec<Entry>,
    formats: BTreeMap<String, String>,
}

impl WeightSink for Plan {
    type Matrix = ();
    type Vector = ();

    fn matrix(&mut self, _: &dyn Source, spec: &MatSpec) -> Result<()> {
        let f = storage_format(spec, self.dtype);
        let (data, scales) = stored_row_bytes(f, spec.cols);
        self.formats
            .insert(format!("{META_FORMAT_PREFIX}{}", spec.label), f.name().to_string());
        self.entries.push(Entry {
            name: spec.label.clone(),
            dtype: "U8",
            shape: vec![spec.rows, data],
            bytes: spec.rows * data,
        });
        if scales > 0 {
            self.entries.push(Entry {
                name: format!("{}.scales", spec.label),
                dtype: "U8",
                shape: vec![spec.rows, scales],
                bytes: spec.rows * scales,
            });
        }
        Ok(())
    }

    fn vector(&mut self, _: &dyn Source, name: &str, shape: &[usize]) -> Result<()> {
        self.entries.push(Entry {
            name: name.to_string(),
            dtype: "F32",
            shape: shape.to_vec(),
            bytes: shape.iter().product::<usize>() * 4,
        });
        Ok(())
    }
}

/// Pass 2: converts and appends each tensor's bytes in the planned order.
struct Writer<'a, W: Write> {
    dtype: DType,
    out: W,
    path: &'a Path,
    written: u64,
    /// Planned bytes of tensor data.
    total: u64,
    progress: &'a mut dyn FnMut(u64, u64),
}

impl<W: Write> Writer<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| Error::io(self.path, e))?;
        self.written += bytes.len() as u64;
        (self.progress)(self.written, self.total);
        Ok(())
    }
}

impl<W: Write> WeightSink for Writer<'_, W> {
    type Matrix = ();
    type Vector = ();

    fn matrix(&mut self, src: &dyn Source, spec: &MatSpec) -> Result<()> {
        let f = storage_format(spec, self.dtype);
        let mut scales_all: Vec<u16> = Vec::new();
        let mut buf = Vec::new();
        for part in &spec.parts {
            buf.resize(part.shape.iter().product(), 0.0);
            src.read_f32(&part.name, &part.shape, &mut buf)?;
            f.check_values(&part.name, &buf)?;
            let bytes: Vec<u8> = match f.quant() {
                Some(q) => {
                    let mut quants = Vec::new();
                    crate::quant::quantize_row(q, &buf, &mut quants, &mut scales_all)?;
                    quants
                }
                None if f == DType::F32 => bytemuck::cast_slice(&buf).to_vec(),
                None => buf.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
            };
            self.put(&bytes)?;
        }
        if f.quant().is_some() {
            let bytes: Vec<u8> = scales_all.iter().flat_map(|s| s.to_le_bytes()).collect();
            self.put(&bytes)?;
        }
        Ok(())
    }

    fn vector(&mut self, src: &dyn Source, name: &str, shape: &[usize]) -> Result<()> {
        let mut data = vec![0f32; shape.iter().product()];
        src.read_f32(name, shape, &mut data)?;
        self.put(bytemuck::cast_slice(&data))
    }
}

/// What `quantize` did.
#[derive(Debug)]
pub struct QuantizeReport {
    pub bytes_out: u64,
    pub formats: BTreeMap<String, usize>,
}

/// Writes `src` as `dtype` in the engine's layout into `out_dir`, with the config and
/// tokenizer files copied over. `out_dir` must not overlap the source and must be new or
/// empty, unless `force` (then the weights in it are replaced); every file appears whole
/// or not at all. `progress` gets (bytes written, bytes to write).
pub fn quantize(
    src: &Checkpoint,
    out_dir: &Path,
    dtype: DType,
    force: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<QuantizeReport> {
    if let Some(d) = src.prequantized {
        return Err(Error::Invalid(format!(
            "{} is already in the engine layout ({d}); quantize from the original checkpoint",
            src.dir.display()
        )));
    }
    prepare_output_dir(out_dir, Some(&src.dir), force)?;
    let mut plan = Plan {
        dtype,
        entries: Vec::new(),
        formats: BTreeMap::new(),
    };
    Weights::load(src, &mut plan)?;

    let mut meta: BTreeMap<String, String> = plan.formats.clone();
    meta.insert(META_LAYOUT.into(), LAYOUT_VERSION.into());
    meta.insert(META_DTYPE.into(), dtype.name().into());
    meta.insert(
        META_POLICY.into(),
        "projections and experts as requested; embedding/head q8_0 at q4_0; router f16; rows not whole 32-blocks f16; vectors f32".into(),
    );
    meta.insert("format".into(), "pt".into());
    let path = out_dir.join("model.safetensors");
    let file = create_safetensors(&path, &meta, &plan.entries)?;
    let at = file.data_bytes;
    let mut w = Writer {
        dtype,
        out: file.out,
        path: &path,
        written: 0,
        total: at,
        progress,
    };
    Weights::load(src, &mut w)?;
    if w.written != at {
        return Err(Error::Invalid(format!(
            "wrote {} bytes of tensor data, planned {at}",
            w.written
        )));
    }
    w.out.commit()?;
    for f in SIDE_FILES {
        let from = src.dir.join(f);
        if from.exists() {
            copy_atomic(&from, &out_dir.join(f))?;
        }
    }
    let mut formats = BTreeMap::new();
    for f in plan.formats.values() {
        *formats.entry(f.clone()).or_insert(0) += 1;
    }
    Ok(QuantizeReport {
        bytes_out: file.header_bytes + at,
        formats,
    })
}

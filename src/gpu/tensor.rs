//! Weight matrices on the GPU, split by rows across bindings when larger than the limit.
//!
//! A [`GpuMatrix`] [rows, cols] is row-major; its rows are cut into [`MatChunk`]s of at most
//! `Gpu::max_binding` bytes, each its own buffer, never splitting a group of `group_rows`
//! rows (one expert). Kernels are dispatched once per chunk with the chunk's first row.

use super::context::Gpu;
use crate::error::{Error, Result};
use half::f16;

/// Storage type of weights (activations are always f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
}

impl DType {
    pub fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            other => Err(Error::Invalid(format!("unknown dtype {other:?} (f32 or f16)"))),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
        })
    }
}

/// Rows [row0, row0 + rows) of a matrix, in one buffer.
#[derive(Debug)]
pub struct MatChunk {
    pub buffer: wgpu::Buffer,
    pub row0: u32,
    pub rows: u32,
}

#[derive(Debug)]
pub struct GpuMatrix {
    pub label: String,
    pub rows: usize,
    pub cols: usize,
    pub group_rows: usize,
    pub dtype: DType,
    pub chunks: Vec<MatChunk>,
}

/// Cuts `rows` into ranges of whole groups, each at most `max_bytes`.
pub fn plan_chunks(
    label: &str,
    rows: usize,
    cols: usize,
    group_rows: usize,
    elem: u64,
    max_bytes: u64,
) -> Result<Vec<(usize, usize)>> {
    let group_bytes = group_rows as u64 * cols as u64 * elem;
    if group_bytes > max_bytes {
        return Err(Error::Limit {
            what: format!("{label}: one group of {group_rows}×{cols} weights (bytes) in a single storage binding"),
            needed: group_bytes,
            limit: max_bytes,
        });
    }
    let groups_per_chunk = (max_bytes / group_bytes) as usize;
    let rows_per_chunk = groups_per_chunk * group_rows;
    Ok((0..rows)
        .step_by(rows_per_chunk)
        .map(|r| (r, rows_per_chunk.min(rows - r)))
        .collect())
}

impl GpuMatrix {
    /// Allocates the matrix and fills it from `fill`, which must push exactly rows·cols
    /// values, in row order, through the writer (converted to `dtype` on the way).
    pub fn create(
        gpu: &Gpu,
        label: &str,
        (rows, cols, group_rows): (usize, usize, usize),
        dtype: DType,
        fill: impl FnOnce(&mut MatWriter) -> Result<()>,
    ) -> Result<Self> {
        let plan = plan_chunks(label, rows, cols, group_rows, dtype.size(), gpu.max_binding)?;
        let chunks: Vec<MatChunk> = plan
            .iter()
            .enumerate()
            .map(|(i, &(row0, n))| MatChunk {
                buffer: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("{label}[{i}]")),
                    size: (n as u64 * cols as u64 * dtype.size()).next_multiple_of(4),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: true,
                }),
                row0: row0 as u32,
                rows: n as u32,
            })
            .collect();
        {
            let mut views = Vec::with_capacity(chunks.len());
            for c in &chunks {
                views.push(c.buffer.get_mapped_range_mut(..).map_err(|e| Error::Gpu {
                    during: format!("mapping {label} for upload"),
                    msg: e.to_string(),
                })?);
            }
            let mut w = MatWriter {
                views,
                chunk_elems: plan.iter().map(|&(_, n)| n * cols).collect(),
                dtype,
                chunk: 0,
                at: 0,
            };
            fill(&mut w)?;
            let written: usize = w.chunk_elems[..w.chunk].iter().sum::<usize>() + w.at;
            if written != rows * cols {
                return Err(Error::Invalid(format!(
                    "{label}: {written} values written, {} expected",
                    rows * cols
                )));
            }
        }
        for c in &chunks {
            c.buffer.unmap();
        }
        Ok(GpuMatrix {
            label: label.to_string(),
            rows,
            cols,
            group_rows,
            dtype,
            chunks,
        })
    }

    /// Uploads a host matrix (tests, synthetic weights).
    pub fn from_f32(
        gpu: &Gpu,
        label: &str,
        (rows, cols, group_rows): (usize, usize, usize),
        dtype: DType,
        data: &[f32],
    ) -> Result<Self> {
        Self::create(gpu, label, (rows, cols, group_rows), dtype, |w| w.push(data))
    }

    pub fn bytes(&self) -> u64 {
        (self.rows * self.cols) as u64 * self.dtype.size()
    }
}

/// Sequential writer into the mapped chunks of a matrix being created.
pub struct MatWriter {
    views: Vec<wgpu::BufferViewMut>,
    chunk_elems: Vec<usize>,
    dtype: DType,
    chunk: usize,
    at: usize,
}

impl MatWriter {
    /// Appends `data` (any number of whole or partial rows).
    pub fn push(&mut self, mut data: &[f32]) -> Result<()> {
        while !data.is_empty() {
            if self.chunk >= self.views.len() {
                return Err(Error::Invalid("more weight values than the matrix holds".into()));
            }
            let room = self.chunk_elems[self.chunk] - self.at;
            let n = room.min(data.len());
            let es = self.dtype.size() as usize;
            let bytes: Vec<u8> = match self.dtype {
                DType::F32 => bytemuck::cast_slice(&data[..n]).to_vec(),
                DType::F16 => data[..n].iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
            };
            self.views[self.chunk]
                .slice(self.at * es..(self.at + n) * es)
                .copy_from_slice(&bytes);
            self.at += n;
            data = &data[n..];
            if self.at == self.chunk_elems[self.chunk] {
                self.chunk += 1;
                self.at = 0;
            }
        }
        Ok(())
    }
}

//! Weight matrices on the GPU, split by rows across bindings when larger than the limit.
//!
//! A [`GpuMatrix`] [rows, cols] is row-major; its rows are cut into [`MatChunk`]s of at most
//! `Gpu::max_binding` bytes, each its own buffer, never splitting a group of `group_rows`
//! rows (one expert). Kernels are dispatched once per chunk with the chunk's first row.
//!
//! Quantized chunks are structure-of-arrays in one buffer: the quant bytes of every block
//! (row-major, blocks of 32 along a row), then one f16 scale per block from word
//! `scale_word` on — so kernels load aligned words, and one binding holds both.

use super::context::Gpu;
pub use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::{plan_chunks, stored_row_bytes, StoredMatrix};
use half::f16;

/// Rows [row0, row0 + rows) of a matrix, in one buffer.
#[derive(Debug)]
pub struct MatChunk {
    pub buffer: wgpu::Buffer,
    pub row0: u32,
    pub rows: u32,
    /// Quantized formats: word offset of the scales in `buffer`.
    pub scale_word: u32,
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
        if !dtype.fits_cols(cols) {
            return Err(Error::Invalid(format!(
                "{label}: {cols} columns cannot be stored as {dtype}"
            )));
        }
        let plan = plan_chunks(label, rows, cols, group_rows, dtype, gpu.max_binding)?;
        let chunks: Vec<MatChunk> = plan
            .iter()
            .enumerate()
            .map(|(i, &(row0, n))| {
                let (size, scale_word) = dtype.layout(n, cols);
                MatChunk {
                    buffer: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(&format!("{label}[{i}]")),
                        size,
                        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: true,
                    }),
                    row0: row0 as u32,
                    rows: n as u32,
                    scale_word,
                }
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
                chunk_rows: plan.iter().map(|&(_, n)| n).collect(),
                scale_bytes: chunks.iter().map(|c| c.scale_word as usize * 4).collect(),
                cols,
                dtype,
                chunk: 0,
                row: 0,
                pending: Vec::new(),
            };
            fill(&mut w)?;
            let written: usize = w.chunk_rows[..w.chunk].iter().sum::<usize>() + w.row;
            if written != rows || !w.pending.is_empty() {
                return Err(Error::Invalid(format!(
                    "{label}: {written} rows (+{} values) written, {rows} expected",
                    w.pending.len()
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

    /// Uploads a matrix already in the engine's layout: `data` holds the rows' values (or
    /// quant bytes, row-major blocks), `scales` the f16 scale of each block (quantized only).
    pub fn from_stored(
        gpu: &Gpu,
        label: &str,
        (rows, cols, group_rows): (usize, usize, usize),
        stored: &StoredMatrix<'_>,
    ) -> Result<Self> {
        let dtype = stored.dtype;
        let (row_data, row_scales) = stored_row_bytes(dtype, cols);
        if !dtype.fits_cols(cols) || stored.data.len() != rows * row_data || stored.scales.len() != rows * row_scales {
            return Err(Error::Invalid(format!(
                "{label}: stored {dtype} data of {} + {} bytes does not fit [{rows}, {cols}] ({} + {} expected)",
                stored.data.len(),
                stored.scales.len(),
                rows * row_data,
                rows * row_scales
            )));
        }
        let plan = plan_chunks(label, rows, cols, group_rows, dtype, gpu.max_binding)?;
        let mut chunks = Vec::with_capacity(plan.len());
        for (i, &(row0, n)) in plan.iter().enumerate() {
            let (size, scale_word) = dtype.layout(n, cols);
            let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&format!("{label}[{i}]")),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: true,
            });
            {
                let mut view = buffer.get_mapped_range_mut(..).map_err(|e| Error::Gpu {
                    during: format!("mapping {label} for upload"),
                    msg: e.to_string(),
                })?;
                let d = &stored.data[row0 * row_data..(row0 + n) * row_data];
                view.slice(..d.len()).copy_from_slice(d);
                if row_scales > 0 {
                    let sc = &stored.scales[row0 * row_scales..(row0 + n) * row_scales];
                    let at = scale_word as usize * 4;
                    view.slice(at..at + sc.len()).copy_from_slice(sc);
                }
            }
            buffer.unmap();
            chunks.push(MatChunk {
                buffer,
                row0: row0 as u32,
                rows: n as u32,
                scale_word,
            });
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

    /// Bytes resident on the GPU.
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.buffer.size()).sum()
    }
}

/// Sequential writer into the mapped chunks of a matrix being created; converts or
/// quantizes whole rows as they complete.
pub struct MatWriter {
    views: Vec<wgpu::BufferViewMut>,
    chunk_rows: Vec<usize>,
    /// Byte offset of the scales in each chunk (quantized formats).
    scale_bytes: Vec<usize>,
    cols: usize,
    dtype: DType,
    chunk: usize,
    /// Rows written into the current chunk.
    row: usize,
    /// Values of an incomplete row.
    pending: Vec<f32>,
}

impl MatWriter {
    /// Appends `data`, any number of values in row order.
    pub fn push(&mut self, mut data: &[f32]) -> Result<()> {
        if !self.pending.is_empty() {
            let need = self.cols - self.pending.len();
            let take = need.min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == self.cols {
                let row = std::mem::take(&mut self.pending);
                self.write_rows(&row)?;
            }
        }
        let whole = data.len() / self.cols * self.cols;
        if whole > 0 {
            self.write_rows(&data[..whole])?;
        }
        self.pending.extend_from_slice(&data[whole..]);
        Ok(())
    }

    fn write_rows(&mut self, mut data: &[f32]) -> Result<()> {
        let cols = self.cols;
        while !data.is_empty() {
            if self.chunk >= self.views.len() {
                return Err(Error::Invalid("more weight values than the matrix holds".into()));
            }
            let n = (self.chunk_rows[self.chunk] - self.row).min(data.len() / cols);
            let rows = &data[..n * cols];
            let view = &mut self.views[self.chunk];
            match self.dtype.quant() {
                None => {
                    let es = self.dtype.row_bytes(1) as usize;
                    let bytes: Vec<u8> = match self.dtype {
                        DType::F32 => bytemuck::cast_slice(rows).to_vec(),
                        _ => rows.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
                    };
                    let at = self.row * cols * es;
                    view.slice(at..at + bytes.len()).copy_from_slice(&bytes);
                }
                Some(q) => {
                    let (mut quants, mut scales) = (Vec::new(), Vec::new());
                    crate::quant::quantize_row(q, rows, &mut quants, &mut scales)?;
                    let blocks_before = self.row * cols / 32;
                    let at = blocks_before * q.quant_bytes_per_block();
                    view.slice(at..at + quants.len()).copy_from_slice(&quants);
                    let at = self.scale_bytes[self.chunk] + blocks_before * 2;
                    let sb: Vec<u8> = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
                    view.slice(at..at + sb.len()).copy_from_slice(&sb);
                }
            }
            self.row += n;
            data = &data[n * cols..];
            if self.row == self.chunk_rows[self.chunk] {
                self.chunk += 1;
                self.row = 0;
            }
        }
        Ok(())
    }
}

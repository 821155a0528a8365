//! Weight matrices on the GPU, split by rows across bindings when larger than the limit.
//!
//! A [`GpuMatrix`] [rows, cols] is row-major; its rows are cut into [`MatChunk`]s of at most
//! `Gpu::max_binding` bytes, each its own buffer, never splitting a group of `group_rows`
//! rows (one expert). Kernels are dispatched once per chunk with the chunk's first row.
//!
//! Block-format chunks are structure-of-arrays in one buffer: the quant bytes of every block
//! (row-major, blocks along a row), then the scale bytes of every block from word
//! `scale_word` on — so kernels load aligned words, and one binding holds both
//! ([`crate::blocks`]). Each chunk has one format; a matrix fused from parts stored in
//! different formats (a GGUF q|k|v with a Q6_K v) has a chunk per format.

use super::context::Gpu;
pub use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::{plan_chunks, plan_segments, stored_row_bytes, StoredMatrix};
use half::f16;

/// Rows [row0, row0 + rows) of a matrix, in one buffer.
#[derive(Debug)]
pub struct MatChunk {
    pub buffer: wgpu::Buffer,
    pub row0: u32,
    pub rows: u32,
    /// Block formats: word offset of the scales in `buffer`.
    pub scale_word: u32,
    pub dtype: DType,
}

#[derive(Debug)]
pub struct GpuMatrix {
    pub label: String,
    pub rows: usize,
    pub cols: usize,
    pub group_rows: usize,
    /// The format of the first chunk (the only one unless the matrix mixes formats).
    pub dtype: DType,
    pub chunks: Vec<MatChunk>,
}

impl GpuMatrix {
    /// Allocates the matrix and fills it from `fill`, which must push exactly rows·cols
    /// values, in row order, through the writer (converted to `dtype` on the way).
    pub fn create(
        gpu: &Gpu,
        label: &str,
        shape: (usize, usize, usize),
        dtype: DType,
        fill: impl FnOnce(&mut MatWriter) -> Result<()>,
    ) -> Result<Self> {
        Self::create_mixed(gpu, label, shape, &[(shape.0, dtype)], fill)
    }

    /// As [`Self::create`] for consecutive row ranges (`segments`: rows, format) stored in
    /// different formats; `fill` writes every row, as values or as engine-layout blocks.
    pub fn create_mixed(
        gpu: &Gpu,
        label: &str,
        (rows, cols, group_rows): (usize, usize, usize),
        segments: &[(usize, DType)],
        fill: impl FnOnce(&mut MatWriter) -> Result<()>,
    ) -> Result<Self> {
        if let Some((_, d)) = segments.iter().find(|(_, d)| !d.fits_cols(cols)) {
            return Err(Error::Invalid(format!(
                "{label}: {cols} columns cannot be stored as {d}"
            )));
        }
        if segments.iter().map(|s| s.0).sum::<usize>() != rows {
            return Err(Error::Invalid(format!(
                "{label}: segments do not add up to {rows} rows"
            )));
        }
        let plan = plan_segments(label, segments, cols, group_rows, gpu.max_binding)?;
        let chunks: Vec<MatChunk> = plan
            .iter()
            .enumerate()
            .map(|(i, &(row0, n, dtype))| {
                let (size, scale_word) = dtype.layout(n, cols);
                MatChunk {
                    buffer: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(&format!("{label}[{i}]")),
                        size,
                        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | gpu.weight_usage,
                        mapped_at_creation: true,
                    }),
                    row0: row0 as u32,
                    rows: n as u32,
                    scale_word,
                    dtype,
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
                chunks: chunks
                    .iter()
                    .map(|c| (c.rows as usize, c.scale_word as usize * 4, c.dtype))
                    .collect(),
                cols,
                chunk: 0,
                row: 0,
                pending: Vec::new(),
            };
            fill(&mut w)?;
            let written: usize = w.chunks[..w.chunk].iter().map(|c| c.0).sum::<usize>() + w.row;
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
            dtype: segments[0].1,
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
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | gpu.weight_usage,
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
                dtype,
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

    /// A matrix of random valid data in `dtype` (benchmarks): values or blocks of about
    /// standard deviation `sigma`, from a SplitMix64 stream seeded by `seed`.
    pub fn random(
        gpu: &Gpu,
        label: &str,
        dims: (usize, usize, usize),
        dtype: DType,
        sigma: f32,
        seed: u64,
    ) -> Result<Self> {
        let (rows, cols, _) = dims;
        let mut state = seed;
        let mut next = move || (crate::blocks::splitmix64(&mut state) >> 32) as u32;
        Self::create_mixed(gpu, label, dims, &[(rows, dtype)], |w| {
            w.push_blocks(rows, |d, n, q, s| {
                let (bq, bs) = crate::blocks::random(d, n * cols / d.block().0, sigma, &mut next);
                q.copy_from_slice(&bq);
                s.copy_from_slice(&bs);
                Ok(())
            })
        })
    }

    /// Bytes resident on the GPU.
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.buffer.size()).sum()
    }
}

/// Sequential writer into the mapped chunks of a matrix being created: converts or quantizes
/// whole rows of values as they complete, or takes rows already in the engine's block layout.
pub struct MatWriter {
    views: Vec<wgpu::BufferViewMut>,
    /// Per chunk: (rows, byte offset of the scales, format).
    chunks: Vec<(usize, usize, DType)>,
    cols: usize,
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

    /// Appends `rows` rows in the engine layout: `fill(dtype, n, quants, scales)` is called
    /// for runs of `n` rows within one chunk (about 1 MiB at a time, so the staging buffers
    /// stay in cache and are reused), with that chunk's format, to fill those rows' quant bytes
    /// (or values) and scale bytes.
    pub fn push_blocks(
        &mut self,
        mut rows: usize,
        mut fill: impl FnMut(DType, usize, &mut [u8], &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        if !self.pending.is_empty() {
            return Err(Error::Invalid("block rows pushed after part of a row of values".into()));
        }
        let (mut quants, mut scales) = (Vec::new(), Vec::new());
        while rows > 0 {
            let dtype = self.chunks.get(self.chunk).map_or(DType::F32, |c| c.2);
            let (rq, rs) = stored_row_bytes(dtype, self.cols);
            let (n, at) = self.next_rows(rows.min((1 << 20) / rq.max(1)).max(1))?;
            let (_, scale_at, _) = self.chunks[self.chunk];
            quants.resize(n * rq, 0);
            scales.resize(n * rs, 0);
            fill(dtype, n, &mut quants, &mut scales)?;
            let view = &mut self.views[self.chunk];
            view.slice(at * rq..(at + n) * rq).copy_from_slice(&quants);
            if rs > 0 {
                view.slice(scale_at + at * rs..scale_at + (at + n) * rs)
                    .copy_from_slice(&scales);
            }
            self.advance(n);
            rows -= n;
        }
        Ok(())
    }

    /// How many of `want` rows the current chunk takes, and its first free row.
    fn next_rows(&self, want: usize) -> Result<(usize, usize)> {
        match self.chunks.get(self.chunk) {
            Some(&(rows, _, _)) => Ok(((rows - self.row).min(want), self.row)),
            None => Err(Error::Invalid("more weight rows than the matrix holds".into())),
        }
    }

    fn advance(&mut self, n: usize) {
        self.row += n;
        if self.row == self.chunks[self.chunk].0 {
            self.chunk += 1;
            self.row = 0;
        }
    }

    fn write_rows(&mut self, mut data: &[f32]) -> Result<()> {
        let cols = self.cols;
        while !data.is_empty() {
            let (n, at) = self.next_rows(data.len() / cols)?;
            let rows = &data[..n * cols];
            let (_, scale_at, dtype) = self.chunks[self.chunk];
            let view = &mut self.views[self.chunk];
            match (dtype, dtype.quant()) {
                (DType::F32 | DType::F16, _) => {
                    let es = dtype.row_bytes(1) as usize;
                    let bytes: Vec<u8> = match dtype {
                        DType::F32 => bytemuck::cast_slice(rows).to_vec(),
                        _ => rows.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
                    };
                    let at = at * cols * es;
                    view.slice(at..at + bytes.len()).copy_from_slice(&bytes);
                }
                (_, Some(q)) => {
                    let (mut quants, mut scales) = (Vec::new(), Vec::new());
                    crate::quant::quantize_row(q, rows, &mut quants, &mut scales)?;
                    let blocks_before = at * cols / 32;
                    let qa = blocks_before * q.quant_bytes_per_block();
                    view.slice(qa..qa + quants.len()).copy_from_slice(&quants);
                    let sa = scale_at + blocks_before * 2;
                    let sb: Vec<u8> = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
                    view.slice(sa..sa + sb.len()).copy_from_slice(&sb);
                }
                (d, None) => {
                    return Err(Error::Invalid(format!(
                        "{d} weights cannot be converted from f32 (they are read from GGUF as they are)"
                    )))
                }
            }
            self.advance(n);
            data = &data[n * cols..];
        }
        Ok(())
    }
}

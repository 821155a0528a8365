//! The host-side byte layout of weight matrices, shared by the loader, the memory estimate,
//! `lfm quantize` and the GPU upload: a matrix's bytes in the engine's layout, how its rows are
//! cut into bindings, and the bytes of one stored row.

use crate::dtype::DType;
use crate::error::{Error, Result};
use std::borrow::Cow;

/// A whole matrix in the engine's layout: per row-major block its quant bytes (or the plain
/// f32 / f16 values), then one f16 scale per block for quantized formats.
pub struct StoredMatrix<'a> {
    pub dtype: DType,
    /// Borrowed from a file mapping, or generated (synthetic weights).
    pub data: Cow<'a, [u8]>,
    pub scales: Cow<'a, [u8]>,
}

/// Cuts `rows` into ranges of whole groups, each at most `max_bytes`.
pub fn plan_chunks(
    label: &str,
    rows: usize,
    cols: usize,
    group_rows: usize,
    dtype: DType,
    max_bytes: u64,
) -> Result<Vec<(usize, usize)>> {
    let group_bytes = dtype.layout(group_rows, cols).0;
    if group_bytes > max_bytes {
        return Err(Error::Limit {
            what: format!(
                "{label}: one group of {group_rows}×{cols} {dtype} weights (bytes) in a single storage binding"
            ),
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

/// Bytes per row of a stored matrix: (values or quant bytes, scale bytes).
pub fn stored_row_bytes(dtype: DType, cols: usize) -> (usize, usize) {
    match dtype.quant() {
        Some(q) => (cols / 32 * q.quant_bytes_per_block(), cols / 32 * 2),
        None => (dtype.row_bytes(cols) as usize, 0),
    }
}

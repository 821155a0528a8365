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

/// Cuts a matrix whose consecutive row ranges (`segments`: rows, format) may be stored in
/// different formats into chunks of one format each: (first row, rows, format). Runs of one
/// format are cut as [`plan_chunks`] does; each run must hold whole groups.
pub fn plan_segments(
    label: &str,
    segments: &[(usize, DType)],
    cols: usize,
    group_rows: usize,
    max_bytes: u64,
) -> Result<Vec<(usize, usize, DType)>> {
    let mut runs: Vec<(usize, usize, DType)> = Vec::new();
    let mut row0 = 0;
    for &(rows, dtype) in segments {
        match runs.last_mut() {
            Some(r) if r.2 == dtype => r.1 += rows,
            _ => runs.push((row0, rows, dtype)),
        }
        row0 += rows;
    }
    let mut out = Vec::new();
    for (r0, rows, dtype) in runs {
        if !rows.is_multiple_of(group_rows) {
            return Err(Error::Invalid(format!(
                "{label}: rows {r0}..{} are {dtype}, not whole groups of {group_rows} rows",
                r0 + rows
            )));
        }
        for (c0, n) in plan_chunks(label, rows, cols, group_rows, dtype, max_bytes)? {
            out.push((r0 + c0, n, dtype));
        }
    }
    Ok(out)
}

/// Bytes per row of a stored matrix: (values or quant bytes, scale bytes).
pub fn stored_row_bytes(dtype: DType, cols: usize) -> (usize, usize) {
    let (values, quant, scale) = dtype.block();
    (cols / values * quant, cols / values * scale)
}

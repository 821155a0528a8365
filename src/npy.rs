//! Minimal NumPy `.npy` (v1.0) reader and writer for little-endian float32 arrays.

use crate::error::{Error, Result};
use std::path::Path;

/// The bytes of a float32 .npy file holding `data` with `shape`.
fn npy_bytes(what: &Path, shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(Error::Invalid(format!(
            "{}: {} values do not have the shape {shape:?}",
            what.display(),
            data.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_str = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}");
    // magic(6) + version(2) + len(2) + header + '\n' must be a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(bytemuck::cast_slice(data));
    Ok(bytes)
}

/// Writes `data` with `shape` as a float32 .npy file (atomically: whole or not at all).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    crate::files::write_atomic(path, &npy_bytes(path, shape, data)?)
}

/// Writes float32 arrays as an `.npz` (numpy's zip of `<name>.npy` files, stored without
/// compression, atomically): `np.load(path)[name]`.
pub fn write_npz(path: &Path, arrays: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
    let mut zip = Vec::new();
    let mut central = Vec::new();
    for (name, shape, data) in arrays {
        let file = format!("{name}.npy");
        let body = npy_bytes(path, shape, data)?;
        let (offset, size) = (zip.len(), body.len());
        if offset > u32::MAX as usize || size > u32::MAX as usize {
            return Err(Error::Invalid(format!(
                "{}: over 4 GiB (no zip64 here)",
                path.display()
            )));
        }
        let crc = crc32fast::hash(&body);
        // Local header: version 2.0, no flags, stored, 1980-01-01 00:00.
        let fixed = |sig: u32, out: &mut Vec<u8>| {
            out.extend_from_slice(&sig.to_le_bytes());
        };
        fixed(0x0403_4b50, &mut zip);
        for v in [20u16, 0, 0, 0, 0x21] {
            zip.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size as u32, size as u32] {
            zip.extend_from_slice(&v.to_le_bytes());
        }
        zip.extend_from_slice(&(file.len() as u16).to_le_bytes());
        zip.extend_from_slice(&0u16.to_le_bytes());
        zip.extend_from_slice(file.as_bytes());
        zip.extend_from_slice(&body);
        // Central directory entry.
        fixed(0x0201_4b50, &mut central);
        for v in [20u16, 20, 0, 0, 0, 0x21] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size as u32, size as u32] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [file.len() as u16, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [0u32, offset as u32] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(file.as_bytes());
    }
    let (cd_offset, cd_size, n) = (zip.len() as u32, central.len() as u32, arrays.len() as u16);
    zip.extend_from_slice(&central);
    zip.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, n, n] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    for v in [cd_size, cd_offset] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    zip.extend_from_slice(&0u16.to_le_bytes());
    crate::files::write_atomic(path, &zip)
}

/// Reads a little-endian float32 C-order .npy file: (shape, data).
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |msg: &str| Error::Invalid(format!("{}: {msg}", path.display()));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(bytes.get(start..start + hlen).ok_or_else(|| bad("truncated header"))?)
        .map_err(|_| bad("header is not UTF-8"))?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(bad("only little-endian float32 C-order arrays are supported"));
    }
    let shape_str = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = shape_str
        .trim_start_matches([' ', '('])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let body = &bytes[start + hlen..];
    let n: usize = shape.iter().product();
    if body.len() != n * 4 {
        return Err(bad("data length does not match the shape"));
    }
    let data = body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((shape, data))
}

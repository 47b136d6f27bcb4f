//! Shared helpers for the Rust integration tests: locating `../shared/golden` and reading `.npz`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

/// `../shared/golden` beside the repository (override with `KQUANTS_GOLDEN`).
pub fn golden_dir() -> PathBuf {
    if let Ok(p) = std::env::var("KQUANTS_GOLDEN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/golden")
}

/// One array from an `.npz` file: raw little-endian bytes plus dtype and shape.
#[derive(Clone, Debug)]
pub struct Npy {
    /// NumPy dtype string, e.g. `<f4`, `|u1`.
    pub descr: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Raw C-order data.
    pub data: Vec<u8>,
}

impl Npy {
    pub fn f32(&self) -> Vec<f32> {
        assert_eq!(self.descr, "<f4", "dtype");
        self.data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    }
    pub fn f64(&self) -> Vec<f64> {
        assert_eq!(self.descr, "<f8", "dtype");
        self.data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
    }
    pub fn i32(&self) -> Vec<i32> {
        assert_eq!(self.descr, "<i4", "dtype");
        self.data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect()
    }
    pub fn u8(&self) -> &[u8] {
        assert!(self.descr == "|u1" || self.descr == "<u1", "dtype {}", self.descr);
        &self.data
    }
    /// Length of the last axis.
    pub fn cols(&self) -> usize {
        *self.shape.last().unwrap()
    }
    /// Number of rows (product of all axes but the last).
    pub fn rows(&self) -> usize {
        self.shape[..self.shape.len() - 1].iter().product()
    }
}

fn parse_npy(buf: &[u8]) -> Npy {
    assert_eq!(&buf[..6], b"\x93NUMPY", "npy magic");
    let (hlen, start) = if buf[6] == 1 {
        (u16::from_le_bytes([buf[8], buf[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes(buf[8..12].try_into().unwrap()) as usize, 12)
    };
    let header = std::str::from_utf8(&buf[start..start + hlen]).unwrap();
    let field = |key: &str| -> &str {
        let i = header.find(key).unwrap_or_else(|| panic!("{key} in npy header {header}")) + key.len();
        header[i..].trim_start_matches([':', ' ', '\''])
    };
    let descr = field("'descr'");
    let descr = descr[..descr.find('\'').unwrap()].to_string();
    assert!(field("'fortran_order'").starts_with("False"), "C order only");
    let shape_s = field("'shape'");
    let shape_s = &shape_s[1..shape_s.find(')').unwrap()];
    let shape = shape_s.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    Npy { descr, shape, data: buf[start + hlen..].to_vec() }
}

/// Read every array of an `.npz` file.
pub fn read_npz(path: &std::path::Path) -> HashMap<String, Npy> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut z = zip::ZipArchive::new(f).unwrap();
    let mut out = HashMap::new();
    for i in 0..z.len() {
        let mut e = z.by_index(i).unwrap();
        let name = e.name().trim_end_matches(".npy").to_string();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        out.insert(name, parse_npy(&buf));
    }
    out
}

/// Golden codec file for a type name.
pub fn codec_golden(type_name: &str) -> HashMap<String, Npy> {
    read_npz(&golden_dir().join("codecs").join(format!("{type_name}.npz")))
}

/// First differing (block, byte) between two quantized buffers with `row_bytes` per row.
pub fn first_diff(got: &[u8], want: &[u8], type_size: usize) -> Option<String> {
    assert_eq!(got.len(), want.len(), "length");
    let i = got.iter().zip(want).position(|(a, b)| a != b)?;
    let nbad = got.chunks(type_size).zip(want.chunks(type_size)).filter(|(a, b)| a != b).count();
    Some(format!(
        "first difference in block {} byte {} (got {:#04x}, want {:#04x}); {nbad} of {} blocks differ",
        i / type_size,
        i % type_size,
        got[i],
        want[i],
        got.len() / type_size
    ))
}

/// First differing f32 by bit pattern (NaN payloads compared too).
pub fn first_f32_diff(got: &[f32], want: &[f32]) -> Option<String> {
    assert_eq!(got.len(), want.len(), "length");
    let i = got.iter().zip(want).position(|(a, b)| a.to_bits() != b.to_bits())?;
    let n = got.iter().zip(want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    Some(format!("value {i}: got {} want {} ({n} values differ)", got[i], want[i]))
}

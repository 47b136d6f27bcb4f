//! Importance-matrix files: llama.cpp's GGUF imatrix format and its legacy `.dat` format.
//!
//! An importance matrix holds, per weight tensor, the mean of the squared activations that met
//! each column during a calibration run. Quantizers weight their error by it.
//!
//! * GGUF (llama.cpp's default since mid-2025): tensors `<weight>.in_sum2` (F32, sums of squared
//!   activations, one row per expert) and `<weight>.counts` (F32, tokens seen, one per expert),
//!   with metadata `imatrix.datasets` (string array), `imatrix.chunk_count`, `imatrix.chunk_size`.
//! * Legacy `.dat`: `i32 n_entries`, then per entry `i32 name_len, name bytes, i32 ncall, i32 nval,
//!   f32 values[nval]` (values already divided by the token count, multiplied by `ncall`), then
//!   optionally `i32 chunk_count, i32 dataset_len, dataset bytes`.
//!
//! [`Imatrix::weights`] turns either into the per-column weights llama-quantize passes to the
//! quantizers, with its exact float arithmetic (`sums / count` in f32), so that quantizing with
//! the same file gives the same bytes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::types::QuantType;

/// One tensor's accumulated statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Sums of squared activations per column (`n_expert * n_cols` values).
    pub sums: Vec<f32>,
    /// Token counts, one per expert (legacy files: the single call count).
    pub counts: Vec<i64>,
}

/// A loaded importance matrix.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    /// Entries by weight tensor name (`blk.0.attn_q.weight`).
    pub entries: BTreeMap<String, Entry>,
    /// Calibration dataset names.
    pub datasets: Vec<String>,
    /// Number of chunks the statistics were gathered over.
    pub chunk_count: u32,
    /// Tokens per chunk (0 when unknown, always for legacy files).
    pub chunk_size: u32,
    /// Whether this came from a legacy `.dat` file.
    pub is_legacy: bool,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::value(format!("{}: not a valid imatrix file: {what}", path.display()))
}

impl Imatrix {
    /// Load a GGUF or legacy `.dat` imatrix (GGUF is tried first, as llama.cpp does).
    pub fn load(path: impl AsRef<Path>) -> Result<Imatrix> {
        let path = path.as_ref();
        let head = {
            use std::io::Read;
            let mut f = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            let mut b = [0u8; 4];
            let n = f.read(&mut b).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            b[..n].to_vec()
        };
        if head == b"GGUF" {
            Self::load_gguf(path)
        } else {
            let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            Self::parse_legacy(path, &bytes)
        }
    }

    fn load_gguf(path: &Path) -> Result<Imatrix> {
        let f = GgufFile::open(path)?;
        let md = f.metadata();
        let mut m = Imatrix {
            datasets: md.get_str_array("imatrix.datasets").unwrap_or_default().into_iter().map(String::from).collect(),
            chunk_count: md.get_u32("imatrix.chunk_count").unwrap_or(0),
            chunk_size: md.get_u32("imatrix.chunk_size").unwrap_or(0),
            ..Default::default()
        };
        let mut sums: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
        let mut counts: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
        for t in f.tensors() {
            let (base, is_sum) = if let Some(b) = t.name.strip_suffix(".in_sum2") {
                (b, true)
            } else if let Some(b) = t.name.strip_suffix(".counts") {
                (b, false)
            } else {
                continue;
            };
            if t.ty != QuantType::F32 {
                return Err(bad(path, format!("{} must be F32, is {}", t.name, t.ty)));
            }
            let vals: Vec<f32> = f.tensor_data(t).chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            if is_sum {
                sums.insert(base, vals);
            } else {
                counts.insert(base, vals);
            }
        }
        if sums.is_empty() {
            return Err(bad(path, "no *.in_sum2 tensors"));
        }
        for (name, s) in sums {
            let c = counts.remove(name).ok_or_else(|| bad(path, format!("{name}.in_sum2 has no matching .counts")))?;
            if c.is_empty() || s.len() % c.len() != 0 {
                return Err(bad(path, format!("{name}: {} sums do not split into {} experts", s.len(), c.len())));
            }
            // llama.cpp rounds the stored float counts to integers (lround).
            let counts = c.iter().map(|v| v.round() as i64).collect();
            m.entries.insert(name.to_string(), Entry { sums: s, counts });
        }
        if let Some(name) = counts.keys().next() {
            return Err(bad(path, format!("{name}.counts has no matching .in_sum2")));
        }
        Ok(m)
    }

    fn parse_legacy(path: &Path, b: &[u8]) -> Result<Imatrix> {
        let mut pos = 0usize;
        let mut i32_at = |pos: &mut usize, what: &str| -> Result<i32> {
            let v = b
                .get(*pos..*pos + 4)
                .map(|s| i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
                .ok_or_else(|| bad(path, format!("truncated at byte {} reading {what}", *pos)))?;
            *pos += 4;
            Ok(v)
        };
        let n = i32_at(&mut pos, "the entry count")?;
        if n < 1 {
            return Err(bad(path, "no entries (and no GGUF magic)"));
        }
        let mut m = Imatrix { is_legacy: true, ..Default::default() };
        for i in 0..n {
            let len = i32_at(&mut pos, "a name length")?;
            let len = usize::try_from(len).map_err(|_| bad(path, format!("entry {i}: negative name length")))?;
            let name = b
                .get(pos..pos.saturating_add(len))
                .ok_or_else(|| bad(path, format!("entry {i}: name runs past the end")))?;
            let name = String::from_utf8_lossy(name).into_owned();
            pos += len;
            let ncall = i32_at(&mut pos, "a call count")?;
            let nval = i32_at(&mut pos, "a value count")?;
            let nval = usize::try_from(nval).ok().filter(|&v| v >= 1).ok_or_else(|| bad(path, format!("entry {name}: bad value count")))?;
            let bytes = b
                .get(pos..pos.saturating_add(nval.saturating_mul(4)))
                .ok_or_else(|| bad(path, format!("entry {name}: values run past the end")))?;
            pos += nval * 4;
            let sums = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            m.entries.insert(name, Entry { sums, counts: vec![ncall as i64] });
        }
        if pos < b.len() {
            if let Ok(chunks) = i32_at(&mut pos, "the chunk count") {
                m.chunk_count = chunks.max(0) as u32;
                if let Ok(len) = i32_at(&mut pos, "the dataset name length") {
                    if let Some(d) = usize::try_from(len).ok().filter(|&l| l > 0).and_then(|l| b.get(pos..pos + l)) {
                        m.datasets.push(String::from_utf8_lossy(d).into_owned());
                    }
                }
            }
        }
        Ok(m)
    }

    /// Per-column importance weights for every entry, as llama-quantize computes them: GGUF
    /// files divide each expert's sums by its count (`1.0` where the count is 0); legacy files
    /// divide by the call count.
    pub fn weights(&self) -> BTreeMap<String, Vec<f32>> {
        self.entries
            .iter()
            .map(|(name, e)| {
                let w = if self.is_legacy {
                    let ncall = e.counts.first().copied().unwrap_or(0);
                    if ncall > 0 {
                        e.sums.iter().map(|s| s / ncall as f32).collect()
                    } else {
                        e.sums.clone()
                    }
                } else {
                    let ne0 = e.sums.len() / e.counts.len().max(1);
                    let mut w = vec![0f32; e.sums.len()];
                    for (j, &c) in e.counts.iter().enumerate() {
                        let c = c as f32;
                        for i in 0..ne0 {
                            w[j * ne0 + i] = if c > 0.0 { e.sums[j * ne0 + i] / c } else { 1.0 };
                        }
                    }
                    w
                };
                (name.clone(), w)
            })
            .collect()
    }
}

//! Importance matrices: per-column sums of squared matmul inputs, collected like llama.cpp's
//! `llama-imatrix` (only `blk.*` weights, only batches of at least 16 tokens, f32 accumulation
//! row by row), stored in its GGUF layout (`<weight>.in_sum2` f32 `[n_cols]`, `<weight>.counts`
//! f32 `[1]`, `general.type = "imatrix"`, `imatrix.datasets`, `imatrix.chunk_count`,
//! `imatrix.chunk_size`; tensors sorted by name) or the legacy `.dat` layout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::llama::{Linear, MatmulObserver};
use crate::error::{Error, Result};

/// Accumulated statistics of one weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Σ x_j² over every input row seen, per column.
    pub sums: Vec<f32>,
    /// Number of input rows (tokens) accumulated.
    pub count: u64,
}

impl Entry {
    /// Mean squared activation per column (what quantization weighs by).
    pub fn mean(&self) -> Vec<f32> {
        let c = self.count.max(1) as f32;
        self.sums.iter().map(|s| s / c).collect()
    }
}

/// An importance matrix.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    /// Entries by weight name (`blk.0.attn_q.weight`).
    pub entries: BTreeMap<String, Entry>,
    /// Names of the texts it was computed on.
    pub datasets: Vec<String>,
    /// Chunks processed.
    pub chunk_count: u32,
    /// Tokens per chunk.
    pub chunk_size: u32,
}

/// Batches smaller than this are not collected (llama.cpp does the same).
pub const MIN_BATCH: usize = 16;

/// Collects an [`Imatrix`] from forward passes (a [`MatmulObserver`]).
#[derive(Debug, Default)]
pub struct Collector {
    /// What was collected so far.
    pub imatrix: Imatrix,
    /// Also collect `output.weight` (llama.cpp `--process-output`).
    pub process_output: bool,
}

impl MatmulObserver for Collector {
    fn observe(&mut self, lin: &Linear, x: &[f32], n: usize) {
        if n < MIN_BATCH {
            return;
        }
        if !(lin.name.starts_with("blk.") || (self.process_output && lin.name == "output.weight")) {
            return;
        }
        let e = self
            .imatrix
            .entries
            .entry(lin.name.clone())
            .or_insert_with(|| Entry { sums: vec![0.0; lin.cols], count: 0 });
        for row in x.chunks_exact(lin.cols).take(n) {
            for (a, &v) in e.sums.iter_mut().zip(row) {
                *a += v * v;
            }
        }
        e.count += n as u64;
    }
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8]> {
    let end = pos.checked_add(n).filter(|&e| e <= buf.len()).ok_or_else(|| Error::value(format!("imatrix .dat file is truncated at byte {pos}")))?;
    let s = &buf[*pos..end];
    *pos = end;
    Ok(s)
}

fn read_i32(buf: &[u8], pos: &mut usize) -> Result<i32> {
    let b = take(buf, pos, 4)?;
    Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl Imatrix {
    /// Per weight: the mean squared activation per column.
    pub fn means(&self) -> BTreeMap<String, Vec<f32>> {
        self.entries.iter().map(|(k, e)| (k.clone(), e.mean())).collect()
    }

    /// Parse the legacy `.dat` format: `i32 n_entries`, then per entry `i32 len, name, i32 ncall,
    /// i32 nval, f32[nval]` (values are mean·ncall), then optionally `i32 chunks, i32 len, dataset`.
    pub fn from_dat_bytes(buf: &[u8]) -> Result<Imatrix> {
        let mut pos = 0;
        let n = read_i32(buf, &mut pos)?;
        if n < 0 {
            return Err(Error::value(format!("imatrix .dat file has {n} entries")));
        }
        let mut im = Imatrix::default();
        for _ in 0..n {
            let len = read_i32(buf, &mut pos)?;
            let name = take(buf, &mut pos, usize::try_from(len).map_err(|_| Error::value("negative name length in imatrix .dat"))?)?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| Error::value("imatrix .dat entry name is not UTF-8"))?;
            let ncall = read_i32(buf, &mut pos)?;
            let nval = read_i32(buf, &mut pos)?;
            let nval = usize::try_from(nval).map_err(|_| Error::value("negative value count in imatrix .dat"))?;
            let raw = take(buf, &mut pos, nval.checked_mul(4).ok_or_else(|| Error::value("imatrix .dat value count overflows"))?)?;
            let ncall = ncall.max(1) as u64;
            // Store as sums over `ncall` pseudo-rows so `mean()` gives back value / ncall.
            let sums = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            im.entries.insert(name, Entry { sums, count: ncall });
        }
        if pos + 4 <= buf.len() {
            im.chunk_count = read_i32(buf, &mut pos)?.max(0) as u32;
            if pos + 4 <= buf.len() {
                let len = read_i32(buf, &mut pos)?;
                if let Ok(len) = usize::try_from(len) {
                    if let Ok(d) = take(buf, &mut pos, len) {
                        im.datasets.push(String::from_utf8_lossy(d).into_owned());
                    }
                }
            }
        }
        Ok(im)
    }

    /// Write the legacy `.dat` format (what `llama-imatrix --output-format dat` writes).
    pub fn write_dat(&self, path: &Path) -> Result<()> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.entries.len() as i32).to_le_bytes());
        let cs = self.chunk_size.max(1) as u64;
        for (name, e) in &self.entries {
            out.extend_from_slice(&(name.len() as i32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            let ncall = e.count.div_ceil(cs).max(1);
            out.extend_from_slice(&(ncall as i32).to_le_bytes());
            out.extend_from_slice(&(e.sums.len() as i32).to_le_bytes());
            for &s in &e.sums {
                let (v, c) = if e.count == 0 { (1.0, 1.0) } else { (s, e.count as f32) };
                out.extend_from_slice(&((v / c) * ncall as f32).to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.chunk_count as i32).to_le_bytes());
        let ds = self.datasets.last().map(String::as_str).unwrap_or("");
        out.extend_from_slice(&(ds.len() as i32).to_le_bytes());
        out.extend_from_slice(ds.as_bytes());
        let mut f = std::fs::File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        f.write_all(&out).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
}

/// Evaluate `tokens` in chunks of `n_ctx` (BOS first when `bos`), collecting into `col`, like
/// `llama-imatrix`. Returns the number of chunks.
pub fn collect(
    model: &std::sync::Arc<super::llama::Model>,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    max_chunks: Option<usize>,
    col: &mut Collector,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<usize> {
    if n_ctx < MIN_BATCH {
        return Err(Error::value(format!("context size {n_ctx} is below {MIN_BATCH}: nothing would be collected")));
    }
    let mut n_chunks = tokens.len() / n_ctx;
    if let Some(m) = max_chunks {
        n_chunks = n_chunks.min(m);
    }
    if n_chunks == 0 {
        return Err(Error::value(format!("the text has {} tokens, fewer than one chunk of {n_ctx}", tokens.len())));
    }
    let mut sess = model.session();
    for c in 0..n_chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        sess.reset();
        sess.eval_observed(&chunk, false, col)?;
        progress(c + 1, n_chunks);
    }
    col.imatrix.chunk_count += n_chunks as u32;
    col.imatrix.chunk_size = n_ctx as u32;
    Ok(n_chunks)
}

impl Imatrix {
    /// Write to `path`: legacy `.dat` when the name ends in `.dat`, else llama.cpp's GGUF layout.
    pub fn write(&self, path: &Path) -> Result<()> {
        if path.extension().is_some_and(|e| e == "dat") {
            self.write_dat(path)
        } else {
            self.write_gguf(path)
        }
    }

    /// Write llama.cpp's GGUF imatrix layout (tensors sorted by name, raw sums and counts).
    pub fn write_gguf(&self, path: &Path) -> Result<()> {
        use crate::gguf::{Array, GgufWriter, Value};
        use crate::types::QuantType;
        let mut w = GgufWriter::create(path)?;
        w.add_metadata("general.type", Value::String("imatrix".into()))?;
        w.add_metadata("imatrix.datasets", Value::Array(Array::from_strs(&self.datasets)))?;
        w.add_metadata("imatrix.chunk_count", Value::U32(self.chunk_count))?;
        w.add_metadata("imatrix.chunk_size", Value::U32(self.chunk_size))?;
        // BTreeMap order is byte order of the names, as llama.cpp's std::sort of std::string.
        for (name, e) in &self.entries {
            // ggml drops trailing unit dimensions: one expert gives 1-D tensors.
            w.add_tensor_info(&format!("{name}.in_sum2"), &[e.sums.len()], QuantType::F32)?;
            w.add_tensor_info(&format!("{name}.counts"), &[1], QuantType::F32)?;
        }
        for e in self.entries.values() {
            let bytes: Vec<u8> = e.sums.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.write_tensor_data(&bytes)?;
            w.write_tensor_data(&(e.count as f32).to_le_bytes())?;
        }
        w.finish()
    }

    /// Read llama.cpp's GGUF imatrix layout.
    pub fn from_gguf(file: &crate::gguf::GgufFile) -> Result<Imatrix> {
        use crate::types::QuantType;
        let md = file.metadata();
        let mut im = Imatrix {
            datasets: md.get_str_array("imatrix.datasets").map(|v| v.into_iter().map(str::to_string).collect()).unwrap_or_default(),
            chunk_count: md.get_u32("imatrix.chunk_count").unwrap_or(0),
            chunk_size: md.get_u32("imatrix.chunk_size").unwrap_or(0),
            ..Imatrix::default()
        };
        let f32s = |name: &str| -> Result<Vec<f32>> {
            let t = file.tensor(name).ok_or_else(|| Error::value(format!("imatrix file lacks {name}")))?;
            if t.ty != QuantType::F32 {
                return Err(Error::value(format!("imatrix tensor {name} is {}, expected F32", t.ty)));
            }
            Ok(file.tensor_data(t).chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        };
        for t in file.tensors() {
            let Some(base) = t.name.strip_suffix(".in_sum2") else { continue };
            let sums = f32s(&t.name)?;
            let counts = f32s(&format!("{base}.counts"))?;
            if counts.len() != 1 {
                return Err(Error::value(format!(
                    "imatrix entry {base} has {} expert counts; per-expert entries are not supported",
                    counts.len()
                )));
            }
            let c = counts[0];
            if !(c.is_finite() && c >= 0.0) {
                return Err(Error::value(format!("imatrix entry {base} has count {c}")));
            }
            im.entries.insert(base.to_string(), Entry { sums, count: c as u64 });
        }
        if im.entries.is_empty() {
            return Err(Error::value("the GGUF file holds no imatrix entries (<name>.in_sum2)"));
        }
        Ok(im)
    }

    /// Read an imatrix file, GGUF or legacy `.dat` (told apart by the GGUF magic).
    pub fn read(path: &Path) -> Result<Imatrix> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if bytes.starts_with(b"GGUF") {
            Imatrix::from_gguf(&crate::gguf::GgufFile::from_vec(bytes)?)
        } else {
            Imatrix::from_dat_bytes(&bytes)
        }
    }
}

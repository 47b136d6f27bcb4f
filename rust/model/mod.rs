//! Running llama-family models: configuration from GGUF metadata ([`config`]), the forward pass
//! ([`llama`]), the tokenizer ([`tokenizer`]), sampling ([`sampling`]), perplexity / KL divergence
//! ([`perplexity`]) and importance-matrix collection ([`imatrix`]).
//!
//! The model never sees a file format directly: it reads a [`ModelSource`] — metadata values by
//! key and tensors as (type, shape, byte range of one shared buffer). A GGUF file (mmapped, weights
//! left in their quantized type) is one source; tests build small in-memory ones.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::types::QuantType;

pub mod config;
pub mod imatrix;
pub mod llama;
pub mod perplexity;
pub mod sampling;
pub mod tokenizer;

pub use config::{Arch, Config, RopeMode};
pub use llama::{Model, Session};
pub use tokenizer::Tokenizer;

/// A metadata value, as far as the model reads them.
#[derive(Clone, Debug, PartialEq)]
pub enum Meta {
    /// Any unsigned integer type.
    U(u64),
    /// Any signed integer type.
    I(i64),
    /// f32 or f64.
    F(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// An array of strings.
    StrArr(Vec<String>),
    /// An array of integers (any integer element type).
    IntArr(Vec<i64>),
    /// An array of floats.
    FloatArr(Vec<f32>),
    /// Anything else (nested arrays, bool arrays): present, but the model does not read it.
    Other,
}

/// A tensor of the source: ggml type, shape in ggml order (`ne[0]` = row length first), and the
/// byte range of its data inside [`ModelSource::data`].
#[derive(Clone, Debug)]
pub struct TensorEntry {
    /// Element type.
    pub ty: QuantType,
    /// ggml dimensions, `ne[0]` (contiguous) first.
    pub dims: Vec<u64>,
    /// Start of the data in [`ModelSource::data`].
    pub offset: usize,
    /// Length in bytes (already checked against type and shape by whoever built the entry).
    pub len: usize,
}

/// Where a model comes from: metadata by key and tensors in one shared byte buffer (an mmap or
/// an in-memory vector).
pub trait ModelSource: Send + Sync {
    /// The metadata value under `key`.
    fn meta(&self, key: &str) -> Option<Meta>;
    /// The tensor named `name`.
    fn tensor(&self, name: &str) -> Option<TensorEntry>;
    /// All tensor names.
    fn tensor_names(&self) -> Vec<String>;
    /// The buffer every [`TensorEntry`] range points into.
    fn data(&self) -> &[u8];
}

/// An in-memory [`ModelSource`]: for tests and for models built from arrays.
#[derive(Default, Debug)]
pub struct MemorySource {
    /// Metadata.
    pub metadata: HashMap<String, Meta>,
    tensors: HashMap<String, TensorEntry>,
    order: Vec<String>,
    data: Vec<u8>,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a metadata value.
    pub fn set(&mut self, key: &str, v: Meta) {
        self.metadata.insert(key.to_string(), v);
    }

    /// Add a tensor: `bytes` holds `dims` values of `ty` (ggml order, `dims[0]` contiguous).
    pub fn add_tensor(&mut self, name: &str, ty: QuantType, dims: &[u64], bytes: Vec<u8>) -> Result<()> {
        let n: u64 = dims.iter().product();
        let row = usize::try_from(*dims.first().unwrap_or(&1)).map_err(|_| Error::value("dimension too large"))?;
        let rows = usize::try_from(n / (row as u64).max(1)).map_err(|_| Error::value("dimension too large"))?;
        let want = ty
            .row_bytes(row)
            .and_then(|rb| rb.checked_mul(rows))
            .ok_or_else(|| Error::value(format!("tensor {name}: shape {dims:?} does not fit {ty} blocks")))?;
        if want != bytes.len() {
            return Err(Error::value(format!("tensor {name}: {} bytes given, {want} expected", bytes.len())));
        }
        let offset = self.data.len();
        self.data.extend_from_slice(&bytes);
        self.tensors.insert(name.to_string(), TensorEntry { ty, dims: dims.to_vec(), offset, len: want });
        self.order.push(name.to_string());
        Ok(())
    }
}

impl ModelSource for MemorySource {
    fn meta(&self, key: &str) -> Option<Meta> {
        self.metadata.get(key).cloned()
    }
    fn tensor(&self, name: &str) -> Option<TensorEntry> {
        self.tensors.get(name).cloned()
    }
    fn tensor_names(&self) -> Vec<String> {
        self.order.clone()
    }
    fn data(&self) -> &[u8] {
        &self.data
    }
}

/// A shared, type-erased source.
pub type SharedSource = Arc<dyn ModelSource>;

/// A GGUF file as a [`ModelSource`]: the file is memory-mapped and tensors point into the map.
pub struct GgufSource {
    map: memmap2::Mmap,
    metadata: HashMap<String, Meta>,
    tensors: HashMap<String, TensorEntry>,
    order: Vec<String>,
}

impl GgufSource {
    /// Map and parse `path`.
    pub fn open(path: &std::path::Path) -> Result<GgufSource> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        // SAFETY: memmap2's contract: the mapping is undefined behaviour if the file is modified
        // while mapped. Model files are opened read-only and treated as immutable, as llama.cpp does.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(format!("mapping {}", path.display()), e))?;
        let (metadata, tensors, order) = gguf_header::parse(&map)?;
        Ok(GgufSource { map, metadata, tensors, order })
    }
}

impl ModelSource for GgufSource {
    fn meta(&self, key: &str) -> Option<Meta> {
        self.metadata.get(key).cloned()
    }
    fn tensor(&self, name: &str) -> Option<TensorEntry> {
        self.tensors.get(name).cloned()
    }
    fn tensor_names(&self) -> Vec<String> {
        self.order.clone()
    }
    fn data(&self) -> &[u8] {
        &self.map
    }
}

/// Load a model and its tokenizer from a GGUF file.
pub fn load(path: &std::path::Path, threads: Option<usize>) -> Result<(Arc<Model>, Tokenizer)> {
    let src: SharedSource = Arc::new(GgufSource::open(path)?);
    let tok = Tokenizer::from_source(src.as_ref())?;
    let model = Model::from_source(src, threads)?;
    if tok.n_vocab() != model.config.n_vocab {
        return Err(Error::value(format!(
            "the tokenizer has {} tokens but token_embd.weight has {} rows",
            tok.n_vocab(),
            model.config.n_vocab
        )));
    }
    Ok((Arc::new(model), tok))
}

/// GGUF header parsing (metadata and tensor infos) with every length and offset checked.
/// Interim reader for the model module; `crate::gguf` is the crate's full GGUF implementation.
mod gguf_header {
    use super::{Meta, TensorEntry};
    use crate::error::{Error, Result};
    use crate::types::QuantType;
    use std::collections::HashMap;

    /// Longest string accepted (1 GiB) and most array elements (2^28): far beyond real files.
    const MAX_STR: u64 = 1 << 30;
    const MAX_ARR: u64 = 1 << 28;

    struct Cur<'a> {
        b: &'a [u8],
        pos: usize,
    }

    impl<'a> Cur<'a> {
        fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
            let n = usize::try_from(n).map_err(|_| Error::gguf(self.pos as u64, format!("{what} length too large")))?;
            let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
            let end = end.ok_or_else(|| Error::gguf(self.pos as u64, format!("{what} runs past the end of the file")))?;
            let s = &self.b[self.pos..end];
            self.pos = end;
            Ok(s)
        }
        fn u32(&mut self, what: &str) -> Result<u32> {
            let s = self.take(4, what)?;
            Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        }
        fn u64(&mut self, what: &str) -> Result<u64> {
            let s = self.take(8, what)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            Ok(u64::from_le_bytes(a))
        }
        fn string(&mut self, what: &str) -> Result<String> {
            let at = self.pos as u64;
            let n = self.u64(what)?;
            if n > MAX_STR {
                return Err(Error::gguf(at, format!("{what}: string of {n} bytes")));
            }
            let s = self.take(n, what)?;
            String::from_utf8(s.to_vec()).map_err(|_| Error::gguf(at, format!("{what} is not UTF-8")))
        }
        fn scalar(&mut self, ty: u32, what: &str) -> Result<Option<Meta>> {
            let at = self.pos as u64;
            Ok(Some(match ty {
                0 => Meta::U(self.take(1, what)?[0] as u64),
                1 => Meta::I(self.take(1, what)?[0] as i8 as i64),
                2 => { let s = self.take(2, what)?; Meta::U(u16::from_le_bytes([s[0], s[1]]) as u64) }
                3 => { let s = self.take(2, what)?; Meta::I(i16::from_le_bytes([s[0], s[1]]) as i64) }
                4 => Meta::U(self.u32(what)? as u64),
                5 => Meta::I(self.u32(what)? as i32 as i64),
                6 => Meta::F(f32::from_bits(self.u32(what)?) as f64),
                7 => match self.take(1, what)?[0] {
                    0 => Meta::Bool(false),
                    1 => Meta::Bool(true),
                    v => return Err(Error::gguf(at, format!("{what}: boolean byte {v}"))),
                },
                8 => Meta::Str(self.string(what)?),
                10 => Meta::U(self.u64(what)?),
                11 => Meta::I(self.u64(what)? as i64),
                12 => Meta::F(f64::from_bits(self.u64(what)?)),
                _ => return Ok(None),
            }))
        }
        fn value(&mut self, ty: u32, what: &str, depth: u32) -> Result<Meta> {
            let at = self.pos as u64;
            if ty != 9 {
                return self.scalar(ty, what)?.ok_or_else(|| Error::gguf(at, format!("{what}: unknown value type {ty}")));
            }
            if depth > 2 {
                return Err(Error::gguf(at, format!("{what}: arrays nested too deeply")));
            }
            let et = self.u32(what)?;
            let n = self.u64(what)?;
            if n > MAX_ARR {
                return Err(Error::gguf(at, format!("{what}: array of {n} elements")));
            }
            match et {
                8 => Ok(Meta::StrArr((0..n).map(|_| self.string(what)).collect::<Result<_>>()?)),
                6 | 12 => Ok(Meta::FloatArr(
                    (0..n)
                        .map(|_| match self.scalar(et, what)? {
                            Some(Meta::F(v)) => Ok(v as f32),
                            _ => Err(Error::gguf(at, "float array")),
                        })
                        .collect::<Result<_>>()?,
                )),
                0..=5 | 10 | 11 => Ok(Meta::IntArr(
                    (0..n)
                        .map(|_| match self.scalar(et, what)? {
                            Some(Meta::U(v)) => Ok(v as i64),
                            Some(Meta::I(v)) => Ok(v),
                            _ => Err(Error::gguf(at, "integer array")),
                        })
                        .collect::<Result<_>>()?,
                )),
                7 | 9 => {
                    for _ in 0..n {
                        self.value(et, what, depth + 1)?;
                    }
                    Ok(Meta::Other)
                }
                _ => Err(Error::gguf(at, format!("{what}: unknown array element type {et}"))),
            }
        }
    }

    type Parsed = (HashMap<String, Meta>, HashMap<String, TensorEntry>, Vec<String>);

    pub(super) fn parse(b: &[u8]) -> Result<Parsed> {
        let mut c = Cur { b, pos: 0 };
        if c.take(4, "magic")? != b"GGUF" {
            return Err(Error::gguf(0, "not a GGUF file (bad magic)"));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::gguf(4, format!("unsupported GGUF version {version}")));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        if n_tensors > MAX_ARR || n_kv > MAX_ARR {
            return Err(Error::gguf(8, "implausible tensor or metadata count"));
        }
        let mut meta = HashMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32("metadata type")?;
            let v = c.value(ty, &key, 0)?;
            meta.insert(key, v);
        }
        let alignment = match meta.get("general.alignment") {
            Some(Meta::U(a)) if *a > 0 && a.is_power_of_two() => *a as usize,
            None => 32,
            Some(_) => return Err(Error::gguf(c.pos as u64, "general.alignment is not a power of two")),
        };
        let mut infos = Vec::new();
        for _ in 0..n_tensors {
            let at = c.pos as u64;
            let name = c.string("tensor name")?;
            let nd = c.u32("tensor dimensions")?;
            if nd == 0 || nd > 4 {
                return Err(Error::gguf(at, format!("tensor {name}: {nd} dimensions")));
            }
            let dims = (0..nd).map(|_| c.u64("tensor shape")).collect::<Result<Vec<_>>>()?;
            let tid = c.u32("tensor type")?;
            let ty = QuantType::from_id(tid).ok_or_else(|| Error::gguf(at, format!("tensor {name}: unknown type {tid}")))?;
            let off = c.u64("tensor offset")?;
            infos.push((at, name, dims, ty, off));
        }
        let data_start = c.pos.div_ceil(alignment) * alignment;
        let mut tensors = HashMap::new();
        let mut order = Vec::new();
        for (at, name, dims, ty, off) in infos {
            let n = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            let bad = || Error::gguf(at, format!("tensor {name}: shape {dims:?} does not fit {ty} or the file"));
            let n = n.ok_or_else(bad)?;
            let row = *dims.first().ok_or_else(bad)?;
            let row_bytes = usize::try_from(row).ok().and_then(|r| ty.row_bytes(r)).ok_or_else(bad)?;
            let rows = if row == 0 { 0 } else { n / row };
            let len = usize::try_from(rows).ok().and_then(|r| r.checked_mul(row_bytes)).ok_or_else(bad)?;
            let offset = usize::try_from(off).ok().and_then(|o| o.checked_add(data_start)).ok_or_else(bad)?;
            if off as usize % alignment != 0 || offset.checked_add(len).is_none_or(|e| e > b.len()) {
                return Err(bad());
            }
            if tensors.insert(name.clone(), TensorEntry { ty, dims, offset, len }).is_some() {
                return Err(Error::gguf(at, format!("duplicate tensor {name}")));
            }
            order.push(name);
        }
        Ok((meta, tensors, order))
    }
}

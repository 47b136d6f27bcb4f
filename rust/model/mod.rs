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
use crate::gguf::{GgufFile, Value};
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

/// A GGUF file as a [`ModelSource`]: the file is memory-mapped by [`GgufFile`] and tensors
/// point into the map.
pub struct GgufSource {
    file: GgufFile,
}

/// A GGUF metadata value as the model reads it.
fn meta_of(v: &Value) -> Meta {
    if let Some(i) = v.as_u64() {
        return Meta::U(i);
    }
    if let Some(i) = v.as_i64() {
        return Meta::I(i);
    }
    match v {
        Value::F32(_) | Value::F64(_) => Meta::F(v.as_f64().unwrap_or(f64::NAN)),
        Value::Bool(b) => Meta::Bool(*b),
        Value::String(s) => Meta::Str(s.clone()),
        Value::Array(a) => {
            if let Some(strs) = a.to_strs() {
                return Meta::StrArr(strs.into_iter().map(str::to_string).collect());
            }
            let items: Vec<Value> = a.iter().collect();
            if items.iter().all(|x| x.as_i64().is_some()) {
                Meta::IntArr(items.iter().filter_map(Value::as_i64).collect())
            } else if items.iter().all(|x| x.as_f64().is_some()) {
                Meta::FloatArr(items.iter().filter_map(|x| x.as_f64().map(|f| f as f32)).collect())
            } else {
                Meta::Other
            }
        }
        _ => Meta::Other,
    }
}

impl GgufSource {
    /// Map and validate `path`.
    pub fn open(path: &std::path::Path) -> Result<GgufSource> {
        Ok(GgufSource { file: GgufFile::open(path)? })
    }

    /// The underlying file.
    pub fn file(&self) -> &GgufFile {
        &self.file
    }
}

impl ModelSource for GgufSource {
    fn meta(&self, key: &str) -> Option<Meta> {
        self.file.metadata().get(key).map(meta_of)
    }
    fn tensor(&self, name: &str) -> Option<TensorEntry> {
        let t = self.file.tensor(name)?;
        // The reader validated that offset + nbytes lies inside the file.
        Some(TensorEntry {
            ty: t.ty,
            dims: t.dims.iter().map(|&d| d as u64).collect(),
            offset: self.file.data_offset() + t.offset,
            len: t.nbytes,
        })
    }
    fn tensor_names(&self) -> Vec<String> {
        self.file.tensors().iter().map(|t| t.name.clone()).collect()
    }
    fn data(&self) -> &[u8] {
        self.file.bytes()
    }
}

/// Load a model and its tokenizer from a GGUF file.
pub fn load(path: &std::path::Path, threads: Option<usize>) -> Result<(Arc<Model>, Tokenizer)> {
    load_with(path, threads, true)
}

/// [`load`], with the choice of interleaved weight copies ([`Model::from_source_with`]).
pub fn load_with(path: &std::path::Path, threads: Option<usize>, repack: bool) -> Result<(Arc<Model>, Tokenizer)> {
    let src: SharedSource = Arc::new(GgufSource::open(path)?);
    Config::from_source(src.as_ref())?; // architecture errors first
    let tok = Tokenizer::from_source(src.as_ref())?;
    let model = Model::from_source_with(src, threads, repack)?;
    if tok.n_vocab() != model.config.n_vocab {
        return Err(Error::value(format!(
            "the tokenizer has {} tokens but token_embd.weight has {} rows",
            tok.n_vocab(),
            model.config.n_vocab
        )));
    }
    Ok((Arc::new(model), tok))
}

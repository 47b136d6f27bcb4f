//! GGUF files: a memory-mapped reader that validates hostile input, and a streaming writer.
//!
//! ```no_run
//! use kquants::gguf::GgufFile;
//! let f = GgufFile::open("model.gguf")?;
//! let arch = f.metadata().get_str("general.architecture").unwrap_or("?");
//! for t in f.tensors() {
//!     let bytes: &[u8] = f.tensor_data(t);
//!     println!("{arch} {} {:?} {} {}", t.name, t.dims, t.ty, bytes.len());
//! }
//! # Ok::<(), kquants::Error>(())
//! ```
//!
//! Shapes: [`TensorInfo::dims`] is GGUF's `ne[]` order, fastest-varying first (`ne[0]` is the row
//! length). NumPy order (what the Python bindings report) is the reverse: a matrix with `ne =
//! [cols, rows]` has NumPy shape `(rows, cols)`.
//!
//! Every malformed input yields [`crate::Error::Gguf`] naming the field and its byte offset; the
//! parser is fuzzed (`tests/gguf_fuzz.rs`).

use std::collections::HashMap;
use std::path::Path;

use crate::error::Result;
use crate::types::QuantType;

mod reader;
pub mod value;
pub mod writer;

pub use value::{Array, Bytes, Element, Value, ValueType};
pub use writer::GgufWriter;

/// The 4 magic bytes every GGUF file starts with.
pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// Most dimensions a ggml tensor can have.
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of arrays inside arrays the reader accepts (bounds recursion on hostile input).
pub const MAX_ARRAY_DEPTH: usize = 8;

/// Parse and validate one metadata value of type `ty` from its GGUF encoding (without the type
/// id); `encoded` must hold exactly one value. Used to accept values encoded elsewhere (the Python
/// writer) with the reader's own checks.
pub fn decode_value(ty: ValueType, encoded: Bytes) -> Result<Value> {
    reader::decode_value(ty, encoded)
}

/// Ordered metadata key/value pairs with lookup by key.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).and_then(|&i| self.entries.get(i)).map(|(_, v)| v)
    }

    /// Pairs in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Keys in file order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// An integer value of any width that fits `u32` losslessly.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key)?.as_u64().and_then(|v| u32::try_from(v).ok())
    }

    /// An integer value of any width that fits `u64` losslessly.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    /// An integer value of any width that fits `i64` losslessly.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key)?.as_i64()
    }

    /// An `f32` value (or an `f64` one rounded to `f32`).
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        match *self.get(key)? {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// An `f32` or `f64` value as `f64`.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.as_f64()
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Option<&Array> {
        self.get(key)?.as_array()
    }

    /// An array of strings, borrowed (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        self.get_array(key)?.to_strs()
    }

    /// An array whose elements are exactly `T` (e.g. `f32` scores, `i32` token types).
    pub fn get_vec<T: Element>(&self, key: &str) -> Option<Vec<T>> {
        self.get_array(key)?.to_vec()
    }

    /// Insert or replace (used by the writer side; keeps the first position of a replaced key).
    pub(crate) fn set(&mut self, key: &str, value: Value) {
        match self.index.get(key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.to_owned(), self.entries.len());
                self.entries.push((key.to_owned(), value));
            }
        }
    }
}

/// One tensor's header entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `"blk.0.attn_q.weight"`.
    pub name: String,
    /// Dimensions in GGUF `ne[]` order (row length first); 1 to 4 entries, all non-zero.
    pub dims: Vec<usize>,
    /// ggml type.
    pub ty: QuantType,
    /// Byte offset of the data relative to the start of the data section.
    pub offset: usize,
    /// Size of the data in bytes.
    pub nbytes: usize,
}

impl TensorInfo {
    /// Number of values.
    pub fn n_elements(&self) -> usize {
        // Validated by the reader / writer not to overflow (product <= i64::MAX and fits usize).
        self.dims.iter().product()
    }

    /// Shape in NumPy order (`dims` reversed: `(rows, cols)` for a matrix).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }

    /// Number of rows (`n_elements / ne[0]`).
    pub fn n_rows(&self) -> usize {
        self.dims.iter().skip(1).product()
    }
}

/// An open, validated GGUF file.
pub struct GgufFile {
    bytes: Bytes,
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    names: HashMap<String, usize>,
    alignment: usize,
    data_offset: usize,
}

impl GgufFile {
    /// Memory-map and validate the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        reader::open(path.as_ref())
    }

    /// Validate a GGUF file held in memory (tests, fuzzing, downloaded buffers).
    pub fn from_bytes(bytes: Bytes) -> Result<GgufFile> {
        reader::parse(bytes)
    }

    /// Validate a GGUF file held in a `Vec`.
    pub fn from_vec(v: Vec<u8>) -> Result<GgufFile> {
        reader::parse(Bytes::from_vec(v))
    }

    /// Format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.names.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// Data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Absolute byte offset of the data section.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// The whole file.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// A tensor's bytes, borrowed from the map. Returns an empty slice for a `TensorInfo` that
    /// does not belong to this file and does not fit it.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = self.data_offset.saturating_add(t.offset);
        self.bytes.get(start..start.saturating_add(t.nbytes)).unwrap_or(&[])
    }

    /// A tensor's bytes as shared [`Bytes`] that keep the map alive after `self` is dropped.
    pub fn tensor_bytes_arc(&self, t: &TensorInfo) -> Option<Bytes> {
        let start = self.data_offset.checked_add(t.offset)?;
        self.bytes.slice(start, start.checked_add(t.nbytes)?)
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

//! The GGUF parser: validates every field of an untrusted file before anything uses it.
//!
//! Layout (v2 and v3, little-endian): `"GGUF"`, `u32` version, `u64` tensor count, `u64` key/value
//! count, the key/value pairs (`string` key, `u32` value type, value), the tensor infos (`string`
//! name, `u32` n_dims, `u64` ne[n_dims], `u32` ggml type, `u64` offset relative to the data
//! section), padding to `general.alignment` (default 32), then the data section.
//!
//! Counts are never trusted: each one is checked against the bytes left in the file (every item
//! takes a known minimum number of bytes) before anything proportional to it is allocated.

use std::collections::HashMap;
use std::path::Path;

use super::value::{Array, Bytes, Element, Value, ValueType};
use super::{Metadata, TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
use crate::error::{Error, Result};
use crate::types::QuantType;

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, field: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::gguf(
                self.pos as u64,
                format!(
                    "{} needs {n} bytes but only {} remain (file truncated; file is {} bytes)",
                    field(),
                    self.remaining(),
                    self.buf.len()
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn read<T: Element>(&mut self, field: &dyn Fn() -> String) -> Result<T> {
        Ok(T::read_le(self.take(T::TYPE.min_size(), field)?))
    }

    /// A `u64` length or count converted to `usize`, checked to leave room for `count * min_each`
    /// bytes after it.
    fn count(&mut self, min_each: usize, field: &dyn Fn() -> String) -> Result<usize> {
        let at = self.pos as u64;
        let n: u64 = self.read(field)?;
        let need = n.checked_mul(min_each as u64);
        match need {
            Some(need) if need <= self.remaining() as u64 => Ok(n as usize),
            _ => Err(Error::gguf(
                at,
                format!(
                    "{} is {n}, which cannot fit in the {} bytes left in the file",
                    field(),
                    self.remaining()
                ),
            )),
        }
    }

    fn string(&mut self, field: &dyn Fn() -> String) -> Result<&'a str> {
        let at = self.pos as u64;
        let n = self.count(1, &|| format!("{} length", field()))?;
        let b = self.take(n, field)?;
        std::str::from_utf8(b).map_err(|e| {
            Error::gguf(at + 8 + e.valid_up_to() as u64, format!("{} is not valid UTF-8", field()))
        })
    }
}

/// Parse the header of a GGUF file held in `bytes`.
pub(super) fn parse(bytes: Bytes) -> Result<super::GgufFile> {
    let buf: &[u8] = &bytes;
    let mut c = Cursor { buf, pos: 0 };

    let magic = c.take(4, &|| "magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(Error::gguf(0, format!("bad magic {magic:02x?}, expected \"GGUF\"")));
    }
    let version: u32 = c.read(&|| "version".into())?;
    if !(2..=3).contains(&version) {
        let swapped = version.swap_bytes();
        let what = if (1..=3).contains(&swapped) {
            format!(
                "version field reads {version:#x}: this is a big-endian GGUF (version {swapped}); \
                 only little-endian GGUF files are supported"
            )
        } else if version == 1 {
            "version 1 is not supported (only GGUF v2 and v3)".to_owned()
        } else {
            format!("unsupported version {version} (only GGUF v2 and v3)")
        };
        return Err(Error::gguf(4, what));
    }
    // Minimum sizes: a tensor info is name length (8) + n_dims (4) + one dim (8) + type (4) +
    // offset (8); a key/value is key length (8) + type (4) + a 1-byte value.
    let n_tensors_at = c.pos as u64;
    let n_tensors_raw: u64 = c.read(&|| "tensor count".into())?;
    let n_kv = c.count(13, &|| "metadata key/value count".into())?;
    let n_tensors = match n_tensors_raw.checked_mul(32) {
        Some(need) if need <= c.remaining() as u64 => n_tensors_raw as usize,
        _ => {
            return Err(Error::gguf(
                n_tensors_at,
                format!(
                    "tensor count is {n_tensors_raw}, which cannot fit in the {} bytes left in the file",
                    c.remaining()
                ),
            ))
        }
    };

    // Key/value pairs.
    let mut entries: Vec<(String, Value)> = Vec::with_capacity(n_kv);
    let mut index: HashMap<String, usize> = HashMap::with_capacity(n_kv);
    let mut alignment = DEFAULT_ALIGNMENT;
    for i in 0..n_kv {
        let key_at = c.pos as u64;
        let key = c.string(&|| format!("metadata key {i}"))?;
        if index.contains_key(key) {
            return Err(Error::gguf(key_at, format!("duplicate metadata key {key:?}")));
        }
        let type_at = c.pos as u64;
        let tid: u32 = c.read(&|| format!("value type of metadata {key:?}"))?;
        let ty = ValueType::from_id(tid).ok_or_else(|| {
            Error::gguf(type_at, format!("unknown value type id {tid} for metadata {key:?}"))
        })?;
        let value_at = c.pos as u64;
        let value = read_value(&mut c, &bytes, ty, 0, &|| format!("metadata {key:?}"))?;
        if key == "general.alignment" {
            alignment = match value {
                Value::U32(a) if a != 0 && a.is_power_of_two() => a as usize,
                Value::U32(a) => {
                    return Err(Error::gguf(
                        value_at,
                        format!("general.alignment is {a}; it must be a non-zero power of two"),
                    ))
                }
                ref v => {
                    return Err(Error::gguf(
                        type_at,
                        format!("general.alignment has type {}, expected u32", v.value_type()),
                    ))
                }
            };
        }
        index.insert(key.to_owned(), entries.len());
        entries.push((key.to_owned(), value));
    }

    // Tensor infos.
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors);
    let mut names: HashMap<String, usize> = HashMap::with_capacity(n_tensors);
    let mut offset_at: Vec<u64> = Vec::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name_at = c.pos as u64;
        let name = c.string(&|| format!("name of tensor {i}"))?;
        if names.contains_key(name) {
            return Err(Error::gguf(name_at, format!("duplicate tensor name {name:?}")));
        }
        let field = |f: &str| format!("{f} of tensor {i} ({name:?})");
        let nd_at = c.pos as u64;
        let n_dims: u32 = c.read(&|| field("n_dims"))?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(Error::gguf(nd_at, format!("{} is {n_dims}, expected 1..={MAX_DIMS}", field("n_dims"))));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        let mut n_elements: u64 = 1;
        for d in 0..n_dims as usize {
            let at = c.pos as u64;
            let ne: u64 = c.read(&|| field(&format!("ne[{d}]")))?;
            if ne == 0 {
                return Err(Error::gguf(at, format!("{} is 0", field(&format!("ne[{d}]")))));
            }
            n_elements = match n_elements.checked_mul(ne) {
                Some(n) if n <= i64::MAX as u64 => n,
                _ => {
                    return Err(Error::gguf(
                        at,
                        format!("{} = {ne} makes the element count overflow", field(&format!("ne[{d}]"))),
                    ))
                }
            };
            dims.push(usize::try_from(ne).map_err(|_| {
                Error::gguf(at, format!("{} = {ne} does not fit in memory", field(&format!("ne[{d}]"))))
            })?);
        }
        let ty_at = c.pos as u64;
        let tid: u32 = c.read(&|| field("type"))?;
        let ty = QuantType::from_id(tid)
            .ok_or_else(|| Error::gguf(ty_at, format!("{} is unknown or removed ggml type id {tid}", field("type"))))?;
        // dims[0] exists: n_dims >= 1 was checked above.
        let row = ty.row_bytes(dims[0]).ok_or_else(|| {
            Error::gguf(
                nd_at + 4,
                format!(
                    "{} = {} is not a multiple of the {ty} block size {}",
                    field("row length ne[0]"),
                    dims[0],
                    ty.block_size()
                ),
            )
        })?;
        let nbytes = dims[1..]
            .iter()
            .try_fold(row, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= buf.len())
            .ok_or_else(|| {
                Error::gguf(nd_at, format!("{} with shape {dims:?} is larger than the whole file", field("data size")))
            })?;
        let off_at = c.pos as u64;
        let offset: u64 = c.read(&|| field("offset"))?;
        if !offset.is_multiple_of(alignment as u64) {
            return Err(Error::gguf(
                off_at,
                format!("{} = {offset} is not a multiple of the alignment {alignment}", field("offset")),
            ));
        }
        let offset = usize::try_from(offset)
            .ok()
            .filter(|&o| o <= buf.len())
            .ok_or_else(|| Error::gguf(off_at, format!("{} = {offset} is beyond the end of the file", field("offset"))))?;
        names.insert(name.to_owned(), i);
        offset_at.push(off_at);
        tensors.push(TensorInfo { name: name.to_owned(), dims, ty, offset, nbytes });
    }

    // Data section: the end of the header rounded up to the alignment.
    let header_end = c.pos;
    let data_offset = header_end.div_ceil(alignment).saturating_mul(alignment);
    if !tensors.is_empty() && data_offset > buf.len() {
        return Err(Error::gguf(
            header_end as u64,
            format!("data section would start at {data_offset}, beyond the end of the file ({} bytes)", buf.len()),
        ));
    }
    let data_len = buf.len().saturating_sub(data_offset);
    for (t, &at) in tensors.iter().zip(&offset_at) {
        if t.offset.checked_add(t.nbytes).is_none_or(|end| end > data_len) {
            return Err(Error::gguf(
                at,
                format!(
                    "data of tensor {:?} ({} bytes at data offset {}) extends beyond the end of the file \
                     (data section is {data_len} bytes from byte {data_offset})",
                    t.name, t.nbytes, t.offset
                ),
            ));
        }
    }
    // Overlaps: sort by offset and compare neighbours.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_unstable_by_key(|&i| tensors[i].offset);
    for w in order.windows(2) {
        let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
        if a.offset + a.nbytes > b.offset {
            return Err(Error::gguf(
                offset_at[w[1]],
                format!(
                    "tensor {:?} (data offset {}) overlaps tensor {:?} (data offset {}, {} bytes)",
                    b.name, b.offset, a.name, a.offset, a.nbytes
                ),
            ));
        }
    }

    let metadata = Metadata { entries, index };
    Ok(super::GgufFile {
        bytes,
        version,
        metadata,
        tensors,
        names,
        alignment,
        data_offset,
    })
}

/// Read and validate one value of type `ty` at the cursor.
fn read_value(
    c: &mut Cursor<'_>,
    bytes: &Bytes,
    ty: ValueType,
    depth: usize,
    field: &dyn Fn() -> String,
) -> Result<Value> {
    let at = c.pos as u64;
    Ok(match ty {
        ValueType::U8 => Value::U8(c.read(field)?),
        ValueType::I8 => Value::I8(c.read(field)?),
        ValueType::U16 => Value::U16(c.read(field)?),
        ValueType::I16 => Value::I16(c.read(field)?),
        ValueType::U32 => Value::U32(c.read(field)?),
        ValueType::I32 => Value::I32(c.read(field)?),
        ValueType::U64 => Value::U64(c.read(field)?),
        ValueType::I64 => Value::I64(c.read(field)?),
        ValueType::F32 => Value::F32(c.read(field)?),
        ValueType::F64 => Value::F64(c.read(field)?),
        ValueType::Bool => {
            let b: u8 = c.read(field)?;
            if b > 1 {
                return Err(Error::gguf(at, format!("{} is a bool with byte value {b}, expected 0 or 1", field())));
            }
            Value::Bool(b == 1)
        }
        ValueType::String => Value::String(c.string(field)?.to_owned()),
        ValueType::Array => Value::Array(read_array(c, bytes, depth, field)?),
    })
}

/// Validate an array at the cursor (element type, count, elements) without decoding it.
fn read_array(c: &mut Cursor<'_>, bytes: &Bytes, depth: usize, field: &dyn Fn() -> String) -> Result<Array> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(Error::gguf(
            c.pos as u64,
            format!("{} nests arrays deeper than {MAX_ARRAY_DEPTH} levels", field()),
        ));
    }
    let et_at = c.pos as u64;
    let etid: u32 = c.read(&|| format!("{} array element type", field()))?;
    let elem = ValueType::from_id(etid)
        .ok_or_else(|| Error::gguf(et_at, format!("{} has unknown array element type id {etid}", field())))?;
    let len = c.count(elem.min_size(), &|| format!("{} array length", field()))?;
    let start = c.pos;
    match elem {
        ValueType::String => {
            for i in 0..len {
                c.string(&|| format!("{}[{i}]", field()))?;
            }
        }
        ValueType::Array => {
            for i in 0..len {
                read_array(c, bytes, depth + 1, &|| format!("{}[{i}]", field()))?;
            }
        }
        ValueType::Bool => {
            let b = c.take(len, field)?;
            if let Some(i) = b.iter().position(|&x| x > 1) {
                return Err(Error::gguf(
                    (start + i) as u64,
                    format!("{}[{i}] is a bool with byte value {}, expected 0 or 1", field(), b[i]),
                ));
            }
        }
        // `count` checked len * size against the remaining bytes.
        _ => {
            c.take(len * elem.min_size(), field)?;
        }
    }
    let raw = bytes
        .slice(start, c.pos)
        .ok_or_else(|| Error::gguf(start as u64, format!("{} array range is outside the file", field())))?;
    Ok(Array::from_validated(elem, len, raw))
}

/// Memory-map `path` and parse it.
pub(super) fn open(path: &Path) -> Result<super::GgufFile> {
    let ctx = || format!("opening {}", path.display());
    let file = std::fs::File::open(path).map_err(|e| Error::io(ctx(), e))?;
    let meta = file.metadata().map_err(|e| Error::io(ctx(), e))?;
    if meta.len() == 0 {
        return parse(Bytes::from_vec(Vec::new()));
    }
    // SAFETY: the map is read-only. Another process truncating or rewriting the file while it is
    // mapped is outside what we can prevent (the same caveat as every mmap reader, including
    // llama.cpp's); our own writer never modifies a file in place (it writes a temporary file and
    // renames it), so files written by kquants never change under a live map.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(format!("memory-mapping {}", path.display()), e))?;
    parse(Bytes::from_mmap(mmap))
}

/// Parse and validate one value of type `ty` from its GGUF encoding; `encoded` must hold exactly
/// that value. Offsets in errors are relative to `encoded`.
pub(super) fn decode_value(ty: ValueType, encoded: Bytes) -> Result<Value> {
    let mut c = Cursor { buf: &encoded, pos: 0 };
    let v = read_value(&mut c, &encoded, ty, 0, &|| format!("{ty} value"))?;
    if c.pos != encoded.len() {
        return Err(Error::gguf(c.pos as u64, format!("{} bytes left over after the {ty} value", encoded.len() - c.pos)));
    }
    Ok(v)
}

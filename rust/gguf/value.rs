//! GGUF metadata values: the 13 value types, scalars, and arrays kept in their encoded form.
//!
//! An [`Array`] holds its elements as the little-endian bytes GGUF stores (validated once, when
//! the file is opened or the array is built), so a 49k-entry token list costs nothing until it
//! is read, and reading it is a single pass over contiguous bytes.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Where shared bytes live.
enum Store {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// Immutable bytes shared through an `Arc`: a range of a memory-mapped file or of an owned
/// buffer. Cloning is cheap, and the bytes stay valid (and at the same address) as long as any
/// clone lives, which is what lets zero-copy views outlive the [`super::GgufFile`] they came from.
#[derive(Clone)]
pub struct Bytes {
    store: Arc<Store>,
    start: usize,
    end: usize,
}

impl Bytes {
    /// Bytes owning `v`.
    pub fn from_vec(v: Vec<u8>) -> Bytes {
        let end = v.len();
        Bytes { store: Arc::new(Store::Owned(v)), start: 0, end }
    }

    pub(crate) fn from_mmap(m: memmap2::Mmap) -> Bytes {
        let end = m.len();
        Bytes { store: Arc::new(Store::Mmap(m)), start: 0, end }
    }

    /// A sub-range (relative to `self`) sharing the same storage, or `None` if out of range.
    pub fn slice(&self, start: usize, end: usize) -> Option<Bytes> {
        if start > end || end > self.len() {
            return None;
        }
        Some(Bytes { store: self.store.clone(), start: self.start + start, end: self.start + end })
    }

    fn whole(&self) -> &[u8] {
        match &*self.store {
            Store::Mmap(m) => m,
            Store::Owned(v) => v,
        }
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // `start..end` is checked against the store's length wherever a `Bytes` is made
        // (`from_*` take the full length, `slice` checks), and the store never changes size.
        &self.whole()[self.start..self.end]
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.len())
    }
}

/// A GGUF metadata value type (`gguf_type` in ggml). The discriminant is the id stored in files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    /// `uint8`
    U8 = 0,
    /// `int8`
    I8 = 1,
    /// `uint16`
    U16 = 2,
    /// `int16`
    I16 = 3,
    /// `uint32`
    U32 = 4,
    /// `int32`
    I32 = 5,
    /// `float32`
    F32 = 6,
    /// `bool`, one byte, 0 or 1
    Bool = 7,
    /// UTF-8 string: `u64` length, then bytes
    String = 8,
    /// array: `u32` element type, `u64` count, then elements
    Array = 9,
    /// `uint64`
    U64 = 10,
    /// `int64`
    I64 = 11,
    /// `float64`
    F64 = 12,
}

impl ValueType {
    /// Every value type, in id order.
    pub const ALL: [ValueType; 13] = [
        ValueType::U8,
        ValueType::I8,
        ValueType::U16,
        ValueType::I16,
        ValueType::U32,
        ValueType::I32,
        ValueType::F32,
        ValueType::Bool,
        ValueType::String,
        ValueType::Array,
        ValueType::U64,
        ValueType::I64,
        ValueType::F64,
    ];

    /// The type with this id, or `None`.
    pub fn from_id(id: u32) -> Option<ValueType> {
        ValueType::ALL.get(usize::try_from(id).ok()?).copied()
    }

    /// The id stored in files.
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// Short lowercase name: `"u8"`, `"f32"`, `"bool"`, `"str"`, `"array"`, ...
    pub const fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "u8",
            ValueType::I8 => "i8",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
            ValueType::String => "str",
            ValueType::Array => "array",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F64 => "f64",
        }
    }

    /// Parse [`ValueType::name`] (also accepts `"string"`).
    pub fn from_name(name: &str) -> Option<ValueType> {
        if name == "string" {
            return Some(ValueType::String);
        }
        ValueType::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// Encoded size of one value of a fixed-size type; `None` for strings and arrays.
    pub const fn fixed_size(self) -> Option<usize> {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => Some(1),
            ValueType::U16 | ValueType::I16 => Some(2),
            ValueType::U32 | ValueType::I32 | ValueType::F32 => Some(4),
            ValueType::U64 | ValueType::I64 | ValueType::F64 => Some(8),
            ValueType::String | ValueType::Array => None,
        }
    }

    /// The smallest number of bytes one value of this type can take in a file (a string is at
    /// least its 8-byte length, an array its 4-byte type and 8-byte count). Used to reject counts
    /// that cannot fit before anything is allocated.
    pub const fn min_size(self) -> usize {
        match self.fixed_size() {
            Some(n) => n,
            None => match self {
                ValueType::String => 8,
                _ => 12,
            },
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `u8`
    U8(u8),
    /// `i8`
    I8(i8),
    /// `u16`
    U16(u16),
    /// `i16`
    I16(i16),
    /// `u32`
    U32(u32),
    /// `i32`
    I32(i32),
    /// `u64`
    U64(u64),
    /// `i64`
    I64(i64),
    /// `f32`
    F32(f32),
    /// `f64`
    F64(f64),
    /// `bool`
    Bool(bool),
    /// UTF-8 string
    String(String),
    /// Array (possibly of strings or of arrays)
    Array(Array),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F32(_) => ValueType::F32,
            Value::F64(_) => ValueType::F64,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
        }
    }

    /// Any integer value as `i128` (lossless), else `None`.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// An integer value converted losslessly to `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_integer().and_then(|v| u64::try_from(v).ok())
    }

    /// An integer value converted losslessly to `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_integer().and_then(|v| i64::try_from(v).ok())
    }

    /// A float value as `f64` (`f32` widened exactly).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The string, for [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The bool, for [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The array, for [`Value::Array`].
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Append this value's GGUF encoding (without the type id) to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::U8(v) => out.push(*v),
            Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Bool(v) => out.push(u8::from(*v)),
            Value::String(s) => encode_str(s, out),
            Value::Array(a) => a.encode(out),
        }
    }
}

pub(crate) fn encode_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

macro_rules! value_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value { Value::$v(x) }
        }
    )*};
}
value_from!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, u64 => U64,
    i64 => I64, f32 => F32, f64 => F64, bool => Bool, String => String, Array => Array);

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

/// A fixed-size element type that can be read from and written to an [`Array`] in bulk.
pub trait Element: Copy {
    /// The GGUF value type of this element.
    const TYPE: ValueType;
    /// Decode from little-endian bytes (`bytes.len()` is the type's fixed size).
    fn read_le(bytes: &[u8]) -> Self;
    /// Append the little-endian encoding.
    fn write_le(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($($t:ty => $v:ident),*) => {$(
        impl Element for $t {
            const TYPE: ValueType = ValueType::$v;
            fn read_le(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
element!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, u64 => U64,
    i64 => I64, f32 => F32, f64 => F64);

impl Element for bool {
    const TYPE: ValueType = ValueType::Bool;
    fn read_le(bytes: &[u8]) -> Self {
        bytes.first().is_some_and(|&b| b != 0)
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
}

/// A GGUF array: element type, count, and the elements' encoded bytes (already validated).
#[derive(Clone)]
pub struct Array {
    elem: ValueType,
    len: usize,
    raw: Bytes,
}

impl PartialEq for Array {
    fn eq(&self, other: &Array) -> bool {
        self.elem == other.elem && self.len == other.len && *self.raw == *other.raw
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array<{}>[{}]", self.elem, self.len)
    }
}

impl Array {
    /// Made by the reader from a validated range.
    pub(crate) fn from_validated(elem: ValueType, len: usize, raw: Bytes) -> Array {
        Array { elem, len, raw }
    }

    /// An array of fixed-size elements.
    pub fn from_slice<T: Element>(items: &[T]) -> Array {
        let mut out = Vec::with_capacity(items.len() * T::TYPE.min_size());
        for &x in items {
            x.write_le(&mut out);
        }
        Array { elem: T::TYPE, len: items.len(), raw: Bytes::from_vec(out) }
    }

    /// An array of strings.
    pub fn from_strs<S: AsRef<str>>(items: &[S]) -> Array {
        let total: usize = items.iter().map(|s| 8 + s.as_ref().len()).sum();
        let mut out = Vec::with_capacity(total);
        for s in items {
            encode_str(s.as_ref(), &mut out);
        }
        Array { elem: ValueType::String, len: items.len(), raw: Bytes::from_vec(out) }
    }

    /// An array of values that must all have type `elem` (an empty array keeps `elem`).
    pub fn from_values(elem: ValueType, items: &[Value]) -> Result<Array> {
        let mut out = Vec::new();
        for (i, v) in items.iter().enumerate() {
            if v.value_type() != elem {
                return Err(Error::value(format!(
                    "array element {i} has type {}, expected {elem}",
                    v.value_type()
                )));
            }
            if let Value::Array(a) = v {
                out.extend_from_slice(&a.elem.id().to_le_bytes());
                out.extend_from_slice(&(a.len as u64).to_le_bytes());
                out.extend_from_slice(&a.raw);
            } else {
                v.encode(&mut out);
            }
        }
        Ok(Array { elem, len: items.len(), raw: Bytes::from_vec(out) })
    }

    /// Element type.
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty array.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements' encoded bytes (little-endian; strings as length + bytes).
    pub fn raw_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Append the full encoding (element type, count, elements) to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.elem.id().to_le_bytes());
        out.extend_from_slice(&(self.len as u64).to_le_bytes());
        out.extend_from_slice(&self.raw);
    }

    /// Iterate the elements as [`Value`]s.
    pub fn iter(&self) -> ArrayIter<'_> {
        ArrayIter { elem: self.elem, raw: &self.raw, pos: 0, left: self.len, owner: &self.raw }
    }

    /// Element `i`: O(1) for fixed-size types, O(i) for strings and arrays.
    pub fn get(&self, i: usize) -> Option<Value> {
        if i >= self.len {
            return None;
        }
        match self.elem.fixed_size() {
            Some(n) => decode_fixed(self.elem, self.raw.get(i * n..(i + 1) * n)?),
            None => self.iter().nth(i),
        }
    }

    /// The elements as `T`s when the element type is exactly `T`'s.
    pub fn to_vec<T: Element>(&self) -> Option<Vec<T>> {
        if self.elem != T::TYPE {
            return None;
        }
        let n = T::TYPE.min_size();
        Some(self.raw.chunks_exact(n).map(T::read_le).collect())
    }

    /// The elements as borrowed strings when the element type is string.
    pub fn to_strs(&self) -> Option<Vec<&str>> {
        if self.elem != ValueType::String {
            return None;
        }
        let mut out = Vec::with_capacity(self.len);
        let mut pos = 0;
        for _ in 0..self.len {
            out.push(next_str(&self.raw, &mut pos)?);
        }
        Some(out)
    }
}

/// Iterator over an [`Array`]'s elements.
pub struct ArrayIter<'a> {
    elem: ValueType,
    raw: &'a [u8],
    pos: usize,
    left: usize,
    owner: &'a Bytes,
}

impl Iterator for ArrayIter<'_> {
    type Item = Value;
    fn next(&mut self) -> Option<Value> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match self.elem {
            ValueType::String => next_str(self.raw, &mut self.pos).map(|s| Value::String(s.to_owned())),
            ValueType::Array => {
                let ty = ValueType::from_id(u32::read_le(self.raw.get(self.pos..self.pos + 4)?))?;
                let len = usize::try_from(u64::read_le(self.raw.get(self.pos + 4..self.pos + 12)?)).ok()?;
                let start = self.pos + 12;
                let end = start + encoded_len(ty, len, self.raw.get(start..)?)?;
                self.pos = end;
                Some(Value::Array(Array { elem: ty, len, raw: self.owner.slice(start, end)? }))
            }
            ty => {
                let n = ty.min_size();
                let v = decode_fixed(ty, self.raw.get(self.pos..self.pos + n)?);
                self.pos += n;
                v
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// Read a length-prefixed string at `*pos` (from bytes validated as UTF-8 when they were made).
pub(crate) fn next_str<'a>(raw: &'a [u8], pos: &mut usize) -> Option<&'a str> {
    let n = usize::try_from(u64::read_le(raw.get(*pos..*pos + 8)?)).ok()?;
    let s = raw.get(*pos + 8..(*pos + 8).checked_add(n)?)?;
    *pos += 8 + n;
    std::str::from_utf8(s).ok()
}

/// Byte length of `len` encoded elements of type `ty` at the start of `raw` (already validated).
fn encoded_len(ty: ValueType, len: usize, raw: &[u8]) -> Option<usize> {
    if let Some(n) = ty.fixed_size() {
        return len.checked_mul(n);
    }
    let mut pos = 0usize;
    for _ in 0..len {
        match ty {
            ValueType::String => {
                let n = usize::try_from(u64::read_le(raw.get(pos..pos + 8)?)).ok()?;
                pos = pos.checked_add(8)?.checked_add(n)?;
            }
            _ => {
                let t = ValueType::from_id(u32::read_le(raw.get(pos..pos + 4)?))?;
                let n = usize::try_from(u64::read_le(raw.get(pos + 4..pos + 12)?)).ok()?;
                pos += 12;
                pos = pos.checked_add(encoded_len(t, n, raw.get(pos..)?)?)?;
            }
        }
    }
    Some(pos)
}

fn decode_fixed(ty: ValueType, b: &[u8]) -> Option<Value> {
    Some(match ty {
        ValueType::U8 => Value::U8(u8::read_le(b)),
        ValueType::I8 => Value::I8(i8::read_le(b)),
        ValueType::U16 => Value::U16(u16::read_le(b)),
        ValueType::I16 => Value::I16(i16::read_le(b)),
        ValueType::U32 => Value::U32(u32::read_le(b)),
        ValueType::I32 => Value::I32(i32::read_le(b)),
        ValueType::U64 => Value::U64(u64::read_le(b)),
        ValueType::I64 => Value::I64(i64::read_le(b)),
        ValueType::F32 => Value::F32(f32::read_le(b)),
        ValueType::F64 => Value::F64(f64::read_le(b)),
        ValueType::Bool => Value::Bool(bool::read_le(b)),
        ValueType::String | ValueType::Array => return None,
    })
}

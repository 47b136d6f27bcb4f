//! Bindings for `crate::gguf`: the native halves of `kquants.GGUFFile` / `Tensor` / `GGUFWriter`.
//! The Python package (`python/kquants/gguf.py`) adds the Mapping views, type inference for
//! metadata and the context-manager sugar.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use numpy::ndarray::ArrayView1;
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::gguf::{decode_value, Bytes, GgufFile, GgufWriter, Value, ValueType};
use crate::types::QuantType;

/// Keeps the bytes under a zero-copy NumPy view alive (the array's `base`).
#[pyclass(module = "kquants._kquants", frozen)]
struct _Buffer {
    bytes: Bytes,
}

#[pymethods]
impl _Buffer {
    fn __len__(&self) -> usize {
        self.bytes.len()
    }
}

/// A zero-copy, read-only 1-D `uint8` array over `bytes`.
fn u8_view<'py>(py: Python<'py>, bytes: &Bytes) -> PyResult<Bound<'py, PyAny>> {
    let owner = Bound::new(py, _Buffer { bytes: bytes.clone() })?;
    let slice: &[u8] = bytes;
    let view = ArrayView1::from(slice);
    // SAFETY: the array points into the storage `bytes` shares with its clone in `owner` (same
    // `Arc`, same address): an `Arc`-shared, never-mutated,
    // never-moved buffer (an mmap or an owned Vec); `owner` becomes the array's base object, so
    // the bytes live at least as long as the array. The array is made read-only right below, so
    // NumPy never writes through the pointer.
    let arr = unsafe { PyArray1::<u8>::borrow_from_array(&view, owner.into_any()) };
    arr.call_method1("setflags", (false,))?;
    Ok(arr.into_any())
}

/// The native GGUF reader (`kquants.GGUFFile` wraps it).
#[pyclass(name = "_GGUFFile", module = "kquants._kquants", frozen)]
struct PyGgufFile {
    inner: Mutex<Option<Arc<GgufFile>>>,
    path: PathBuf,
}

impl PyGgufFile {
    fn file(&self) -> PyResult<Arc<GgufFile>> {
        lock(&self.inner)
            .clone()
            .ok_or_else(|| PyValueError::new_err(format!("GGUF file {} is closed", self.path.display())))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the data (an Option
    // swapped whole) is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Type name of a value: `"u32"`, `"str"`, `"array[str]"`, `"array[array[i32]]"`; nested arrays
/// whose elements differ in type report `"array[array]"`.
fn type_name(v: &Value) -> String {
    match v {
        Value::Array(a) if a.elem_type() == ValueType::Array => {
            let mut inner: Option<String> = None;
            for e in a.iter() {
                let n = type_name(&e);
                match &inner {
                    None => inner = Some(n),
                    Some(i) if *i == n => {}
                    Some(_) => return "array[array]".into(),
                }
            }
            format!("array[{}]", inner.unwrap_or_else(|| "array".into()))
        }
        Value::Array(a) => format!("array[{}]", a.elem_type().name()),
        v => v.value_type().name().into(),
    }
}

fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::U8(x) => x.into_pyobject(py)?.into_any(),
        Value::I8(x) => x.into_pyobject(py)?.into_any(),
        Value::U16(x) => x.into_pyobject(py)?.into_any(),
        Value::I16(x) => x.into_pyobject(py)?.into_any(),
        Value::U32(x) => x.into_pyobject(py)?.into_any(),
        Value::I32(x) => x.into_pyobject(py)?.into_any(),
        Value::U64(x) => x.into_pyobject(py)?.into_any(),
        Value::I64(x) => x.into_pyobject(py)?.into_any(),
        Value::F32(x) => f64::from(*x).into_pyobject(py)?.into_any(),
        Value::F64(x) => x.into_pyobject(py)?.into_any(),
        Value::Bool(x) => x.into_pyobject(py)?.to_owned().into_any(),
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(a) => {
            macro_rules! arr {
                ($t:ty) => {
                    PyArray1::from_vec(py, a.to_vec::<$t>().unwrap_or_default()).into_any()
                };
            }
            match a.elem_type() {
                ValueType::U8 => arr!(u8),
                ValueType::I8 => arr!(i8),
                ValueType::U16 => arr!(u16),
                ValueType::I16 => arr!(i16),
                ValueType::U32 => arr!(u32),
                ValueType::I32 => arr!(i32),
                ValueType::U64 => arr!(u64),
                ValueType::I64 => arr!(i64),
                ValueType::F32 => arr!(f32),
                ValueType::F64 => arr!(f64),
                ValueType::Bool => arr!(bool),
                ValueType::String => PyList::new(py, a.to_strs().unwrap_or_default())?.into_any(),
                ValueType::Array => {
                    let items = a.iter().map(|e| to_py(py, &e)).collect::<PyResult<Vec<_>>>()?;
                    PyList::new(py, items)?.into_any()
                }
            }
        }
    })
}

#[pymethods]
impl PyGgufFile {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let f = py.detach(|| GgufFile::open(&path))?;
        Ok(PyGgufFile { inner: Mutex::new(Some(Arc::new(f))), path })
    }

    /// Path given to the constructor.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// GGUF version (2 or 3).
    #[getter]
    fn version(&self) -> PyResult<u32> {
        Ok(self.file()?.version())
    }

    /// Data alignment.
    #[getter]
    fn alignment(&self) -> PyResult<usize> {
        Ok(self.file()?.alignment())
    }

    /// Absolute byte offset of the data section.
    #[getter]
    fn data_offset(&self) -> PyResult<usize> {
        Ok(self.file()?.data_offset())
    }

    /// `[(key, type_name, length_or_None)]` in file order.
    fn metadata_index(&self) -> PyResult<Vec<(String, String, Option<usize>)>> {
        let f = self.file()?;
        Ok(f.metadata()
            .iter()
            .map(|(k, v)| (k.to_owned(), type_name(v), v.as_array().map(|a| a.len())))
            .collect())
    }

    /// The Python value of `key` (numeric arrays as NumPy arrays, string arrays as lists).
    fn metadata_value<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        let f = self.file()?;
        let v = f.metadata().get(key).ok_or_else(|| PyKeyError::new_err(key.to_owned()))?;
        to_py(py, v)
    }

    /// Every tensor, in file order.
    fn tensors(&self) -> PyResult<Vec<Tensor>> {
        let f = self.file()?;
        let base = f.data_offset();
        Ok(f.tensors()
            .iter()
            .filter_map(|t| {
                let bytes = f.tensor_bytes_arc(t)?;
                Some(Tensor {
                    name: t.name.clone(),
                    dims: t.dims.clone(),
                    ty: t.ty,
                    offset: t.offset,
                    file_offset: base + t.offset,
                    bytes,
                })
            })
            .collect())
    }

    /// Drop this object's reference to the map (views already handed out stay valid).
    fn close(&self) {
        lock(&self.inner).take();
    }

    /// True once `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.inner).is_none()
    }
}

/// One tensor of a GGUF file.
#[pyclass(module = "kquants", frozen)]
struct Tensor {
    name: String,
    dims: Vec<usize>,
    ty: QuantType,
    offset: usize,
    file_offset: usize,
    bytes: Bytes,
}

#[pymethods]
impl Tensor {
    /// Tensor name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Shape in NumPy order (GGUF `ne[]` reversed: `(rows, cols)` for a matrix).
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.dims.iter().rev())
    }

    /// Dimensions in GGUF `ne[]` order (row length first).
    #[getter]
    fn ne<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.dims)
    }

    /// ggml type: a `kquants.QuantType` member when the package defines that enum, else the
    /// type name string.
    #[getter]
    fn r#type<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(qt) = py.import("kquants").and_then(|m| m.getattr("QuantType")) {
            if let Ok(member) = qt.get_item(self.ty.name()) {
                return Ok(member);
            }
        }
        Ok(self.ty.name().into_pyobject(py)?.into_any())
    }

    /// ggml type name (`"Q4_K"`, `"F32"`).
    #[getter]
    fn type_name(&self) -> &'static str {
        self.ty.name()
    }

    /// ggml type id.
    #[getter]
    fn type_id(&self) -> u32 {
        self.ty.id()
    }

    /// Size of the data in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.bytes.len()
    }

    /// Offset of the data relative to the data section (as stored in the file).
    #[getter]
    fn offset(&self) -> usize {
        self.offset
    }

    /// Absolute byte offset of the data in the file.
    #[getter]
    fn file_offset(&self) -> usize {
        self.file_offset
    }

    /// Number of values.
    #[getter]
    fn n_elements(&self) -> usize {
        self.dims.iter().product()
    }

    /// Zero-copy read-only `uint8` view of the tensor's bytes; keeps the file mapped.
    #[getter]
    fn raw<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        u8_view(py, &self.bytes)
    }

    fn __repr__(&self) -> String {
        let shape: Vec<String> = self.dims.iter().rev().map(|d| d.to_string()).collect();
        format!("Tensor({:?}, {}, shape=({}), nbytes={})", self.name, self.ty, shape.join(", "), self.bytes.len())
    }
}

/// The native streaming writer (`kquants.GGUFWriter` wraps it).
#[pyclass(name = "_GGUFWriter", module = "kquants._kquants", frozen)]
struct PyGgufWriter {
    inner: Mutex<Option<GgufWriter>>,
}

impl PyGgufWriter {
    fn with<T>(&self, f: impl FnOnce(&mut GgufWriter) -> crate::Result<T>) -> PyResult<T> {
        let mut g = lock(&self.inner);
        let w = g.as_mut().ok_or_else(|| PyValueError::new_err("the GGUF writer is closed"))?;
        Ok(f(w)?)
    }
}

fn quant_type(name: &str) -> PyResult<QuantType> {
    QuantType::from_name(name).ok_or_else(|| PyValueError::new_err(format!("unknown ggml type {name:?}")))
}

#[pymethods]
impl PyGgufWriter {
    #[new]
    #[pyo3(signature = (path, alignment = 32))]
    fn new(path: PathBuf, alignment: usize) -> PyResult<Self> {
        Ok(PyGgufWriter { inner: Mutex::new(Some(GgufWriter::with_alignment(path, alignment)?)) })
    }

    /// Add `key` with a value of type id `type_id` given in its GGUF encoding (validated by the
    /// reader's value parser).
    fn add_metadata_encoded(&self, key: &str, type_id: u32, encoded: Vec<u8>) -> PyResult<()> {
        let ty = ValueType::from_id(type_id)
            .ok_or_else(|| PyValueError::new_err(format!("unknown GGUF value type id {type_id}")))?;
        let v = decode_value(ty, Bytes::from_vec(encoded))?;
        self.with(|w| w.add_metadata(key, v))
    }

    /// Declare a tensor (`ne` in GGUF order); returns `(offset, nbytes)`.
    fn add_tensor_info(&self, name: &str, ne: Vec<usize>, type_name: &str) -> PyResult<(usize, usize)> {
        let ty = quant_type(type_name)?;
        self.with(|w| w.add_tensor_info(name, &ne, ty).map(|t| (t.offset, t.nbytes)))
    }

    /// Bytes of tensor data, in declaration order (a C-contiguous `uint8` array).
    fn write_tensor_data(&self, py: Python<'_>, data: PyReadonlyArray1<'_, u8>) -> PyResult<()> {
        let slice = data.as_slice().map_err(|_| PyValueError::new_err("tensor data must be contiguous"))?;
        let mut g = lock(&self.inner);
        let w = g.as_mut().ok_or_else(|| PyValueError::new_err("the GGUF writer is closed"))?;
        Ok(py.detach(|| w.write_tensor_data(slice))?)
    }

    /// `(name, bytes_still_needed)` of the tensor the next data goes to, or `None`.
    fn next_tensor(&self) -> PyResult<Option<(String, usize)>> {
        self.with(|w| Ok(w.next_tensor().map(|t| (t.name.clone(), t.nbytes))))
    }

    /// Write the header if needed, check all data was given, and rename into place.
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        let w = lock(&self.inner).take().ok_or_else(|| PyValueError::new_err("the GGUF writer is closed"))?;
        Ok(py.detach(|| w.finish())?)
    }

    /// Discard everything written (the temporary file is deleted; the target is untouched).
    fn abort(&self) {
        lock(&self.inner).take();
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGgufFile>()?;
    m.add_class::<Tensor>()?;
    m.add_class::<PyGgufWriter>()?;
    m.add_class::<_Buffer>()?;
    Ok(())
}

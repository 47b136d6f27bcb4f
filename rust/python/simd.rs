//! Bindings for `crate::simd` and `crate::matmul`: `simd_info()`, `matmul(w, x)`, `vec_dot(qa, qb)`,
//! `PackedWeight(w)`.
//!
//! `w`, `qa`, `qb` are quantized tensors: any object with `.type` (a `QuantType`, its name or
//! ggml id), `.shape` (the logical float shape, last axis = row length) and `.data` (a C-contiguous
//! `uint8` NumPy array of the raw blocks), as `kquants.QTensor` provides.

use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::Error;
use crate::matmul as mm;
use crate::simd::{self, Isa};
use crate::types::QuantType;

/// A borrowed quantized tensor: type, logical shape, raw bytes.
struct QView<'py> {
    ty: QuantType,
    shape: Vec<usize>,
    data: PyReadonlyArrayDyn<'py, u8>,
}

fn quant_type_of(obj: &Bound<'_, PyAny>) -> PyResult<QuantType> {
    if let Ok(id) = obj.getattr("ggml_id").and_then(|v| v.extract::<u32>()) {
        return QuantType::from_id(id).ok_or_else(|| PyValueError::new_err(format!("unknown ggml type id {id}")));
    }
    if let Ok(id) = obj.extract::<u32>() {
        return QuantType::from_id(id).ok_or_else(|| PyValueError::new_err(format!("unknown ggml type id {id}")));
    }
    let name: String = match obj.extract::<String>() {
        Ok(s) => s,
        Err(_) => obj.getattr("name")?.extract()?,
    };
    QuantType::from_name(&name).ok_or_else(|| PyValueError::new_err(format!("unknown quant type {name:?}")))
}

fn qview<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<QView<'py>> {
    let attr = |a: &str| {
        obj.getattr(a).map_err(|_| {
            PyTypeError::new_err(format!("{what} must be a quantized tensor (QTensor) with .type, .shape and .data"))
        })
    };
    let ty = quant_type_of(&attr("type")?)?;
    let shape: Vec<usize> = attr("shape")?.extract()?;
    let data: PyReadonlyArrayDyn<'py, u8> = attr("data")?
        .extract()
        .map_err(|_| PyTypeError::new_err(format!("{what}.data must be a uint8 NumPy array")))?;
    if !data.is_c_contiguous() {
        return Err(PyValueError::new_err(format!("{what}.data must be C-contiguous")));
    }
    let k = *shape.last().ok_or_else(|| PyValueError::new_err(format!("{what} has an empty shape")))?;
    let rows: usize = shape[..shape.len() - 1].iter().product();
    let need = ty
        .row_bytes(k)
        .and_then(|rb| rb.checked_mul(rows))
        .ok_or_else(|| PyValueError::new_err(format!("{what}: row length {k} is not a multiple of the {ty} block size")))?;
    if data.len() != need {
        return Err(PyValueError::new_err(format!(
            "{what}.data has {} bytes, shape {shape:?} of {ty} needs {need}",
            data.len()
        )));
    }
    Ok(QView { ty, shape, data })
}

/// `simd_info() -> dict`: the instruction set in use and per-type kernel levels.
#[pyfunction]
fn simd_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    let k = simd::kernels();
    d.set_item("isa", k.isa().name())?;
    d.set_item("detected", simd::detected_isa().name())?;
    d.set_item("requested", simd::requested_isa().map(Isa::name))?;
    d.set_item("available", simd::available_isas().iter().map(|i| i.name()).collect::<Vec<_>>())?;
    let dots = PyDict::new(py);
    let acts = PyDict::new(py);
    for &t in QuantType::ALL {
        if let Some(i) = k.vec_dot_isa(t) {
            dots.set_item(t.name(), i.name())?;
        }
        if let Some(i) = k.quantize_act_isa(t) {
            acts.set_item(t.name(), i.name())?;
        }
    }
    d.set_item("vec_dot", dots)?;
    d.set_item("quantize_activations", acts)?;
    Ok(d)
}

/// `PackedWeight(w)`: a 2-D quantized weight prepared once for many `matmul` calls, stored in
/// the layout this machine's kernels read fastest (`crate::matmul::PackedWeight`).
#[pyclass(name = "PackedWeight", module = "kquants", frozen)]
struct PyPackedWeight {
    inner: mm::PackedWeight,
}

#[pymethods]
impl PyPackedWeight {
    #[new]
    fn new(py: Python<'_>, w: &Bound<'_, PyAny>) -> PyResult<PyPackedWeight> {
        let wv = qview(w, "w")?;
        if wv.shape.len() != 2 {
            return Err(PyValueError::new_err(format!("w must be 2-D (n, k), got shape {:?}", wv.shape)));
        }
        let (n, k, ty) = (wv.shape[0], wv.shape[1], wv.ty);
        let bytes = wv.data.as_slice().map_err(|e| PyValueError::new_err(e.to_string()))?;
        let inner = py.detach(|| mm::PackedWeight::new(ty, bytes, n, k))?;
        Ok(PyPackedWeight { inner })
    }

    /// The block type (a `kquants.QuantType`).
    #[getter]
    fn r#type<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("kquants")?.getattr("QuantType")?.get_item(self.inner.ty().name())
    }

    /// `(n, k)`: rows and values per row.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        (self.inner.n(), self.inner.k())
    }

    /// Whether the rows are stored interleaved for the 16-row kernels.
    #[getter]
    fn interleaved(&self) -> bool {
        self.inner.is_interleaved()
    }

    /// Bytes held.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }

    /// The original ggml row bytes, a new `uint8` array of shape `(n, row_bytes)`.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
        let rows = py.detach(|| self.inner.to_rows());
        let n = self.inner.n();
        let rb = rows.len() / n.max(1);
        Ok(numpy::PyArray1::from_vec(py, rows).reshape(vec![n, rb])?)
    }

    fn __repr__(&self) -> String {
        let layout = if self.inner.is_interleaved() { "interleaved" } else { "rows" };
        format!(
            "PackedWeight({}, shape=({}, {}), {layout}, {:.1} MiB)",
            self.inner.ty(),
            self.inner.n(),
            self.inner.k(),
            self.inner.nbytes() as f64 / 1048576.0
        )
    }
}

/// `x` (float32, last axis `k`) as contiguous rows: the values and the leading shape.
fn activations<'py>(x: &Bound<'py, PyAny>, k: usize) -> PyResult<(Vec<f32>, Vec<usize>)> {
    let xa: PyReadonlyArrayDyn<'py, f32> = x
        .extract()
        .map_err(|_| PyTypeError::new_err("x must be a float32 NumPy array (convert with np.asarray(x, np.float32))"))?;
    let xs = xa.shape().to_vec();
    if xs.last() != Some(&k) {
        return Err(PyValueError::new_err(format!("x has shape {xs:?}; its last axis must be k = {k}")));
    }
    let v = match xa.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => xa.as_array().iter().copied().collect(),
    };
    Ok((v, xs[..xs.len() - 1].to_vec()))
}

/// `matmul(w, x, *, threads=None) -> np.ndarray`: `x @ dequantize(w).T` with quantized kernels.
#[pyfunction]
#[pyo3(signature = (w, x, *, threads=None))]
fn matmul<'py>(
    py: Python<'py>,
    w: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    if let Ok(p) = w.cast::<PyPackedWeight>() {
        let p = p.get();
        let (n, k) = (p.inner.n(), p.inner.k());
        let (xv, mut oshape) = activations(x, k)?;
        let m: usize = oshape.iter().product();
        let mut out = vec![0f32; m * n];
        py.detach(|| mm::matmul_packed(&p.inner, &xv, m, &mut out, threads))?;
        oshape.push(n);
        return Ok(numpy::PyArray1::from_vec(py, out).reshape(oshape)?);
    }
    let wv = qview(w, "w")?;
    if wv.shape.len() != 2 {
        return Err(PyValueError::new_err(format!("w must be 2-D (n, k), got shape {:?}", wv.shape)));
    }
    let (n, k) = (wv.shape[0], wv.shape[1]);
    let (xv, mut oshape) = activations(x, k)?;
    let m: usize = oshape.iter().product();
    let wbytes = wv.data.as_slice().map_err(|e| PyValueError::new_err(e.to_string()))?;
    let ty = wv.ty;
    let mut out = vec![0f32; m * n];
    py.detach(|| mm::matmul(ty, wbytes, n, k, &xv, m, &mut out, threads))?;
    oshape.push(n);
    Ok(numpy::PyArray1::from_vec(py, out).reshape(oshape)?)
}

/// `vec_dot(qa, qb) -> float`: one row of a block type with one row of its activation type.
#[pyfunction]
fn vec_dot(py: Python<'_>, qa: &Bound<'_, PyAny>, qb: &Bound<'_, PyAny>) -> PyResult<f32> {
    let a = qview(qa, "qa")?;
    let b = qview(qb, "qb")?;
    let n = *a.shape.last().unwrap_or(&0);
    if a.shape.iter().product::<usize>() != n || b.shape.iter().product::<usize>() != n {
        return Err(PyValueError::new_err(format!(
            "vec_dot takes single rows of the same length, got shapes {:?} and {:?}",
            a.shape, b.shape
        )));
    }
    if a.ty.dot_type() != Some(b.ty) {
        return Err(Error::value(format!(
            "{} rows are dotted with {} rows, got {}",
            a.ty,
            a.ty.dot_type().map_or("(none)", |t| t.name()),
            b.ty
        ))
        .into());
    }
    let (ab, bb) = (
        a.data.as_slice().map_err(|e| PyValueError::new_err(e.to_string()))?,
        b.data.as_slice().map_err(|e| PyValueError::new_err(e.to_string()))?,
    );
    let ty = a.ty;
    Ok(py.detach(|| simd::vec_dot(ty, n, ab, bb))?)
}

/// `quantize_activations(x, type) -> np.ndarray[uint8]`: rows of `x` quantized to the
/// activation type of weight type `type` with ggml's SIMD rounding (what matmul uses).
#[pyfunction]
fn quantize_activations<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    r#type: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let ty = quant_type_of(r#type)?;
    let xs = x.shape().to_vec();
    let k = *xs.last().ok_or_else(|| PyValueError::new_err("x must have at least one axis"))?;
    let m: usize = xs[..xs.len() - 1].iter().product();
    let xc = x.as_array().as_standard_layout().into_owned();
    let xslice = xc.as_slice().ok_or_else(|| PyValueError::new_err("x is not contiguous"))?;
    let q = py.detach(|| mm::quantize_activations(ty, xslice, k, m))?;
    let (_, rb) = simd::dot_row_bytes(ty, k)?;
    let mut oshape = xs[..xs.len() - 1].to_vec();
    oshape.push(rb);
    let arr = numpy::PyArray1::from_vec(py, q.data().to_vec());
    Ok(arr.reshape(oshape)?)
}

/// `_read_bandwidth(buf, threads, reps=3) -> (bytes_per_second, streams, ahead)`: the fastest
/// plain read of the uint8 array `buf` with `threads` threads, best of `reps` passes per
/// setting (`kquants::simd::stream::read_stream_best`); the peer of a DRAM-bound GEMV over the
/// same bytes (benches/kernels_vs_llamacpp.py). Releases the GIL.
#[pyfunction]
#[pyo3(signature = (buf, threads, reps=3))]
fn _read_bandwidth(py: Python<'_>, buf: PyReadonlyArrayDyn<'_, u8>, threads: usize, reps: usize) -> PyResult<(f64, usize, usize)> {
    let bytes = buf.as_slice().map_err(|_| PyValueError::new_err("buf must be a C-contiguous uint8 array"))?;
    let (bps, s) = py.detach(|| simd::stream::read_stream_best(bytes, threads, reps))?;
    Ok((bps, s.streams, s.ahead))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_read_bandwidth, m)?)?;
    m.add_function(wrap_pyfunction!(simd_info, m)?)?;
    m.add_function(wrap_pyfunction!(matmul, m)?)?;
    m.add_class::<PyPackedWeight>()?;
    m.add_function(wrap_pyfunction!(vec_dot, m)?)?;
    m.add_function(wrap_pyfunction!(quantize_activations, m)?)?;
    Ok(())
}

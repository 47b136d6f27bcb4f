//! Bindings for `crate::quant`: the type table, quantize, dequantize and the scalar reference dot.
//!
//! These are the private primitives behind `kquants.quantize` / `kquants.dequantize` /
//! `kquants.QTensor` (pure Python in `python/kquants/_quant.py`). They take NumPy arrays and
//! ggml type ids, validate everything (a bad argument is a Python exception, never a panic),
//! release the GIL for the work, and hand the result to NumPy without copying.

use std::borrow::Cow;

use numpy::{
    PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::error::{Error, Result};
use crate::quant::{self, Path};
use crate::types::QuantType;

/// `[(name, ggml_id, block_size, type_size, supported)]` for every ggml type (other modules
/// unpack this 5-tuple; add new facts as separate functions).
#[pyfunction]
fn _type_table() -> Vec<(&'static str, u32, usize, usize, bool)> {
    QuantType::ALL
        .iter()
        .map(|&t| (t.name(), t.id(), t.block_size(), t.type_size(), quant::is_supported(t)))
        .collect()
}

/// Names of the types ggml refuses to quantize without an importance matrix.
#[pyfunction]
fn _imatrix_required() -> Vec<&'static str> {
    QuantType::ALL.iter().filter(|t| t.requires_imatrix()).map(|t| t.name()).collect()
}

fn quant_type(id: u32) -> Result<QuantType> {
    QuantType::from_id(id).ok_or_else(|| Error::value(format!("unknown ggml type id {id}")))
}

/// The elements of `a` in C order: borrowed when the array is C-contiguous, copied otherwise.
fn c_order<'a, T: numpy::Element + Copy, D: numpy::ndarray::Dimension>(
    a: &'a numpy::PyReadonlyArray<'_, T, D>,
) -> Cow<'a, [T]> {
    if a.is_c_contiguous() {
        if let Ok(s) = a.as_slice() {
            return Cow::Borrowed(s);
        }
    }
    Cow::Owned(a.as_array().iter().copied().collect())
}

/// The full NumPy index of flat C-order position `i` in an array of `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        let d = d.max(1);
        idx[k] = i % d;
        i /= d;
    }
    idx
}

/// A new uninitialized NumPy array (what `numpy.empty` makes, through NumPy's C API): no
/// zero-filling pass, since every element is written by the codec before Python sees the array.
/// NumPy's allocator also reuses freed blocks, where a fresh Rust `Vec` of megabytes costs a
/// memset or page faults on every call.
fn np_empty<'py, T: numpy::Element, D: numpy::ndarray::Dimension>(
    py: Python<'py>,
    shape: impl numpy::ndarray::IntoDimension<Dim = D>,
) -> Bound<'py, numpy::PyArray<T, D>> {
    // SAFETY: the array is uninitialized; both callers write every element before returning it
    // to Python (or drop it on error without reading it).
    unsafe { numpy::PyArray::<T, D>::new(py, shape, false) }
}

/// The elements of an array this module has just created and not yet handed out.
fn fresh_slice<'a, T: numpy::Element, D: numpy::ndarray::Dimension>(
    arr: &'a Bound<'_, numpy::PyArray<T, D>>,
) -> PyResult<&'a mut [T]> {
    // SAFETY: `arr` was made by `np_empty` in this call: C-contiguous, and no other reference to
    // it exists (Python has not seen it yet), so nothing else reads or writes it meanwhile.
    unsafe { arr.as_slice_mut() }.map_err(|e| Error::value(format!("internal: output not contiguous: {e}")).into())
}

/// Quantize a float32 array whose last axis is a row. Returns `uint8[rows, row_bytes]`, written
/// in place into a NumPy array.
#[pyfunction]
#[pyo3(signature = (x, type_id, imatrix=None, threads=None, reference=false))]
fn _quantize<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    type_id: u32,
    imatrix: Option<PyReadonlyArray1<'py, f32>>,
    threads: Option<usize>,
    reference: bool,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let t = quant_type(type_id)?;
    let shape = x.shape().to_vec();
    let Some(&n_per_row) = shape.last() else {
        return Err(Error::value("cannot quantize a 0-d array: the last axis is a row").into());
    };
    let rows = shape[..shape.len() - 1]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::value("array too large"))?;
    let row_bytes = t.row_bytes(n_per_row).ok_or_else(|| {
        Error::value(format!(
            "the last axis has {n_per_row} values, not a multiple of the {t} block size {}",
            t.block_size()
        ))
    })?;
    let total = rows.checked_mul(row_bytes).ok_or_else(|| Error::value("array too large"))?;
    let src = c_order(&x);
    let w = imatrix.as_ref().map(c_order);
    let path = if reference { Path::Ref } else { Path::Chunk };

    let arr = np_empty::<u8, numpy::Ix2>(py, [rows, row_bytes]);
    let result = if n_per_row == 0 {
        // Rows of no values: nothing to compute, but the same argument checks as a real call.
        quant::codec(t).and_then(|_| {
            if let Some(w) = &w {
                quant::check_imatrix(w, 0)?;
            } else if t.requires_imatrix() {
                return Err(Error::value(format!("{t} requires an importance matrix (imatrix=...)")));
            }
            Ok(())
        })
    } else {
        let out = fresh_slice(&arr)?;
        debug_assert_eq!(out.len(), total);
        // `quantize_into` runs on the calling thread for `threads=1` or a one-task array, on a
        // cached pool of `threads` workers otherwise.
        py.detach(|| quant::quantize_into(t, &src, n_per_row, w.as_deref(), path, out, threads))
    };
    match result {
        Ok(()) => Ok(arr),
        // `quantize_into` names the bad value as (row, col) of the flattened rows; give the full
        // NumPy index too. Only this error starts so (`quant::check_finite`); the rescan runs on
        // the error path only.
        Err(Error::Value(msg)) if msg.starts_with("input is not finite") => {
            let i = src.iter().position(|v| !v.is_finite()).unwrap_or(0);
            let idx = unravel(i, &shape);
            let idx = idx.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
            let comma = if shape.len() == 1 { "," } else { "" };
            Err(Error::value(format!("{msg}; NumPy index ({idx}{comma})")).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Dequantize whole blocks of a type from a `uint8` array (any shape, C order). Returns a
/// float32 array that NumPy owns (no copy): flat, or of `shape` when given (whose size must be
/// the number of values the blocks hold).
#[pyfunction]
#[pyo3(signature = (data, type_id, threads=None, shape=None))]
fn _dequantize<'py>(
    py: Python<'py>,
    data: PyReadonlyArrayDyn<'py, u8>,
    type_id: u32,
    threads: Option<usize>,
    shape: Option<Vec<usize>>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let t = quant_type(type_id)?;
    let src = c_order(&data);
    let ts = t.type_size();
    if !src.len().is_multiple_of(ts) {
        return Err(Error::value(format!("{} bytes are not whole {t} blocks of {ts} bytes", src.len())).into());
    }
    let count = src.len() / ts * t.block_size();
    let shape = match shape {
        None => vec![count],
        Some(s) if s.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) == Some(count) => s,
        Some(s) => {
            return Err(Error::value(format!("shape {s:?} does not hold the {count} values of the blocks")).into())
        }
    };
    let arr = np_empty::<f32, numpy::IxDyn>(py, shape.as_slice());
    let out = fresh_slice(&arr)?;
    py.detach(|| quant::dequantize_into(t, &src, out, threads))?;
    Ok(arr)
}

/// Scalar reference dot product of a row of `type_id` with a row of its activation type, both of
/// `n` values (the specification the SIMD kernels are tested against).
#[pyfunction]
fn _vec_dot_ref(
    py: Python<'_>,
    type_id: u32,
    a: PyReadonlyArray1<'_, u8>,
    b: PyReadonlyArray1<'_, u8>,
    n: usize,
) -> PyResult<f32> {
    let t = quant_type(type_id)?;
    let (a, b) = (c_order(&a), c_order(&b));
    Ok(py.detach(|| quant::vec_dot_ref(t, &a, &b, n))?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_type_table, m)?)?;
    m.add_function(wrap_pyfunction!(_imatrix_required, m)?)?;
    m.add_function(wrap_pyfunction!(_quantize, m)?)?;
    m.add_function(wrap_pyfunction!(_dequantize, m)?)?;
    m.add_function(wrap_pyfunction!(_vec_dot_ref, m)?)?;
    Ok(())
}

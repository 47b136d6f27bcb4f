//! Bindings for `crate::quantize_model` and `crate::mix`: whole-model quantization.
//!
//! The Python side (`python/kquants/_quantize_model.py`) parses names and builds the report; this
//! file only converts arguments, releases the GIL for the work, and calls back into Python once
//! per tensor for progress (where Ctrl-C is noticed and aborts the run cleanly).

use std::path::PathBuf;

use pyo3::prelude::*;
use regex::Regex;

use crate::error::{Error, Result};
use crate::mix::FileType;
use crate::quantize_model::{quantize_model, ImatrixInput, Progress, QuantizeOptions};
use crate::types::QuantType;

fn qtype(id: u32) -> Result<QuantType> {
    QuantType::from_id(id).ok_or_else(|| Error::value(format!("unknown ggml type id {id}")))
}

/// `[(name, ftype_id, default_type_name, help)]` for every llama-quantize mix.
#[pyfunction]
fn _file_types() -> Vec<(&'static str, u32, &'static str, &'static str)> {
    FileType::ALL.iter().map(|f| (f.name(), f.id(), f.default_type().name(), f.help())).collect()
}

/// One row of the report: (name, shape, from, to, bytes_in, bytes_out, used_imatrix).
type Row = (String, Vec<usize>, &'static str, &'static str, usize, usize, bool);

/// Quantize a GGUF model file. Returns (rows, n_elements, needs_imatrix).
#[pyfunction]
#[pyo3(signature = (input, output, ftype, *, only_copy=false, imatrix=None, include_weights=vec![], exclude_weights=vec![],
    output_tensor_type=None, token_embedding_type=None, tensor_types=vec![], pure=false, leave_output_tensor=false,
    allow_requantize=false, dry_run=false, threads=None, progress=None))]
#[allow(clippy::too_many_arguments)]
fn _quantize_model(
    py: Python<'_>,
    input: PathBuf,
    output: PathBuf,
    ftype: &str,
    only_copy: bool,
    imatrix: Option<PathBuf>,
    include_weights: Vec<String>,
    exclude_weights: Vec<String>,
    output_tensor_type: Option<u32>,
    token_embedding_type: Option<u32>,
    tensor_types: Vec<(String, u32)>,
    pure: bool,
    leave_output_tensor: bool,
    allow_requantize: bool,
    dry_run: bool,
    threads: Option<usize>,
    progress: Option<Py<PyAny>>,
) -> PyResult<(Vec<Row>, usize, bool)> {
    let ft = FileType::from_name(ftype).ok_or_else(|| Error::value(format!("unknown quantization type {ftype:?}")))?;
    let mut opts = QuantizeOptions::new(ft);
    opts.mix.only_copy = only_copy;
    opts.mix.pure = pure;
    opts.mix.quantize_output_tensor = !leave_output_tensor;
    opts.mix.output_tensor_type = output_tensor_type.map(qtype).transpose()?;
    opts.mix.token_embedding_type = token_embedding_type.map(qtype).transpose()?;
    for (pat, id) in tensor_types {
        let re = Regex::new(&pat).map_err(|e| Error::value(format!("bad tensor type pattern {pat:?}: {e}")))?;
        opts.mix.tensor_types.push((re, qtype(id)?));
    }
    if !include_weights.is_empty() && !exclude_weights.is_empty() {
        return Err(Error::value("include_weights and exclude_weights cannot be combined").into());
    }
    opts.allow_requantize = allow_requantize;
    opts.dry_run = dry_run;
    opts.threads = threads;
    let report = with_progress(py, progress, |cb| {
        if let Some(p) = &imatrix {
            opts.imatrix = Some(ImatrixInput::load(p, &include_weights, &exclude_weights)?);
        }
        quantize_model(&input, &output, &opts, cb)
    })?;
    let rows = report
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone(), t.from.name(), t.to.name(), t.bytes_in, t.bytes_out, t.used_imatrix))
        .collect();
    Ok((rows, report.n_elements, report.needs_imatrix))
}

/// Run `work` with the GIL released, handing it a per-tensor progress callback that notices
/// Ctrl-C (`check_signals`) and calls `progress` with (done, total, name, from, to, bytes_done,
/// bytes_total). An exception raised there (KeyboardInterrupt included) aborts the run and is
/// re-raised as itself once the run has cleaned up. Shared by quantize and convert.
pub(crate) fn with_progress<R: Send>(
    py: Python<'_>,
    progress: Option<Py<PyAny>>,
    work: impl FnOnce(&mut dyn FnMut(&Progress<'_>) -> Result<()>) -> Result<R> + Send,
) -> PyResult<R> {
    let mut raised: Option<PyErr> = None;
    let result = py.detach(|| {
        let mut cb = |p: &Progress<'_>| -> Result<()> {
            Python::attach(|py| -> PyResult<()> {
                py.check_signals()?;
                if let Some(f) = &progress {
                    let t = p.tensor;
                    f.call1(py, (p.done, p.total, t.name.as_str(), t.from.name(), t.to.name(), p.bytes_done, p.bytes_total))?;
                }
                Ok(())
            })
            .map_err(|e| {
                let msg = format!("aborted: {e}");
                raised = Some(e);
                Error::value(msg)
            })
        };
        work(&mut cb)
    });
    result.map_err(|e| raised.take().unwrap_or_else(|| e.into()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_file_types, m)?)?;
    m.add_function(wrap_pyfunction!(_quantize_model, m)?)?;
    Ok(())
}

//! Bindings for `crate::convert`: Hugging Face safetensors directory → GGUF.
//!
//! Like `quantize.rs`: the work runs with the GIL released and calls back into Python once per
//! tensor for progress, where Ctrl-C is noticed and aborts the run (leaving no output).

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::convert::{convert, ConvertOptions, OutType};

/// One row of the report: (name, shape, from, to, bytes_in, bytes_out).
type Row = (String, Vec<usize>, &'static str, &'static str, usize, usize);

/// Convert a Hugging Face model directory. Returns (rows, n_elements).
#[pyfunction]
#[pyo3(signature = (model_dir, output, outtype, *, threads=None, model_name=None, tokenizer_pre=None, progress=None))]
#[allow(clippy::too_many_arguments)]
fn _convert(
    py: Python<'_>,
    model_dir: PathBuf,
    output: PathBuf,
    outtype: &str,
    threads: Option<usize>,
    model_name: Option<String>,
    tokenizer_pre: Option<String>,
    progress: Option<Py<PyAny>>,
) -> PyResult<(Vec<Row>, usize)> {
    let mut opts = ConvertOptions::new(OutType::parse(outtype)?);
    opts.threads = threads;
    opts.model_name = model_name;
    opts.tokenizer_pre = tokenizer_pre;
    let report = super::quantize::with_progress(py, progress, |cb| convert(&model_dir, &output, &opts, cb))?;
    let rows = report
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone(), t.from.name(), t.to.name(), t.bytes_in, t.bytes_out))
        .collect();
    Ok((rows, report.n_elements))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_convert, m)?)?;
    Ok(())
}

//! Bindings for `crate::convert`: Hugging Face safetensors directory → GGUF.
//!
//! Like `quantize.rs`: the work runs with the GIL released and calls back into Python once per
//! tensor for progress, where Ctrl-C is noticed and aborts the run (leaving no output).

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::convert::{convert, ConvertOptions, OutType};
use crate::error::{Error, Result};
use crate::quantize_model::Progress;

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
    let mut raised: Option<PyErr> = None;
    let report = py.detach(|| -> Result<_> {
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
        convert(&model_dir, &output, &opts, &mut cb)
    });
    let report = match report {
        Ok(r) => r,
        // An exception from the progress callback (KeyboardInterrupt included) is re-raised as
        // itself once the run has cleaned up.
        Err(e) => return Err(raised.take().unwrap_or_else(|| e.into())),
    };
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

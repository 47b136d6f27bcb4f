//! PyO3 bindings (feature `python`): thin wrappers that extract and validate arguments, release
//! the GIL, call the Rust core, and convert results. One file per core module.

use pyo3::prelude::*;

mod convert;
mod error;
mod gguf;
mod model;
mod quant;
mod quantize;
mod simd;

pub use error::GGUFError;

/// The native module `kquants._kquants`; the Python package re-exports it.
#[pymodule(gil_used = false)]
fn _kquants(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("GGUFError", m.py().get_type::<GGUFError>())?;
    quant::register(m)?;
    quantize::register(m)?;
    convert::register(m)?;
    gguf::register(m)?;
    model::register(m)?;
    simd::register(m)?;
    Ok(())
}

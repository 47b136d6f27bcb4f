//! Bindings for `crate::quant`: the type table for now; quantize/dequantize/QTensor come here.

use pyo3::prelude::*;

use crate::types::QuantType;

/// `[(name, ggml_id, block_size, type_size, supported)]` for every ggml type.
#[pyfunction]
fn _type_table() -> Vec<(&'static str, u32, usize, usize, bool)> {
    QuantType::ALL
        .iter()
        .map(|&t| (t.name(), t.id(), t.block_size(), t.type_size(), crate::quant::is_supported(t)))
        .collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_type_table, m)?)?;
    Ok(())
}

//! # kquants
//!
//! Every ggml quantization type — legacy (Q4_0…Q8_0), K-quants (Q2_K…Q6_K), IQ grids, ternary
//! TQ, FP4 — quantized and dequantized bit-exactly like ggml; SIMD dot products chosen at run
//! time; memory-mapped GGUF reading and streaming writing. Usable from Rust without Python; the
//! `python` feature adds the PyO3 bindings that the `kquants` wheel ships.
//!
//! ```
//! use kquants::{quant, QuantType};
//! let row: Vec<f32> = (0..256).map(|i| (i as f32 * 0.1).sin()).collect();
//! let q = quant::quantize(QuantType::F16, &row, 256, None, None).unwrap();
//! let back = quant::dequantize(QuantType::F16, &q, None).unwrap();
//! assert!((back[3] - row[3]).abs() < 1e-3);
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod atomic_file;
pub mod error;
pub mod gguf;
pub mod imatrix;
pub mod matmul;
pub mod mix;
pub mod model;
pub mod parallel;
pub mod quant;
pub mod quantize_model;
pub mod simd;
pub mod types;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
pub use types::QuantType;

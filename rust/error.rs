//! The crate's one error type. The Python bindings map each variant to one Python exception
//! (`rust/python/error.rs`): `Gguf` → `kquants.GGUFError` (a `ValueError`), `Value`/`Unsupported` →
//! `ValueError`, `Io` → `OSError` subclasses by kind.

use crate::types::QuantType;

/// Everything that can go wrong in kquants.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A GGUF file is malformed. `offset` is the byte offset of the offending field.
    #[error("invalid GGUF file: {what} (at byte offset {offset})")]
    Gguf {
        /// Byte offset in the file of the field that is wrong.
        offset: u64,
        /// What is wrong, naming the field.
        what: String,
    },
    /// An argument is out of range or has the wrong shape (Python `ValueError`).
    #[error("{0}")]
    Value(String),
    /// The type does not support the requested operation.
    #[error("{ty} does not support {op}")]
    Unsupported {
        /// The type asked for.
        ty: QuantType,
        /// The operation, e.g. `"quantization"`.
        op: &'static str,
    },
    /// An I/O error, with the path or action it happened on.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (`"opening model.gguf"`).
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A [`Error::Gguf`] at `offset`.
    pub fn gguf(offset: u64, what: impl Into<String>) -> Self {
        Error::Gguf { offset, what: what.into() }
    }

    /// A [`Error::Value`].
    pub fn value(what: impl Into<String>) -> Self {
        Error::Value(what.into())
    }

    /// An [`Error::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

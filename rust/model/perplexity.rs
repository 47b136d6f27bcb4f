//! Perplexity and KL divergence over a text, chunked like llama.cpp's `llama-perplexity`:
//! the token stream is cut into chunks of `n_ctx` tokens (the first replaced by BOS when the
//! model adds one), each chunk is evaluated from an empty cache, and only the second half of
//! each chunk is scored (positions `n_ctx/2 .. n_ctx-1` predicting the next token).

use std::sync::Arc;

use super::llama::Model;
use super::sampling::argmax;
use crate::error::{Error, Result};

/// Statistics against a base model on the same tokens (llama.cpp `--kl-divergence`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KlStats {
    /// Mean KL(base ‖ model) per scored token, in nats.
    pub mean_kld: f64,
    /// Largest per-token KLD.
    pub max_kld: f64,
    /// Fraction of scored tokens where both models have the same top-1 token.
    pub same_top1: f64,
    /// The base model's perplexity on the same tokens.
    pub base_ppl: f64,
    /// `ppl / base_ppl`.
    pub ppl_ratio: f64,
}

/// Result of a perplexity run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerplexityResult {
    /// exp(mean negative log-likelihood).
    pub ppl: f64,
    /// Standard error of the PPL estimate (delta method, as llama.cpp prints `± x`).
    pub ppl_err: f64,
    /// Chunks evaluated.
    pub chunks: usize,
    /// Tokens scored.
    pub scored: usize,
    /// KL statistics when a base model was given.
    pub kl: Option<KlStats>,
}

/// log-softmax of one row, in f64.
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    logits.iter().map(|&v| v as f64 - lse).collect()
}

/// KL(p ‖ q) from log-probabilities.
pub fn kl_divergence(logp: &[f64], logq: &[f64]) -> f64 {
    logp.iter().zip(logq).map(|(&a, &b)| if a.is_finite() { a.exp() * (a - b) } else { 0.0 }).sum()
}

/// Evaluate perplexity of `model` on `tokens` with chunks of `n_ctx`; with `base`, also KL
/// statistics of `model` against `base`. `add_bos` is the BOS id to put first in every chunk.
/// `progress(done, total)` is called after every chunk.
pub fn perplexity(
    model: &Arc<Model>,
    base: Option<&Arc<Model>>,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    max_chunks: Option<usize>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PerplexityResult> {
    if n_ctx < 4 {
        return Err(Error::value(format!("context size {n_ctx} is too small (at least 4)")));
    }
    if let Some(b) = base {
        if b.config.n_vocab != model.config.n_vocab {
            return Err(Error::value(format!(
                "base model has {} tokens in its vocabulary, the model {}",
                b.config.n_vocab, model.config.n_vocab
            )));
        }
    }
    let mut n_chunks = tokens.len() / n_ctx;
    if let Some(m) = max_chunks {
        n_chunks = n_chunks.min(m);
    }
    if n_chunks == 0 {
        return Err(Error::value(format!(
            "the text has {} tokens, fewer than one chunk of {n_ctx}",
            tokens.len()
        )));
    }
    let first = n_ctx / 2;
    let nv = model.config.n_vocab;
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    let (mut base_nll, mut kld_sum, mut kld_max, mut same) = (0f64, 0f64, 0f64, 0usize);
    let mut sess = model.session();
    let mut base_sess = base.map(|b| b.session());
    for c in 0..n_chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        sess.reset();
        let logits = sess.eval(&chunk, true)?;
        let base_logits = match base_sess.as_mut() {
            Some(s) => {
                s.reset();
                Some(s.eval(&chunk, true)?)
            }
            None => None,
        };
        for j in first..n_ctx - 1 {
            let row = &logits[j * nv..(j + 1) * nv];
            let target = tokens[c * n_ctx + j + 1] as usize;
            let lp = log_softmax(row);
            let v = -lp[target];
            nll += v;
            nll2 += v * v;
            count += 1;
            if let Some(bl) = &base_logits {
                let brow = &bl[j * nv..(j + 1) * nv];
                let blp = log_softmax(brow);
                base_nll -= blp[target];
                let k = kl_divergence(&blp, &lp);
                kld_sum += k;
                kld_max = kld_max.max(k);
                if argmax(row) == argmax(brow) {
                    same += 1;
                }
            }
        }
        progress(c + 1, n_chunks);
    }
    let n = count as f64;
    let mean = nll / n;
    let ppl = mean.exp();
    // Delta method: se(ppl) = ppl * sqrt(var(nll) / (n - 1)).
    let var = (nll2 / n - mean * mean).max(0.0);
    let ppl_err = if count > 1 { ppl * (var / (n - 1.0)).sqrt() } else { 0.0 };
    let kl = base.map(|_| {
        let base_ppl = (base_nll / n).exp();
        KlStats { mean_kld: kld_sum / n, max_kld: kld_max, same_top1: same as f64 / n, base_ppl, ppl_ratio: ppl / base_ppl }
    });
    Ok(PerplexityResult { ppl, ppl_err, chunks: n_chunks, scored: count, kl })
}

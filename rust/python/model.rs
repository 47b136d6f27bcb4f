//! Bindings for `crate::model`: the native `Model` class, generation iterator, perplexity and
//! imatrix entry points. `python/kquants/model.py` adds the friendly layer on top.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::Error;
use crate::imatrix::Imatrix;
use crate::model::imatrix::Collector;
use crate::model::perplexity::perplexity;
use crate::model::sampling::{Sampler, SamplerConfig};
use crate::model::tokenizer::Utf8Stream;
use crate::model::{self as core, Model, Session, Tokenizer};

/// A loaded llama-family model (weights memory-mapped, kept quantized) with its tokenizer.
#[pyclass(name = "_Model", module = "kquants._kquants", frozen)]
pub struct PyModel {
    model: Arc<Model>,
    tok: Arc<Tokenizer>,
}

fn ids_of(ids: Vec<i64>, n_vocab: usize) -> PyResult<Vec<u32>> {
    ids.into_iter()
        .map(|i| {
            if i < 0 || i as usize >= n_vocab {
                Err(PyValueError::new_err(format!("token id {i} is outside the vocabulary of {n_vocab} tokens")))
            } else {
                Ok(i as u32)
            }
        })
        .collect()
}

#[pymethods]
impl PyModel {
    /// Load a GGUF model file.
    #[staticmethod]
    #[pyo3(signature = (path, threads=None, repack=true))]
    fn load(py: Python<'_>, path: PathBuf, threads: Option<usize>, repack: bool) -> PyResult<Self> {
        let (model, tok) = py.detach(|| core::load_with(&path, threads, repack))?;
        Ok(PyModel { model, tok: Arc::new(tok) })
    }

    /// Hyperparameters as a dict.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.model.config;
        let d = PyDict::new(py);
        d.set_item("architecture", c.arch.name())?;
        d.set_item("n_layer", c.n_layer)?;
        d.set_item("n_embd", c.n_embd)?;
        d.set_item("n_ff", c.n_ff)?;
        d.set_item("n_head", c.n_head)?;
        d.set_item("n_head_kv", c.n_head_kv)?;
        d.set_item("head_dim", c.head_dim)?;
        d.set_item("n_rot", c.n_rot)?;
        d.set_item("interleaved_weights", self.model.interleaved_weights())?;
        d.set_item("rope_base", c.rope_base)?;
        d.set_item("rope_freq_scale", c.rope_freq_scale)?;
        d.set_item("rms_eps", c.rms_eps)?;
        d.set_item("n_ctx_train", c.n_ctx_train)?;
        d.set_item("n_vocab", c.n_vocab)?;
        d.set_item("threads", self.model.threads())?;
        Ok(d)
    }

    #[getter]
    fn n_vocab(&self) -> usize {
        self.model.config.n_vocab
    }
    #[getter]
    fn bos_token_id(&self) -> Option<u32> {
        self.tok.bos
    }
    #[getter]
    fn eos_token_id(&self) -> Option<u32> {
        self.tok.eos
    }
    #[getter]
    fn eot_token_id(&self) -> Option<u32> {
        self.tok.eot
    }
    #[getter]
    fn add_bos(&self) -> bool {
        self.tok.add_bos
    }
    #[getter]
    fn chat_template(&self) -> Option<String> {
        self.tok.chat_template.clone()
    }

    /// Text to token ids (special tokens in the text are parsed; BOS added when the model asks
    /// and `add_special`).
    #[pyo3(signature = (text, add_special=true))]
    fn tokenize(&self, py: Python<'_>, text: &str, add_special: bool) -> PyResult<Vec<u32>> {
        let tok = Arc::clone(&self.tok);
        let text = text.to_string();
        Ok(py.detach(move || tok.encode(&text, add_special))?)
    }

    /// Token ids to text.
    fn detokenize(&self, ids: Vec<i64>) -> PyResult<String> {
        let ids = ids_of(ids, self.tok.n_vocab())?;
        Ok(self.tok.decode(&ids)?)
    }

    /// The bytes of one token.
    fn token_bytes(&self, id: i64) -> PyResult<Vec<u8>> {
        let ids = ids_of(vec![id], self.tok.n_vocab())?;
        Ok(self.tok.token_bytes(ids[0]).to_vec())
    }

    /// Logits `float32 [n, n_vocab]` for every position of `ids` (or `[1, n_vocab]` for the last
    /// one with `last_only`), from an empty cache.
    #[pyo3(signature = (ids, last_only=false))]
    fn forward<'py>(&self, py: Python<'py>, ids: Vec<i64>, last_only: bool) -> PyResult<Bound<'py, PyAny>> {
        let ids = ids_of(ids, self.model.config.n_vocab)?;
        let rows = if last_only { ids.len().min(1) } else { ids.len() };
        let m = Arc::clone(&self.model);
        let logits = py.detach(move || {
            let mut s = m.session();
            s.eval(&ids, !last_only)
        })?;
        let arr = PyArray1::from_vec(py, logits);
        Ok(arr.reshape([rows, self.model.config.n_vocab])?.into_any())
    }

    /// A generation iterator over text pieces.
    #[pyo3(signature = (ids, max_tokens, temperature, top_k, top_p, seed, stop_ids))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        ids: Vec<i64>,
        max_tokens: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        seed: u64,
        stop_ids: Vec<i64>,
    ) -> PyResult<PyGenerator> {
        let ids = ids_of(ids, self.model.config.n_vocab)?;
        if ids.is_empty() {
            return Err(PyValueError::new_err("the prompt has no tokens"));
        }
        let stop = ids_of(stop_ids, self.model.config.n_vocab)?;
        let sampler = Sampler::new(SamplerConfig { temperature, top_k, top_p, seed })?;
        Ok(PyGenerator {
            session: self.model.session(),
            tok: Arc::clone(&self.tok),
            sampler,
            stream: Utf8Stream::default(),
            pending: ids,
            remaining: max_tokens,
            stop,
            done: false,
            generated: Vec::new(),
            prompt_tokens: 0,
            prompt_seconds: 0.0,
            gen_seconds: 0.0,
        })
    }

    /// Render the chat template with `messages` (a list of `{role, content}` dicts).
    #[pyo3(signature = (messages, add_generation_prompt=true))]
    fn apply_chat_template(&self, messages: Vec<HashMap<String, String>>, add_generation_prompt: bool) -> PyResult<String> {
        let tpl = self
            .tok
            .chat_template
            .as_deref()
            .ok_or_else(|| PyValueError::new_err("the model has no tokenizer.chat_template"))?;
        let bos = self.tok.bos.and_then(|b| self.tok.token(b)).unwrap_or("").to_string();
        let eos = self.tok.eos.and_then(|b| self.tok.token(b)).unwrap_or("").to_string();
        Ok(core::tokenizer::render_chat(tpl, &messages, add_generation_prompt, &bos, &eos)?)
    }

    /// Perplexity (and KL statistics against `base`) over `text`.
    #[pyo3(signature = (text, n_ctx, base=None, max_chunks=None, progress=None))]
    fn perplexity<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        n_ctx: usize,
        base: Option<PyRef<'py, PyModel>>,
        max_chunks: Option<usize>,
        progress: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let tokens = self.tok.encode(text, true)?;
        let bos = if self.tok.add_bos { self.tok.bos } else { None };
        let base_model = base.map(|b| Arc::clone(&b.model));
        let m = Arc::clone(&self.model);
        let progress = progress.map(|p| p.unbind());
        let r = py.detach(|| {
            let mut cb = |done: usize, total: usize| {
                if let Some(p) = &progress {
                    Python::attach(|py| {
                        let _ = p.call1(py, (done, total));
                    });
                }
            };
            perplexity(&m, base_model.as_ref(), &tokens, n_ctx, bos, max_chunks, &mut cb)
        })?;
        let d = PyDict::new(py);
        d.set_item("ppl", r.ppl)?;
        d.set_item("ppl_err", r.ppl_err)?;
        d.set_item("chunks", r.chunks)?;
        d.set_item("scored_tokens", r.scored)?;
        d.set_item("n_tokens", tokens.len())?;
        if let Some(kl) = r.kl {
            d.set_item("mean_kld", kl.mean_kld)?;
            d.set_item("max_kld", kl.max_kld)?;
            d.set_item("same_top1", kl.same_top1)?;
            d.set_item("base_ppl", kl.base_ppl)?;
            d.set_item("ppl_ratio", kl.ppl_ratio)?;
        }
        Ok(d)
    }

    /// Collect an importance matrix over `text` in chunks of `n_ctx` and write it to `out`
    /// (GGUF unless the name ends in `.dat`). Returns the number of chunks.
    #[pyo3(signature = (text, out, n_ctx=512, max_chunks=None, dataset=String::new(), progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn imatrix<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        out: PathBuf,
        n_ctx: usize,
        max_chunks: Option<usize>,
        dataset: String,
        progress: Option<Bound<'py, PyAny>>,
    ) -> PyResult<usize> {
        let tokens = self.tok.encode(text, true)?;
        let bos = if self.tok.add_bos { self.tok.bos } else { None };
        let m = Arc::clone(&self.model);
        let progress = progress.map(|p| p.unbind());
        let n = py.detach(|| -> Result<usize, Error> {
            let mut cb = |done: usize, total: usize| {
                if let Some(p) = &progress {
                    Python::attach(|py| {
                        let _ = p.call1(py, (done, total));
                    });
                }
            };
            let mut col = Collector::default();
            let n = core::imatrix::collect(&m, &tokens, n_ctx, bos, max_chunks, &mut col, &mut cb)?;
            col.imatrix.datasets.push(dataset);
            col.imatrix.write(&out)?;
            Ok(n)
        })?;
        Ok(n)
    }
}

/// Streaming generation: each `next()` evaluates one step and returns the new text (possibly
/// empty while a multi-byte character is incomplete).
#[pyclass(name = "_Generator", module = "kquants._kquants")]
pub struct PyGenerator {
    session: Session,
    tok: Arc<Tokenizer>,
    sampler: Sampler,
    stream: Utf8Stream,
    pending: Vec<u32>,
    remaining: usize,
    stop: Vec<u32>,
    done: bool,
    generated: Vec<u32>,
    prompt_tokens: usize,
    prompt_seconds: f64,
    gen_seconds: f64,
}

#[pymethods]
impl PyGenerator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<String>> {
        if self.done {
            return Ok(None);
        }
        if self.remaining == 0 {
            self.done = true;
            let rest = self.stream.finish();
            return Ok(if rest.is_empty() { None } else { Some(rest) });
        }
        let pending = std::mem::take(&mut self.pending);
        let is_prompt = self.prompt_tokens == 0;
        let t0 = std::time::Instant::now();
        let session = &mut self.session;
        let sampler = &mut self.sampler;
        let next = py.detach(|| -> Result<u32, Error> {
            let logits = session.eval(&pending, false)?;
            sampler.sample(&logits)
        })?;
        let dt = t0.elapsed().as_secs_f64();
        if is_prompt {
            self.prompt_tokens = pending.len();
            self.prompt_seconds = dt;
        } else {
            self.gen_seconds += dt;
        }
        self.remaining -= 1;
        if self.stop.contains(&next) {
            self.done = true;
            let rest = self.stream.finish();
            return Ok(if rest.is_empty() { None } else { Some(rest) });
        }
        self.generated.push(next);
        self.pending = vec![next];
        let mut piece = self.stream.push(self.tok.token_bytes(next));
        if self.remaining == 0 {
            piece.push_str(&self.stream.finish());
        }
        Ok(Some(piece))
    }

    /// Token ids generated so far.
    #[getter]
    fn tokens(&self) -> Vec<u32> {
        self.generated.clone()
    }

    /// `(prompt_tokens, prompt_seconds, generated_tokens, generation_seconds)`; the first
    /// generated token's time is the prompt's (it comes from the prompt pass).
    #[getter]
    fn timings(&self) -> (usize, f64, usize, f64) {
        (self.prompt_tokens, self.prompt_seconds, self.generated.len().saturating_sub(1), self.gen_seconds)
    }
}

/// Read an importance matrix (GGUF or legacy `.dat`): `{weight name: mean squared activation}`.
#[pyfunction]
fn load_imatrix<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let im = py.detach(|| Imatrix::load(&path))?;
    let d = PyDict::new(py);
    let means: BTreeMap<String, Vec<f32>> = im.means();
    for (k, v) in means {
        d.set_item(k, PyArray1::from_vec(py, v))?;
    }
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyModel>()?;
    m.add_class::<PyGenerator>()?;
    m.add_function(wrap_pyfunction!(load_imatrix, m)?)?;
    Ok(())
}

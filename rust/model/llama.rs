//! The llama-family forward pass: weights stay in their quantized type inside the source buffer
//! (an mmap for GGUF files); activations are f32.
//!
//! Graph per block (llama.cpp `llm_build_llama` / `llm_build_qwen2`):
//! `h = x + Wo·attn(rope(Wq·n(x)), rope(Wk·n(x)), Wv·n(x))`, `x' = h + Wd·(silu(Wg·n(h)) ⊙ Wu·n(h))`,
//! with `n` = RMSNorm times a learned gain. The KV cache holds values rounded to f16 and the
//! attention products round their right-hand operand to f16, as llama.cpp's default f16 cache does.

use std::sync::Arc;

use rayon::prelude::*;

use super::config::{Config, RopeMode};
use super::{ModelSource, SharedSource, TensorEntry};
use crate::error::{Error, Result};
use crate::matmul::{self, QuantizedActivations};
use crate::quant::round_f16;
use crate::types::QuantType;

/// A weight matrix `[rows (outputs), cols (inputs)]` in the source buffer, plus an optional bias.
/// This is the one place that chooses how a matmul is computed.
#[derive(Clone, Debug)]
pub struct Linear {
    /// Tensor name (imatrix keys use it).
    pub name: String,
    /// Storage type.
    pub ty: QuantType,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    offset: usize,
    row_bytes: usize,
    bias: Option<Vec<f32>>,
}

/// Weight rows dequantized together by the fallback matmul.
const ROWS_PER_TASK: usize = 64;

impl Linear {
    fn new(name: &str, e: &TensorEntry, data_len: usize, bias: Option<Vec<f32>>) -> Result<Linear> {
        if e.dims.len() != 2 {
            return Err(Error::value(format!("{name} should be 2-D, has shape {:?}", e.dims)));
        }
        let (cols, rows) = (e.dims[0] as usize, e.dims[1] as usize);
        let row_bytes = e
            .ty
            .row_bytes(cols)
            .ok_or_else(|| Error::value(format!("{name}: {cols} columns are not whole {} blocks", e.ty)))?;
        let end = row_bytes.checked_mul(rows).and_then(|n| n.checked_add(e.offset));
        if end.is_none_or(|end| end > data_len) || row_bytes * rows != e.len {
            return Err(Error::value(format!("{name}: data range does not match shape {:?} of {}", e.dims, e.ty)));
        }
        crate::quant::codec(e.ty)?;
        if let Some(b) = &bias {
            if b.len() != rows {
                return Err(Error::value(format!("bias of {name} has {} values, expected {rows}", b.len())));
            }
        }
        Ok(Linear { name: name.to_string(), ty: e.ty, rows, cols, offset: e.offset, row_bytes, bias })
    }

    fn bytes<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        // In range: checked against the buffer length in `Linear::new`.
        &data[self.offset..self.offset + self.rows * self.row_bytes]
    }

    /// Dequantize row `r` (an embedding lookup).
    fn row(&self, data: &[u8], r: usize, out: &mut [f32]) -> Result<()> {
        if r >= self.rows {
            return Err(Error::value(format!("token id {r} is outside the vocabulary of {} tokens", self.rows)));
        }
        let b = &self.bytes(data)[r * self.row_bytes..(r + 1) * self.row_bytes];
        dequantize_row(self.ty, b, out);
        Ok(())
    }

    /// Whether this weight runs through the quantized SIMD matmul (activations quantized to
    /// the weight type's dot type, as ggml does) rather than the float fallback.
    pub fn is_quantized_path(&self) -> bool {
        self.ty.is_quantized() && crate::simd::kernels().dot_fn(self.ty).is_ok()
    }

    /// `out[t] = W · x[t] (+ b)` for `n` tokens: `x` is `n × cols`, `out` is `n × rows`.
    /// `acts`, when given, is `x` already quantized for this weight type (shared between
    /// weights reading the same input). Must run inside the model's thread pool.
    pub fn forward(&self, data: &[u8], x: &[f32], n: usize, out: &mut [f32], acts: Option<&QuantizedActivations>) -> Result<()> {
        debug_assert_eq!(x.len(), n * self.cols);
        debug_assert_eq!(out.len(), n * self.rows);
        let w = self.bytes(data);
        if self.is_quantized_path() {
            match acts {
                Some(a) => matmul::matmul_quantized(self.ty, w, self.rows, a, out, None)?,
                None => {
                    let a = matmul::quantize_activations(self.ty, x, self.cols, n)?;
                    matmul::matmul_quantized(self.ty, w, self.rows, &a, out, None)?
                }
            }
        } else {
            self.forward_float(w, x, n, out);
        }
        if let Some(b) = &self.bias {
            for o in out.chunks_exact_mut(self.rows) {
                for (v, bv) in o.iter_mut().zip(b) {
                    *v += bv;
                }
            }
        }
        Ok(())
    }

    /// Float path (F32/F16/BF16 weights, or types without a kernel): dequantize a block of
    /// weight rows to f32 and multiply it with all tokens at once (`matrixmultiply`'s SGEMM,
    /// which picks AVX/FMA kernels at run time).
    fn forward_float(&self, w: &[u8], x: &[f32], n: usize, out: &mut [f32]) {
        let (rows, cols, rb) = (self.rows, self.cols, self.row_bytes);
        let blocks: Vec<Vec<f32>> = w
            .par_chunks(rb * ROWS_PER_TASK)
            .map(|wb| {
                let nr = wb.len() / rb;
                let mut tmp = vec![0f32; nr * cols];
                for (src, dst) in wb.chunks_exact(rb).zip(tmp.chunks_exact_mut(cols)) {
                    dequantize_row(self.ty, src, dst);
                }
                let mut res = vec![0f32; n * nr];
                {
                    // One SGEMM for any number of tokens, so that each output's summation order
                    // does not depend on the batch size (batched and token-by-token runs agree).
                    // res (n x nr) = x (n x cols) . tmp^T (cols x nr)
                    // SAFETY: every pointer addresses a live buffer of exactly the extent the
                    // strides describe: x is n*cols, tmp is nr*cols (read transposed through
                    // its strides), res is n*nr; none of them alias.
                    unsafe {
                        matrixmultiply::sgemm(
                            n, cols, nr,
                            1.0,
                            x.as_ptr(), cols as isize, 1,
                            tmp.as_ptr(), 1, cols as isize,
                            0.0,
                            res.as_mut_ptr(), nr as isize, 1,
                        );
                    }
                }
                res
            })
            .collect();
        for (bi, res) in blocks.iter().enumerate() {
            let r0 = bi * ROWS_PER_TASK;
            let nr = res.len() / n.max(1);
            for t in 0..n {
                out[t * rows + r0..t * rows + r0 + nr].copy_from_slice(&res[t * nr..(t + 1) * nr]);
            }
        }
    }
}

fn dequantize_row(ty: QuantType, src: &[u8], dst: &mut [f32]) {
    // Cannot fail: the codec exists (checked in `Linear::new`) and the lengths match one row.
    let _ = crate::quant::dequantize_into(ty, src, dst, None);
}

/// f32 dot product with 8 independent accumulators (vectorizes).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Vec<f32>,
    w_gate: Linear,
    w_up: Linear,
    w_down: Linear,
}

/// A loaded model: configuration plus weights referring into the source buffer.
pub struct Model {
    /// Hyperparameters.
    pub config: Config,
    source: SharedSource,
    embd: Linear,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Linear,
    pool: rayon::ThreadPool,
    threads: usize,
}

fn f32_vector(src: &dyn ModelSource, name: &str, len: usize) -> Result<Vec<f32>> {
    let e = src.tensor(name).ok_or_else(|| Error::value(format!("model has no tensor {name}")))?;
    let n: u64 = e.dims.iter().product();
    if n != len as u64 {
        return Err(Error::value(format!("{name} has shape {:?}, expected {len} values", e.dims)));
    }
    let bytes = src
        .data()
        .get(e.offset..e.offset.saturating_add(e.len))
        .ok_or_else(|| Error::value(format!("{name}: data outside the file")))?;
    let v = crate::quant::dequantize(e.ty, bytes, Some(1))?;
    if v.len() != len {
        return Err(Error::value(format!("{name}: {} values decoded, expected {len}", v.len())));
    }
    Ok(v)
}

/// Observer of matmul inputs (the importance-matrix collector implements it).
pub trait MatmulObserver: Send {
    /// Called with the `n × lin.cols` input of `lin` before each product.
    fn observe(&mut self, lin: &Linear, x: &[f32], n: usize);
}

impl Model {
    /// Build the model from a source, running on `threads` workers (`None`: all cores).
    pub fn from_source(source: SharedSource, threads: Option<usize>) -> Result<Model> {
        let src: &dyn ModelSource = source.as_ref();
        let config = Config::from_source(src)?;
        let data_len = src.data().len();
        let lin = |name: &str, rows: usize, cols: usize, bias: bool| -> Result<Linear> {
            let e = src.tensor(name).ok_or_else(|| Error::value(format!("model has no tensor {name}")))?;
            let b = if bias {
                let bname = name.replace(".weight", ".bias");
                match src.tensor(&bname) {
                    Some(_) => Some(f32_vector(src, &bname, rows)?),
                    None => None,
                }
            } else {
                None
            };
            let l = Linear::new(name, &e, data_len, b)?;
            if l.rows != rows || l.cols != cols {
                return Err(Error::value(format!(
                    "{name} has shape {:?}, expected [{cols}, {rows}]",
                    e.dims
                )));
            }
            Ok(l)
        };
        let c = &config;
        let (q_dim, kv_dim) = (c.n_head * c.head_dim, c.n_head_kv * c.head_dim);
        let embd = lin("token_embd.weight", c.n_vocab, c.n_embd, false)?;
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let p = format!("blk.{i}");
            layers.push(Layer {
                attn_norm: f32_vector(src, &format!("{p}.attn_norm.weight"), c.n_embd)?,
                wq: lin(&format!("{p}.attn_q.weight"), q_dim, c.n_embd, true)?,
                wk: lin(&format!("{p}.attn_k.weight"), kv_dim, c.n_embd, true)?,
                wv: lin(&format!("{p}.attn_v.weight"), kv_dim, c.n_embd, true)?,
                wo: lin(&format!("{p}.attn_output.weight"), c.n_embd, q_dim, true)?,
                ffn_norm: f32_vector(src, &format!("{p}.ffn_norm.weight"), c.n_embd)?,
                w_gate: lin(&format!("{p}.ffn_gate.weight"), c.n_ff, c.n_embd, false)?,
                w_up: lin(&format!("{p}.ffn_up.weight"), c.n_ff, c.n_embd, false)?,
                w_down: lin(&format!("{p}.ffn_down.weight"), c.n_embd, c.n_ff, false)?,
            });
        }
        let output_norm = f32_vector(src, "output_norm.weight", c.n_embd)?;
        let output = if src.tensor("output.weight").is_some() {
            lin("output.weight", c.n_vocab, c.n_embd, false)?
        } else {
            embd.clone() // tied embeddings
        };
        let threads = match threads {
            Some(0) => return Err(Error::value("threads must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::value(format!("cannot start {threads} threads: {e}")))?;
        Ok(Model { config, source, embd, layers, output_norm, output, pool, threads })
    }

    /// The source the weights live in.
    pub fn source(&self) -> &SharedSource {
        &self.source
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Every matmul of the model, in graph order (the output projection last).
    pub fn linears(&self) -> Vec<&Linear> {
        let mut v = Vec::new();
        for l in &self.layers {
            v.extend([&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]);
        }
        v.push(&self.output);
        v
    }

    /// A fresh session (empty KV cache).
    pub fn session(self: &Arc<Self>) -> Session {
        Session { model: Arc::clone(self), pos: 0, k: vec![Vec::new(); self.config.n_layer], v: vec![Vec::new(); self.config.n_layer] }
    }

    /// Run `tokens` through the model after `session`'s cached positions. Returns logits for
    /// every token (`all`) or only the last one, `n × n_vocab` row-major.
    pub fn forward(
        &self,
        session: &mut Session,
        tokens: &[u32],
        all: bool,
        observer: Option<&mut dyn MatmulObserver>,
    ) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        if !std::ptr::eq(Arc::as_ptr(&session.model), self) {
            return Err(Error::value("session belongs to another model"));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.config.n_vocab) {
            return Err(Error::value(format!("token id {t} is outside the vocabulary of {} tokens", self.config.n_vocab)));
        }
        self.pool.install(|| self.forward_inner(session, tokens, all, observer))
    }

    fn forward_inner(
        &self,
        s: &mut Session,
        tokens: &[u32],
        all: bool,
        mut observer: Option<&mut dyn MatmulObserver>,
    ) -> Result<Vec<f32>> {
        let c = &self.config;
        let data = self.source.data();
        let n = tokens.len();
        let (d, hd) = (c.n_embd, c.head_dim);
        let (q_dim, kv_dim) = (c.n_head * hd, c.n_head_kv * hd);
        let mut x = vec![0f32; n * d];
        for (t, row) in tokens.iter().zip(x.chunks_exact_mut(d)) {
            self.embd.row(data, *t as usize, row)?;
        }
        let mut h = vec![0f32; n * d];
        let mut q = vec![0f32; n * q_dim];
        let mut k = vec![0f32; n * kv_dim];
        let mut v = vec![0f32; n * kv_dim];
        let mut att = vec![0f32; n * q_dim];
        let mut o = vec![0f32; n * d];
        let mut g = vec![0f32; n * c.n_ff];
        let mut u = vec![0f32; n * c.n_ff];
        let pos0 = s.pos;
        let rope = RopeTable::new(c, pos0, n);
        // Weights sharing one input share its quantized activations (q/k/v, gate/up).
        macro_rules! mm {
            ($inp:expr; $(($lin:expr, $out:expr)),+) => {{
                let mut shared: Option<QuantizedActivations> = None;
                $(
                    if let Some(obs) = observer.as_deref_mut() {
                        obs.observe($lin, $inp, n);
                    }
                    let lin: &Linear = $lin;
                    if lin.is_quantized_path() {
                        let want = lin.ty.dot_type();
                        if shared.as_ref().map(|a| Some(a.ty())) != Some(want) {
                            shared = Some(matmul::quantize_activations(lin.ty, $inp, lin.cols, n)?);
                        }
                        lin.forward(data, $inp, n, $out, shared.as_ref())?;
                    } else {
                        lin.forward(data, $inp, n, $out, None)?;
                    }
                )+
            }};
        }
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, c.rms_eps, &mut h);
            mm!(&h; (&layer.wq, &mut q), (&layer.wk, &mut k), (&layer.wv, &mut v));
            rope.apply(&mut q, c.n_head, hd, c.rope_mode);
            rope.apply(&mut k, c.n_head_kv, hd, c.rope_mode);
            // The f16 cache (and f16 activations into the KQ product, as ggml converts them).
            s.k[li].extend(k.iter().map(|&z| round_f16(z)));
            s.v[li].extend(v.iter().map(|&z| round_f16(z)));
            for z in q.iter_mut() {
                *z = round_f16(*z);
            }
            attention(c, &q, &s.k[li], &s.v[li], pos0, &mut att);
            mm!(&att; (&layer.wo, &mut o));
            for (a, b) in x.iter_mut().zip(&o) {
                *a += b;
            }
            rms_norm(&x, &layer.ffn_norm, c.rms_eps, &mut h);
            mm!(&h; (&layer.w_gate, &mut g), (&layer.w_up, &mut u));
            for (a, b) in g.iter_mut().zip(&u) {
                *a = silu(*a) * b;
            }
            mm!(&g; (&layer.w_down, &mut o));
            for (a, b) in x.iter_mut().zip(&o) {
                *a += b;
            }
        }
        s.pos += n;
        let (rows, m) = if all { (&x[..], n) } else { (&x[(n - 1) * d..], 1) };
        let mut hn = vec![0f32; m * d];
        rms_norm(rows, &self.output_norm, c.rms_eps, &mut hn);
        let mut logits = vec![0f32; m * c.n_vocab];
        if let Some(obs) = observer {
            obs.observe(&self.output, &hn, m);
        }
        self.output.forward(data, &hn, m, &mut logits, None)?;
        Ok(logits)
    }
}

/// State of one sequence: the KV cache and the number of positions it holds.
pub struct Session {
    model: Arc<Model>,
    pos: usize,
    /// Per layer: `pos × kv_dim` keys (f16-rounded, RoPE applied).
    k: Vec<Vec<f32>>,
    /// Per layer: `pos × kv_dim` values (f16-rounded).
    v: Vec<Vec<f32>>,
}

impl Session {
    /// Positions processed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Forget everything (position 0).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.k.iter_mut().for_each(Vec::clear);
        self.v.iter_mut().for_each(Vec::clear);
    }

    /// Run `tokens` and return the logits (all rows, or the last row).
    pub fn eval(&mut self, tokens: &[u32], all: bool) -> Result<Vec<f32>> {
        let m = Arc::clone(&self.model);
        m.forward(self, tokens, all, None)
    }

    /// As [`Session::eval`], reporting every matmul input to `observer`.
    pub fn eval_observed(&mut self, tokens: &[u32], all: bool, observer: &mut dyn MatmulObserver) -> Result<Vec<f32>> {
        let m = Arc::clone(&self.model);
        m.forward(self, tokens, all, Some(observer))
    }
}

/// `out = x / sqrt(mean(x²) + eps) * w` per row (ggml `rms_norm` sums in double).
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let sum: f64 = xr.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let mean = (sum / d as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}

#[inline]
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// cos/sin per (token, pair) for the positions of one batch.
struct RopeTable {
    n_rot: usize,
    /// `n × n_rot/2` pairs of (cos, sin).
    cs: Vec<(f32, f32)>,
}

impl RopeTable {
    fn new(c: &Config, pos0: usize, n: usize) -> RopeTable {
        let half = c.n_rot / 2;
        // ggml: theta_scale = base^(-2/n_dims), theta_i = pos * theta_scale^i, built by repeated products.
        let theta_scale = c.rope_base.powf(-2.0 / c.n_rot as f32);
        let mut cs = Vec::with_capacity(n * half);
        for t in 0..n {
            let mut theta = (pos0 + t) as f32;
            for _ in 0..half {
                cs.push((theta.cos(), theta.sin()));
                theta *= theta_scale;
            }
        }
        RopeTable { n_rot: c.n_rot, cs }
    }

    /// Rotate `x` (`n × heads × hd`) in place.
    fn apply(&self, x: &mut [f32], heads: usize, hd: usize, mode: RopeMode) {
        let half = self.n_rot / 2;
        for (t, row) in x.chunks_exact_mut(heads * hd).enumerate() {
            let cs = &self.cs[t * half..(t + 1) * half];
            for head in row.chunks_exact_mut(hd) {
                for (i, &(c, s)) in cs.iter().enumerate() {
                    let (a, b) = match mode {
                        RopeMode::Normal => (2 * i, 2 * i + 1),
                        RopeMode::Neox => (i, i + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * c - x1 * s;
                    head[b] = x0 * s + x1 * c;
                }
            }
        }
    }
}

/// Causal GQA attention for `n` new tokens at positions `pos0..pos0+n`; `kc`/`vc` hold all
/// `pos0 + n` cached positions (`n = out.len() / (n_head·hd)`). Writes `n × n_head × hd` into `out`.
fn attention(c: &Config, q: &[f32], kc: &[f32], vc: &[f32], pos0: usize, out: &mut [f32]) {
    let hd = c.head_dim;
    let (q_dim, kv_dim) = (c.n_head * hd, c.n_head_kv * hd);
    let group = c.n_head / c.n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    out.par_chunks_mut(hd).enumerate().for_each(|(idx, o)| {
        let (t, h) = (idx / c.n_head, idx % c.n_head);
        let kvh = h / group;
        let qh = &q[t * q_dim + h * hd..t * q_dim + (h + 1) * hd];
        let len = pos0 + t + 1;
        let mut sc: Vec<f32> = (0..len).map(|p| dot(qh, &kc[p * kv_dim + kvh * hd..p * kv_dim + (kvh + 1) * hd]) * scale).collect();
        let max = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f64;
        for s in sc.iter_mut() {
            *s = (*s - max).exp();
            sum += *s as f64;
        }
        let inv = (1.0 / sum) as f32;
        o.fill(0.0);
        for (p, s) in sc.iter().enumerate() {
            let w = round_f16(s * inv);
            let vr = &vc[p * kv_dim + kvh * hd..p * kv_dim + (kvh + 1) * hd];
            for (a, b) in o.iter_mut().zip(vr) {
                *a += w * b;
            }
        }
    });
}

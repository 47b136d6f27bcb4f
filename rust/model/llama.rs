//! The llama-family forward pass: weights stay in their quantized type inside the source buffer
//! (an mmap for GGUF files); activations are f32.
//!
//! Graph per block (llama.cpp `llm_build_llama` / `llm_build_qwen2`):
//! `h = x + Wo·attn(rope(Wq·n(x)), rope(Wk·n(x)), Wv·n(x))`, `x' = h + Wd·(silu(Wg·n(h)) ⊙ Wu·n(h))`,
//! with `n` = RMSNorm times a learned gain. The KV cache holds values rounded to f16 and the
//! attention products round their right-hand operand to f16, as llama.cpp's default f16 cache does.

use std::sync::Arc;

use std::ops::Range;

use super::config::{Config, RopeMode};
use super::{ModelSource, SharedSource, TensorEntry};
use crate::error::{Error, Result};
use crate::matmul;
use crate::parallel::{SharedMut, Team, Worker};
use crate::simd::{ActCall, RowDot};
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
    /// The weight interleaved for this machine's kernels (see [`matmul::PackedWeight`]), made at
    /// load time for the types that have interleaved kernels; products are bit-identical.
    packed: Option<std::sync::Arc<matmul::PackedWeight>>,
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
        Ok(Linear { name: name.to_string(), ty: e.ty, rows, cols, offset: e.offset, row_bytes, bias, packed: None })
    }

    /// Keep an interleaved copy of the weight when this machine's kernels read one
    /// ([`crate::simd::Kernels::has_interleaved`]), as ggml repacks weights at load time.
    fn pack(&mut self, data: &[u8]) -> Result<()> {
        if crate::simd::kernels().has_interleaved(self.ty) {
            let p = matmul::PackedWeight::new(self.ty, self.bytes(data), self.rows, self.cols)?;
            if p.is_interleaved() {
                self.packed = Some(std::sync::Arc::new(p));
            }
        }
        Ok(())
    }

    /// Whether the matmuls read an interleaved copy of the weight (see [`Linear::pack`]).
    pub fn is_interleaved(&self) -> bool {
        self.packed.is_some()
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

    /// How this weight is multiplied with the kernels in use.
    fn plan(&self) -> Result<Plan> {
        if !self.is_quantized_path() {
            return match crate::simd::fgemm::supports(self.ty) {
                true => Ok(Plan::Float),
                false => Err(Error::Unsupported { ty: self.ty, op: "matmul" }),
            };
        }
        let kern = crate::simd::kernels();
        let act_ty = self.ty.dot_type().ok_or(Error::Unsupported { ty: self.ty, op: "matmul" })?;
        let dot = match &self.packed {
            Some(_) => kern.row_dot_interleaved(self.ty, self.cols)?.ok_or(Error::Unsupported { ty: self.ty, op: "interleaved matmul" })?,
            None => kern.row_dot(self.ty, self.cols)?,
        };
        let act = kern.act_fn(act_ty)?;
        let act_row = act_ty
            .row_bytes(self.cols)
            .ok_or_else(|| Error::value(format!("{}: {} columns are not whole {act_ty} blocks", self.name, self.cols)))?;
        Ok(Plan::Quant { dot, act_ty, act, act_row })
    }

    /// Weight rows per work chunk of a step.
    fn chunk_rows(&self, plan: &Plan, threads: usize) -> usize {
        match plan {
            Plan::Quant { .. } => matmul::rows_per_task(self.rows, self.row_bytes, threads),
            Plan::Float => ROWS_PER_TASK,
        }
    }

    /// Outputs `rs` (weight rows) of `W · x[t] (+ b)` for all `n` tokens into `out` (`n × rows`).
    /// `x` is the float input (`n × cols`), `acts` the same input quantized for this weight's
    /// plan (`n` rows of the plan's activation type; unused by the float path).
    ///
    /// # Safety
    /// No other worker reads or writes the columns `rs` of `out` until the next barrier.
    #[allow(clippy::too_many_arguments)] // the step's buffers, each read or written here
    unsafe fn rows_into(&self, data: &[u8], plan: &Plan, rs: Range<usize>, x: &[f32], acts: &[u8], n: usize, out: &SharedMut<f32>) {
        let nr = rs.len();
        let w = match (&self.packed, plan) {
            (Some(p), Plan::Quant { dot, .. }) if dot.is_interleaved() => p.interleaved_bytes(),
            _ => self.bytes(data),
        };
        match plan {
            Plan::Quant { dot, .. } => {
                if n == 1 {
                    // SAFETY: columns `rs` of the single output row are this chunk's alone.
                    let o = unsafe { out.part(rs.clone()) };
                    matmul::gemm_tile(*dot, w, rs.clone(), acts, 1, o);
                    if let Some(b) = &self.bias {
                        for (v, bv) in o.iter_mut().zip(&b[rs]) {
                            *v += bv;
                        }
                    }
                } else {
                    let mut tile = vec![0f32; nr * n];
                    matmul::gemm_tile(*dot, w, rs.clone(), acts, n, &mut tile);
                    for t in 0..n {
                        // SAFETY: columns `rs` of every output row belong to this chunk.
                        let o = unsafe { out.part(t * self.rows + rs.start..t * self.rows + rs.end) };
                        for (i, v) in o.iter_mut().enumerate() {
                            *v = tile[i * n + t];
                        }
                        if let Some(b) = &self.bias {
                            for (v, bv) in o.iter_mut().zip(&b[rs.clone()]) {
                                *v += bv;
                            }
                        }
                    }
                }
            }
            Plan::Float => {
                let (cols, rb) = (self.cols, self.row_bytes);
                let mut res = vec![0f32; n * nr];
                // Each output is computed the same way whatever the batch (see simd::fgemm).
                // Cannot fail: the type is a float type (the plan) and the lengths are this
                // chunk's rows and the step's input.
                let _ = crate::simd::fgemm::float_gemm(self.ty, cols, &w[rs.start * rb..rs.end * rb], nr, x, n, &mut res, nr);
                for t in 0..n {
                    // SAFETY: columns `rs` of every output row belong to this chunk.
                    let o = unsafe { out.part(t * self.rows + rs.start..t * self.rows + rs.end) };
                    o.copy_from_slice(&res[t * nr..(t + 1) * nr]);
                    if let Some(b) = &self.bias {
                        for (v, bv) in o.iter_mut().zip(&b[rs.clone()]) {
                            *v += bv;
                        }
                    }
                }
            }
        }
    }
}

/// How one weight is multiplied, resolved once per forward pass.
#[derive(Clone, Copy)]
enum Plan {
    /// Activations quantized to `act_ty` (`act_row` bytes per token) by `act`, then one kernel
    /// dot product per output.
    Quant { dot: RowDot, act_ty: QuantType, act: ActCall, act_row: usize },
    /// Float weights (F32/F16/BF16) times f32 activations ([`crate::simd::fgemm`]).
    Float,
}

/// One matmul of a step: weight, plan, float input, quantized-input buffer, output.
struct Job<'a> {
    lin: &'a Linear,
    plan: Plan,
    x: &'a SharedMut<'a, f32>,
    out: &'a SharedMut<'a, f32>,
}

/// Quantized copies of one float input, one per activation type its weights need.
struct ActBufs<'a> {
    bufs: Vec<(QuantType, usize, SharedMut<'a, u8>)>,
}

impl ActBufs<'_> {
    /// The buffer of `ty` for inputs of `cols` values.
    fn get(&self, ty: QuantType, cols: usize) -> Option<&SharedMut<'_, u8>> {
        self.bufs.iter().find(|(t, c, _)| *t == ty && *c == cols).map(|(_, _, b)| b)
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
    /// `rope_freqs.weight`: divisors of the RoPE frequencies, one per rotated pair.
    rope_freqs: Option<Vec<f32>>,
    team: Team,
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
    /// How many weight matrices are multiplied from interleaved copies (see
    /// [`Model::from_source_with`]).
    pub fn interleaved_weights(&self) -> usize {
        let l = self.layers.iter().flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]);
        l.chain([&self.output]).filter(|w| w.is_interleaved()).count()
    }

    /// Build the model from a source, running on `threads` workers (`None`: all cores).
    /// Weights whose type has interleaved kernels on this machine are copied interleaved (see
    /// [`Model::from_source_with`]).
    pub fn from_source(source: SharedSource, threads: Option<usize>) -> Result<Model> {
        Self::from_source_with(source, threads, true)
    }

    /// [`Model::from_source`]; `repack = false` multiplies every weight from the source buffer
    /// instead of keeping interleaved copies of the Q4_0 / IQ4_XS / Q4_K / Q5_K weights (less memory,
    /// slower token generation on AVX-512, the same results bit for bit).
    pub fn from_source_with(source: SharedSource, threads: Option<usize>, repack: bool) -> Result<Model> {
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
            let mut l = Linear::new(name, &e, data_len, b)?;
            if repack {
                l.pack(src.data())?;
            }
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
        // Per-dimension RoPE frequency divisors (Llama 3.1-style scaling, written by converters).
        let rope_freqs = match src.tensor("rope_freqs.weight") {
            Some(_) => {
                let f = f32_vector(src, "rope_freqs.weight", c.n_rot / 2)?;
                if let Some(bad) = f.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                    return Err(Error::value(format!("rope_freqs.weight holds {bad}, not a positive number")));
                }
                Some(f)
            }
            None => None,
        };
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
        let team = Team::new(threads).map_err(|e| Error::value(format!("cannot start {threads} threads: {e}")))?;
        Ok(Model { config, source, embd, layers, output_norm, output, rope_freqs, team })
    }

    /// The source the weights live in.
    pub fn source(&self) -> &SharedSource {
        &self.source
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.team.threads()
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
        self.forward_inner(session, tokens, all, observer)
    }

    fn forward_inner(
        &self,
        s: &mut Session,
        tokens: &[u32],
        all: bool,
        observer: Option<&mut dyn MatmulObserver>,
    ) -> Result<Vec<f32>> {
        let c = &self.config;
        let data = self.source.data();
        let n = tokens.len();
        let (d, hd) = (c.n_embd, c.head_dim);
        let (q_dim, kv_dim) = (c.n_head * hd, c.n_head_kv * hd);
        let pos0 = s.pos;
        let rope = RopeTable::new(c, self.rope_freqs.as_deref(), pos0, n);

        // Plans (and every error) before the workers start.
        let plans: Vec<[Plan; 7]> = self
            .layers
            .iter()
            .map(|l| Ok([l.wq.plan()?, l.wk.plan()?, l.wv.plan()?, l.wo.plan()?, l.w_gate.plan()?, l.w_up.plan()?, l.w_down.plan()?]))
            .collect::<Result<_>>()?;
        let out_plan = self.output.plan()?;
        // One quantized-activation buffer per (type, width), reused by every input of that width.
        let mut act_shapes: Vec<(QuantType, usize, usize)> = Vec::new();
        let all_plans = plans.iter().flat_map(|p| p.iter().zip([d, d, d, q_dim, d, d, c.n_ff])).chain([(&out_plan, d)]);
        for (p, cols) in all_plans {
            if let Plan::Quant { act_ty, act_row, .. } = p {
                if !act_shapes.iter().any(|(t, k, _)| t == act_ty && *k == cols) {
                    act_shapes.push((*act_ty, cols, *act_row));
                }
            }
        }
        let mut act_store: Vec<Vec<u8>> = act_shapes.iter().map(|&(_, _, rb)| vec![0u8; n * rb]).collect();

        let (rows_out, m) = if all { (0..n, n) } else { (n - 1..n, 1) };
        let mut x = vec![0f32; n * d];
        let mut h = vec![0f32; n * d];
        let mut q = vec![0f32; n * q_dim];
        let mut k = vec![0f32; n * kv_dim];
        let mut v = vec![0f32; n * kv_dim];
        let mut att = vec![0f32; n * q_dim];
        let mut o = vec![0f32; n * d];
        let mut g = vec![0f32; n * c.n_ff];
        let mut u = vec![0f32; n * c.n_ff];
        let mut hn = vec![0f32; m * d];
        let mut logits = vec![0f32; m * c.n_vocab];
        let acts = ActBufs {
            bufs: act_shapes.iter().zip(act_store.iter_mut()).map(|(&(t, k, _), b)| (t, k, SharedMut::new(b))).collect(),
        };
        let (sx, sh, sq, sk, sv) = (SharedMut::new(&mut x), SharedMut::new(&mut h), SharedMut::new(&mut q), SharedMut::new(&mut k), SharedMut::new(&mut v));
        let (satt, so, sg, su) = (SharedMut::new(&mut att), SharedMut::new(&mut o), SharedMut::new(&mut g), SharedMut::new(&mut u));
        let (shn, slog) = (SharedMut::new(&mut hn), SharedMut::new(&mut logits));
        let (kcache, vcache) = (SharedMut::new(&mut s.k[..]), SharedMut::new(&mut s.v[..]));
        let observing = observer.is_some();
        let observer = std::sync::Mutex::new(observer);
        let observe = |w: &Worker, lins: &[&Linear], inp: &SharedMut<f32>, rows: usize| {
            if observing {
                w.single(|| {
                    let mut guard = observer.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(obs) = guard.as_deref_mut() {
                        // SAFETY: read-only step (nothing else runs until the barrier of `single`).
                        let x = unsafe { inp.all() };
                        for lin in lins {
                            obs.observe(lin, x, rows);
                        }
                    }
                });
            }
        };
        // Quantize rows `ts` of an input `cols` wide, given as `inp` (those rows only), for
        // every plan in `ps`.
        let quantize_rows = |inp: &[f32], cols: usize, ps: &[&Plan], ts: Range<usize>| {
            for (i, p) in ps.iter().enumerate() {
                if let Plan::Quant { act_ty, act, act_row, .. } = p {
                    // Several weights of one input share a type: quantize it once.
                    if ps[..i].iter().any(|q| matches!(q, Plan::Quant { act_ty: t, .. } if t == act_ty)) {
                        continue;
                    }
                    if let Some(buf) = acts.get(*act_ty, cols) {
                        // SAFETY: rows `ts` of this buffer are written by this chunk only.
                        let dst = unsafe { buf.part(ts.start * act_row..ts.end * act_row) };
                        act.call(*act_ty, inp, dst);
                    }
                }
            }
        };

        self.team.run(|w| {
            // Embeddings (token ids were checked by `forward`).
            w.chunks(n, 1, |ts| {
                for t in ts {
                    // SAFETY: row t of x belongs to this chunk.
                    let row = unsafe { sx.part(t * d..(t + 1) * d) };
                    let _ = self.embd.row(data, tokens[t] as usize, row);
                }
            });
            for (li, (layer, p)) in self.layers.iter().zip(&plans).enumerate() {
                // Residual of the previous block, attention norm, quantized input of q/k/v.
                w.chunks(n, 1, |ts| {
                    let rows = ts.start * d..ts.end * d;
                    // SAFETY: these rows of x and h belong to this chunk; o is only read.
                    let (xr, hr, or) = unsafe { (sx.part(rows.clone()), sh.part(rows.clone()), &so.all()[rows]) };
                    if li > 0 {
                        xr.iter_mut().zip(or).for_each(|(a, b)| *a += b);
                    }
                    rms_norm(xr, &layer.attn_norm, c.rms_eps, hr);
                    quantize_rows(hr, d, &[&p[0], &p[1], &p[2]], ts);
                });
                observe(w, &[&layer.wq, &layer.wk, &layer.wv], &sh, n);
                self.matmul_step(w, data, n, &acts, &[
                    Job { lin: &layer.wq, plan: p[0], x: &sh, out: &sq },
                    Job { lin: &layer.wk, plan: p[1], x: &sh, out: &sk },
                    Job { lin: &layer.wv, plan: p[2], x: &sh, out: &sv },
                ]);
                w.single(|| {
                    // SAFETY: only this worker runs in a `single` step.
                    let (q, k, v) = unsafe { (sq.part(0..sq.len()), sk.part(0..sk.len()), sv.all()) };
                    rope.apply(q, c.n_head, hd, c.rope_mode);
                    rope.apply(k, c.n_head_kv, hd, c.rope_mode);
                    // The f16 cache (and f16 activations into the KQ product, as ggml converts them).
                    let (kc, vc) = unsafe { (&mut kcache.part(li..li + 1)[0], &mut vcache.part(li..li + 1)[0]) };
                    kc.extend(k.iter().map(|&z| round_f16(z)));
                    vc.extend(v.iter().map(|&z| round_f16(z)));
                    for z in q.iter_mut() {
                        *z = round_f16(*z);
                    }
                });
                // SAFETY: q and the caches are only read until the next barrier.
                let (qa, kc, vc) = unsafe { (sq.all(), &kcache.all()[li], &vcache.all()[li]) };
                w.chunks(n * c.n_head, 1, |items| {
                    for idx in items {
                        // SAFETY: head `idx` of att belongs to this chunk.
                        let out = unsafe { satt.part(idx * hd..(idx + 1) * hd) };
                        attention_head(c, qa, kc, vc, pos0, idx / c.n_head, idx % c.n_head, out);
                    }
                });
                // SAFETY: these rows of att are only read in this step.
                w.chunks(n, 1, |ts| quantize_rows(unsafe { &satt.all()[ts.start * q_dim..ts.end * q_dim] }, q_dim, &[&p[3]], ts));
                observe(w, &[&layer.wo], &satt, n);
                self.matmul_step(w, data, n, &acts, &[Job { lin: &layer.wo, plan: p[3], x: &satt, out: &so }]);
                // Residual, FFN norm, quantized input of gate/up.
                w.chunks(n, 1, |ts| {
                    let rows = ts.start * d..ts.end * d;
                    // SAFETY: these rows of x and h belong to this chunk; o is only read.
                    let (xr, hr, or) = unsafe { (sx.part(rows.clone()), sh.part(rows.clone()), &so.all()[rows]) };
                    xr.iter_mut().zip(or).for_each(|(a, b)| *a += b);
                    rms_norm(xr, &layer.ffn_norm, c.rms_eps, hr);
                    quantize_rows(hr, d, &[&p[4], &p[5]], ts);
                });
                observe(w, &[&layer.w_gate, &layer.w_up], &sh, n);
                self.matmul_step(w, data, n, &acts, &[
                    Job { lin: &layer.w_gate, plan: p[4], x: &sh, out: &sg },
                    Job { lin: &layer.w_up, plan: p[5], x: &sh, out: &su },
                ]);
                w.chunks(n, 1, |ts| {
                    let rows = ts.start * c.n_ff..ts.end * c.n_ff;
                    // SAFETY: these rows of g belong to this chunk; u is only read.
                    let (gr, ur) = unsafe { (sg.part(rows.clone()), &su.all()[rows]) };
                    gr.iter_mut().zip(ur).for_each(|(a, b)| *a = silu(*a) * b);
                    quantize_rows(gr, c.n_ff, &[&p[6]], ts);
                });
                observe(w, &[&layer.w_down], &sg, n);
                self.matmul_step(w, data, n, &acts, &[Job { lin: &layer.w_down, plan: p[6], x: &sg, out: &so }]);
            }
            // Last residual, output norm of the rows whose logits are wanted, output projection.
            let r0 = rows_out.start;
            w.chunks(m, 1, |is| {
                let (xs, hs) = ((r0 + is.start) * d..(r0 + is.end) * d, is.start * d..is.end * d);
                // SAFETY: these rows of x and hn belong to this chunk; o is only read.
                let (xr, hr, or) = unsafe { (sx.part(xs.clone()), shn.part(hs), &so.all()[xs]) };
                xr.iter_mut().zip(or).for_each(|(a, b)| *a += b);
                rms_norm(xr, &self.output_norm, c.rms_eps, hr);
                quantize_rows(hr, d, &[&out_plan], is);
            });
            observe(w, &[&self.output], &shn, m);
            self.matmul_step(w, data, m, &acts, &[Job { lin: &self.output, plan: out_plan, x: &shn, out: &slog }]);
        });
        s.pos += n;
        drop(acts);
        Ok(logits)
    }

    /// One step of matmuls that read inputs ready since the last barrier: the weight rows of
    /// every job are cut into chunks handed to whichever worker is free.
    fn matmul_step(&self, w: &Worker, data: &[u8], n: usize, acts: &ActBufs, jobs: &[Job]) {
        let nth = w.nth();
        let sizes: Vec<usize> = jobs.iter().map(|j| j.lin.chunk_rows(&j.plan, nth)).collect();
        let counts: Vec<usize> = jobs.iter().zip(&sizes).map(|(j, &sz)| j.lin.rows.div_ceil(sz)).collect();
        let total: usize = counts.iter().sum();
        w.chunks(total, 1, |cs| {
            for mut ci in cs {
                let mut ji = 0;
                while ci >= counts[ji] {
                    ci -= counts[ji];
                    ji += 1;
                }
                let j = &jobs[ji];
                let r0 = ci * sizes[ji];
                let rs = r0..(r0 + sizes[ji]).min(j.lin.rows);
                // SAFETY: inputs are only read in this step.
                let x = unsafe { j.x.all() };
                let qa: &[u8] = match j.plan {
                    Plan::Quant { act_ty, .. } => match acts.get(act_ty, j.lin.cols) {
                        // SAFETY: as above.
                        Some(b) => unsafe { b.all() },
                        None => &[],
                    },
                    Plan::Float => &[],
                };
                // SAFETY: chunks of one job cover disjoint output columns; jobs write different
                // outputs.
                unsafe { j.lin.rows_into(data, &j.plan, rs, x, qa, n, j.out) };
            }
        });
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
    fn new(c: &Config, freqs: Option<&[f32]>, pos0: usize, n: usize) -> RopeTable {
        let half = c.n_rot / 2;
        // ggml: theta_scale = base^(-2/n_dims), theta_i = pos * theta_scale^i, built by repeated
        // products; the angle is freq_scale * (theta_i / freq_factor_i) (both 1 when absent,
        // which leaves theta_i unchanged bit for bit).
        let theta_scale = c.rope_base.powf(-2.0 / c.n_rot as f32);
        let mut cs = Vec::with_capacity(n * half);
        for t in 0..n {
            let mut theta = (pos0 + t) as f32;
            for i in 0..half {
                let ff = freqs.map_or(1.0, |f| f[i]);
                let a = c.rope_freq_scale * (theta / ff);
                cs.push((a.cos(), a.sin()));
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

/// Causal GQA attention of one query head `h` of token `t` (position `pos0 + t`) over the
/// cached keys/values `kc`/`vc` (all `pos0 + n` positions, `kv_dim` per position); `q` is
/// `n × n_head × hd`. Writes the head's `hd` outputs into `out`.
#[allow(clippy::too_many_arguments)]
fn attention_head(c: &Config, q: &[f32], kc: &[f32], vc: &[f32], pos0: usize, t: usize, h: usize, out: &mut [f32]) {
    let hd = c.head_dim;
    let (q_dim, kv_dim) = (c.n_head * hd, c.n_head_kv * hd);
    let group = c.n_head / c.n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
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
    out.fill(0.0);
    for (p, s) in sc.iter().enumerate() {
        let w = round_f16(s * inv);
        let vr = &vc[p * kv_dim + kvh * hd..p * kv_dim + (kvh + 1) * hd];
        for (a, b) in out.iter_mut().zip(vr) {
            *a += w * b;
        }
    }
}

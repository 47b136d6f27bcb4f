//! Hugging Face safetensors model directory → GGUF, as llama.cpp's `convert_hf_to_gguf.py` does
//! it for `LlamaForCausalLM`, `MistralForCausalLM` and `Qwen2ForCausalLM`.
//!
//! The output has llama.cpp's tensor names (`token_embd`, `blk.N.attn_q`, ...), metadata keys
//! (`general.*`, `<arch>.*` from `config.json`, `tokenizer.*` from `tokenizer.json` and
//! `tokenizer_config.json`), tensor order (shards in name order, tensors sorted by HF name within
//! each) and the q/k row permutation llama.cpp applies for llama's adjacent-pair RoPE (not for
//! qwen2). Weights are memory-mapped and converted one slab of rows at a time, streamed through
//! [`GgufWriter`], so memory stays bounded by one slab whatever the model size, and the output
//! appears only when complete.
//!
//! `--outtype` `f32`, `f16` (default), `bf16` and `q8_0` are written directly, with 1-D tensors,
//! norms and biases in F32 as llama.cpp writes them (and Q8_0 falling back to F16 for rows that
//! are not whole blocks). Any llama-quantize mix (`Q4_K_M`, `IQ4_XS`, ...) converts to an F32 GGUF
//! in a hidden temporary file beside the output, then runs [`quantize_model`] on it: the
//! result is what `convert_hf_to_gguf.py --outtype f32` followed by `llama-quantize` gives.
//!
//! Differences from llama.cpp's converter, all in metadata: `general.name`, `basename`,
//! `size_label`, `finetune`, `version` and `organization` follow gguf-py's heuristics on
//! `config.json`'s `_name_or_path` and the directory name ([`naming`]), but the model card
//! (`README.md`: license, tags, base models, datasets...) and `generation_config.json`'s sampling
//! defaults are not read; added tokens are not re-encoded through `transformers`. SentencePiece vocabularies come from `tokenizer.model`;
//! a byte-fallback `tokenizer.json` without one (llama.cpp's `LlamaHfVocab`) is not supported.

mod hf;
mod naming;
mod pre_hashes;
mod spm;
mod vocab;

use std::path::Path;

use safetensors::Dtype;

pub use hf::{HfArch, HfConfig};

use crate::error::{Error, Result};
use crate::gguf::{GgufWriter, Value};
use crate::mix::FileType;
use crate::quant::{self, Path as QPath};
use crate::quantize_model::{quantize_model, Progress, QuantizeOptions, Report, TensorReport, QUANTIZATION_VERSION};
use crate::types::QuantType;

/// Largest f32 slab converted at once (bytes), bounding memory for large tensors. Larger slabs
/// do not convert faster: the work per row is a few operations per value.
const SLAB_BYTES: usize = 16 << 20;

/// What to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutType {
    /// All tensors F32 (`general.file_type` 0).
    F32,
    /// 2-D weights F16, the rest F32 (llama.cpp's default; file type 1).
    F16,
    /// 2-D weights BF16, the rest F32 (file type 32).
    BF16,
    /// 2-D weights Q8_0, the rest F32 (file type 7).
    Q8_0,
    /// Any llama-quantize mix: convert to F32, then [`quantize_model`].
    Mix(FileType),
}

impl OutType {
    /// Parse `f32`, `f16`, `bf16`, `q8_0` (any case) or a llama-quantize mix name.
    pub fn parse(s: &str) -> Result<OutType> {
        let u = s.trim().to_ascii_uppercase();
        Ok(match u.as_str() {
            "F32" => OutType::F32,
            "F16" => OutType::F16,
            "BF16" => OutType::BF16,
            "Q8_0" => OutType::Q8_0,
            _ => OutType::Mix(FileType::from_name(&u).ok_or_else(|| {
                Error::value(format!("unknown outtype {s:?}: use f32, f16, bf16, q8_0 or a quantization mix such as Q4_K_M"))
            })?),
        })
    }

    fn file_type(self) -> FileType {
        match self {
            OutType::F32 => FileType::ALL_F32,
            OutType::F16 => FileType::F16,
            OutType::BF16 => FileType::BF16,
            OutType::Q8_0 => FileType::Q8_0,
            OutType::Mix(f) => f,
        }
    }

    fn weight_type(self) -> QuantType {
        match self {
            OutType::F32 | OutType::Mix(_) => QuantType::F32,
            OutType::F16 => QuantType::F16,
            OutType::BF16 => QuantType::BF16,
            OutType::Q8_0 => QuantType::Q8_0,
        }
    }
}

/// Options of [`convert`].
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Output type.
    pub outtype: OutType,
    /// Worker threads (`None`: all cores). The output does not depend on it.
    pub threads: Option<usize>,
    /// `general.name` (default: derived from the directory name as llama.cpp does).
    pub model_name: Option<String>,
    /// Force `tokenizer.ggml.pre` instead of detecting it.
    pub tokenizer_pre: Option<String>,
}

impl ConvertOptions {
    /// Defaults for `outtype`.
    pub fn new(outtype: OutType) -> ConvertOptions {
        ConvertOptions { outtype, threads: None, model_name: None, tokenizer_pre: None }
    }
}

/// Ordered metadata in which setting a key again replaces its value in place (gguf-py's writer).
#[derive(Default)]
pub(crate) struct Kv {
    entries: Vec<(String, Value)>,
}

impl Kv {
    pub(crate) fn set(&mut self, key: &str, v: Value) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = v,
            None => self.entries.push((key.to_owned(), v)),
        }
    }
}

/// One output tensor and where its data comes from.
struct Planned {
    hf: String,
    shard: usize,
    name: String,
    /// Source shape (HF order, rows last-but-one).
    shape: Vec<usize>,
    dtype: Dtype,
    ty: QuantType,
    /// q/k permutation: heads to un-interleave, if any.
    permute: Option<usize>,
    /// Generated data (llama3 `rope_freqs`) instead of a safetensors tensor.
    generated: Option<Vec<f32>>,
}

impl Planned {
    fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
    fn rows(&self) -> usize {
        self.shape.iter().rev().skip(1).product()
    }
    fn dims(&self) -> Vec<usize> {
        if self.shape.is_empty() {
            vec![1]
        } else {
            self.shape.iter().rev().copied().collect()
        }
    }
}

fn dtype_qt(d: Dtype) -> QuantType {
    match d {
        Dtype::F16 => QuantType::F16,
        Dtype::BF16 => QuantType::BF16,
        _ => QuantType::F32,
    }
}

/// The metadata llama.cpp's converter writes before the tokenizer (`general.*`, `<arch>.*`).
fn model_metadata(
    kv: &mut Kv,
    cfg: &HfConfig,
    dir: &Path,
    opts: &ConvertOptions,
    file_type: FileType,
    total_params: u64,
) -> Result<()> {
    let a = cfg.arch.gguf_name();
    kv.set("general.architecture", Value::from(a));
    kv.set("general.type", Value::from("model"));
    naming::Naming::derive(dir, cfg, opts.model_name.as_deref(), total_params).write(kv);
    let u = |kv: &mut Kv, key: &str, keys: &[&str]| -> Result<()> {
        if let Some(v) = cfg.find_u32(keys)? {
            kv.set(&format!("{a}.{key}"), Value::U32(v));
        }
        Ok(())
    };
    kv.set(&format!("{a}.block_count"), Value::U32(cfg.require_u32(&["n_layers", "num_hidden_layers", "n_layer", "num_layers"])?));
    u(kv, "context_length", &["max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length"])?;
    u(kv, "embedding_length", &["hidden_size", "n_embd", "dim"])?;
    u(kv, "feed_forward_length", &["prefix_dense_intermediate_size", "dense_intermediate_size", "intermediate_size", "n_inner", "hidden_dim"])?;
    u(kv, "attention.head_count", &["num_attention_heads", "n_head", "n_heads"])?;
    u(kv, "attention.head_count_kv", &["num_key_value_heads", "n_kv_heads"])?;
    if cfg.hparams.get("is_causal").and_then(|v| v.as_bool()) == Some(false) {
        kv.set(&format!("{a}.attention.causal"), Value::Bool(false));
    }
    let rope = rope_params(cfg)?;
    if let Some(t) = rope.get("rope_type").and_then(|v| v.as_str()) {
        let factor = rope.get("factor").and_then(|v| v.as_f64());
        match (t, factor) {
            ("linear", Some(f)) => {
                kv.set(&format!("{a}.rope.scaling.type"), Value::from("linear"));
                kv.set(&format!("{a}.rope.scaling.factor"), Value::F32(f as f32));
            }
            ("yarn", Some(f)) => {
                kv.set(&format!("{a}.rope.scaling.type"), Value::from("yarn"));
                kv.set(&format!("{a}.rope.scaling.factor"), Value::F32(f as f32));
                let orig = rope
                    .get("original_max_position_embeddings")
                    .and_then(|v| v.as_u64())
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| {
                        Error::value(format!("{}: yarn rope scaling needs original_max_position_embeddings", cfg.path.display()))
                    })?;
                kv.set(&format!("{a}.rope.scaling.original_context_length"), Value::U32(orig));
                for (k, names) in [
                    ("rope.scaling.yarn_ext_factor", &["extrapolation_factor"][..]),
                    ("rope.scaling.yarn_attn_factor", &["attention_factor", "attn_factor"][..]),
                    ("rope.scaling.yarn_beta_fast", &["beta_fast"][..]),
                    ("rope.scaling.yarn_beta_slow", &["beta_slow"][..]),
                ] {
                    if let Some(v) = names.iter().find_map(|n| rope.get(*n)).and_then(|v| v.as_f64()) {
                        kv.set(&format!("{a}.{k}"), Value::F32(v as f32));
                    }
                }
            }
            ("su" | "longrope", _) => kv.set(&format!("{a}.rope.scaling.type"), Value::from("longrope")),
            // llama3 scaling becomes the rope_freqs tensor; other types are ignored, as there.
            _ => {}
        }
    }
    if let Some(theta) = rope.get("rope_theta").and_then(|v| v.as_f64()) {
        kv.set(&format!("{a}.rope.freq_base"), Value::F32(theta as f32));
    }
    if let Some(e) = cfg.find_f64(&["rms_norm_eps", "norm_eps"])? {
        kv.set(&format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(e as f32));
    }
    if let Some(e) = cfg.find_f64(&["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"])? {
        kv.set(&format!("{a}.attention.layer_norm_epsilon"), Value::F32(e as f32));
    }
    if let Some(n) = cfg.find_u32(&["num_local_experts", "num_experts", "n_routed_experts"])? {
        if n > 0 {
            return Err(Error::value(format!("{}: mixture-of-experts models are not supported", cfg.path.display())));
        }
    }
    // llama.cpp reads config.json through transformers' AutoConfig, whose LlamaConfig and
    // MistralConfig fill in head_dim = hidden_size / num_attention_heads when it is absent
    // (Qwen2Config has no head_dim), so llama files always get key/value lengths.
    let hd = match cfg.find_u32(&["head_dim"])? {
        Some(hd) => Some(hd),
        None if cfg.arch.permutes_qk() => Some(head_dim(cfg)?),
        None => None,
    };
    if let Some(hd) = hd {
        kv.set(&format!("{a}.attention.key_length"), Value::U32(hd));
        kv.set(&format!("{a}.attention.value_length"), Value::U32(hd));
    }
    kv.set("general.file_type", Value::U32(file_type.id()));
    if cfg.arch.permutes_qk() {
        kv.set(&format!("{a}.vocab_size"), Value::U32(cfg.require_u32(&["vocab_size"])?));
        kv.set(&format!("{a}.rope.dimension_count"), Value::U32(head_dim(cfg)?));
    }
    kv.set("general.quantization_version", Value::U32(QUANTIZATION_VERSION));
    Ok(())
}

/// `head_dim`, or `hidden_size / num_attention_heads`.
fn head_dim(cfg: &HfConfig) -> Result<u32> {
    if let Some(hd) = cfg.find_u32(&["head_dim"])? {
        return Ok(hd);
    }
    let hidden = cfg.require_u32(&["hidden_size"])?;
    let heads = cfg.require_u32(&["num_attention_heads"])?;
    if heads == 0 {
        return Err(Error::value(format!("{}: num_attention_heads is 0", cfg.path.display())));
    }
    Ok(hidden / heads)
}

/// llama.cpp's `rope_parameters`: `rope_parameters` or `rope_scaling`, with `rope_theta` and the
/// type mirrored in; the `full_attention` entry when there is one.
fn rope_params(cfg: &HfConfig) -> Result<serde_json::Map<String, serde_json::Value>> {
    use serde_json::Value as J;
    let mut p = match cfg.hparams.get("rope_parameters").or_else(|| cfg.hparams.get("rope_scaling")) {
        Some(J::Object(o)) => o.clone(),
        Some(J::Null) | None => serde_json::Map::new(),
        Some(v) => return Err(Error::value(format!("{}: rope_scaling should be an object, found {v}", cfg.path.display()))),
    };
    if !p.contains_key("full_attention") && !p.contains_key("sliding_attention") {
        let theta = cfg.find(&["global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"]);
        if let (false, Some(t)) = (p.contains_key("rope_theta"), theta) {
            p.insert("rope_theta".into(), t.clone());
        }
        if let (false, Some(t)) = (p.contains_key("rope_type"), p.get("type").cloned()) {
            p.insert("rope_type".into(), t);
        }
        if let (false, Some(v)) = (p.contains_key("original_max_position_embeddings"), cfg.find(&["original_max_position_embeddings"])) {
            p.insert("original_max_position_embeddings".into(), v.clone());
        }
    }
    if let Some(J::Object(full)) = p.get("full_attention") {
        return Ok(full.clone());
    }
    Ok(p)
}

/// llama.cpp's llama3 RoPE frequency factors (`LlamaModel.generate_extra_tensors`), in f32.
fn llama3_rope_factors(rope: &serde_json::Map<String, serde_json::Value>, dim: usize) -> Vec<f32> {
    let g = |k: &str, d: f64| rope.get(k).and_then(|v| v.as_f64()).unwrap_or(d) as f32;
    let base = g("rope_theta", 10000.0);
    let factor = g("factor", 8.0);
    let low = g("low_freq_factor", 1.0);
    let high = g("high_freq_factor", 4.0);
    let old_ctx = g("original_max_position_embeddings", 8192.0);
    let (low_wl, high_wl) = (old_ctx / low, old_ctx / high);
    (0..dim)
        .step_by(2)
        .map(|i| {
            let freq = 1.0 / base.powf(i as f32 / dim as f32);
            let wl = 2.0 * std::f32::consts::PI / freq;
            if wl < high_wl {
                1.0
            } else if wl > low_wl {
                factor
            } else {
                let smooth = (old_ctx / wl - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

/// The type llama.cpp's converter gives a tensor (`prepare_tensors`).
fn tensor_type(name: &str, n_dims: usize, cols: usize, out: QuantType) -> QuantType {
    if n_dims <= 1 || name.ends_with("_norm.weight") || !name.ends_with(".weight") {
        return QuantType::F32;
    }
    // gguf-py cannot quantize rows that are not whole blocks and falls back to F16.
    match out.row_bytes(cols) {
        Some(_) => out,
        None => QuantType::F16,
    }
}

/// Convert the Hugging Face model in `model_dir` to the GGUF file `output`. `progress` is called
/// after each tensor (for a mix: each tensor of the conversion, then of the quantization, counted
/// as one run of twice as many tensors); an error from it aborts, leaving nothing behind.
pub fn convert(
    model_dir: &Path,
    output: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(&Progress<'_>) -> Result<()>,
) -> Result<Report> {
    if !model_dir.is_dir() {
        return Err(Error::value(format!("{} is not a directory", model_dir.display())));
    }
    let cfg = HfConfig::load(model_dir)?;
    match opts.outtype {
        OutType::Mix(ft) => {
            let parent = match output.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            let stem = output.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            // The F32 intermediate is written like any output (nameless until complete), named
            // beside the output only for the moment it takes to reopen it, then unlinked and read
            // through /proc/self/fd; so an error, Ctrl-C or kill leaves nothing behind.
            let f32_path = parent.join(format!(".{stem}.convert-f32.{}.gguf", std::process::id()));
            let _guard = RemoveOnDrop(f32_path.clone());
            let mut sub = opts.clone();
            sub.outtype = OutType::F32;
            let mut n_total = 0usize;
            let mut bytes_first = 0usize;
            let first = write_direct(model_dir, &cfg, &f32_path, &sub, &mut |p: &Progress<'_>| {
                n_total = p.total * 2;
                bytes_first = p.bytes_total;
                progress(&Progress { done: p.done, total: p.total * 2, tensor: p.tensor, bytes_done: p.bytes_done, bytes_total: p.bytes_total * 2 })
            })?;
            let (input, _open) = detach_name(&f32_path);
            let mut qopts = QuantizeOptions::new(ft);
            qopts.threads = opts.threads;
            let n_first = first.tensors.len();
            let mut report = quantize_model(&input, output, &qopts, &mut |p: &Progress<'_>| {
                let total = n_total.max(n_first + p.total);
                progress(&Progress {
                    done: n_first + p.done,
                    total,
                    tensor: p.tensor,
                    // The quantization pass reads the F32 file; scale its bytes to the input's.
                    bytes_done: bytes_first + (p.bytes_done as u128 * bytes_first as u128 / p.bytes_total.max(1) as u128) as usize,
                    bytes_total: bytes_first * 2,
                })
            })?;
            // Report sizes against the safetensors input, not the temporary F32 file.
            for t in &mut report.tensors {
                if let Some(src) = first.tensors.iter().find(|s| s.name == t.name) {
                    t.from = src.from;
                    t.bytes_in = src.bytes_in;
                }
            }
            Ok(report)
        }
        _ => write_direct(model_dir, &cfg, output, opts, progress),
    }
}

/// Removes a file when dropped (if it still exists).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// On Linux: open `path`, unlink it, and return a `/proc/self/fd` path that still reaches it
/// (with the open file that keeps it alive). Elsewhere, or if that fails, `path` itself.
fn detach_name(path: &Path) -> (std::path::PathBuf, Option<std::fs::File>) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        if let Ok(f) = std::fs::File::open(path) {
            let proc_path = std::path::PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
            if std::fs::metadata(&proc_path).is_ok() && std::fs::remove_file(path).is_ok() {
                return (proc_path, Some(f));
            }
        }
    }
    (path.to_path_buf(), None)
}

/// Convert with an F32/F16/BF16/Q8_0 outtype, streaming into `output`.
fn write_direct(
    dir: &Path,
    cfg: &HfConfig,
    output: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(&Progress<'_>) -> Result<()>,
) -> Result<Report> {
    let (shards, index_names) = hf::Shards::open(dir)?;
    let parsed = shards.parse(dir)?;
    let out_ty = opts.outtype.weight_type();

    // Every tensor, in llama.cpp's order: shards in name order, names sorted within each.
    let mut plan: Vec<Planned> = Vec::new();
    let rope = rope_params(cfg)?;
    if cfg.arch.permutes_qk() && rope.get("rope_type").and_then(|v| v.as_str()).map(str::to_ascii_lowercase).as_deref() == Some("llama3") {
        let f = llama3_rope_factors(&rope, head_dim(cfg)? as usize);
        plan.push(Planned {
            hf: String::new(),
            shard: 0,
            name: "rope_freqs.weight".into(),
            shape: vec![f.len()],
            dtype: Dtype::F32,
            ty: QuantType::F32,
            permute: None,
            generated: Some(f),
        });
    }
    let n_head = cfg.find_u32(&["n_heads", "num_attention_heads"])?;
    let n_head_kv = cfg.find_u32(&["n_kv_heads", "num_key_value_heads"])?.or(n_head);
    let mut seen = std::collections::BTreeSet::new();
    for (si, st) in parsed.iter().enumerate() {
        let mut names: Vec<&str> = st.names();
        names.sort_unstable();
        for hf_name in names {
            seen.insert(hf_name.to_owned());
            if hf::is_ignored(hf_name) {
                continue;
            }
            let file = dir.join(&shards.names[si]);
            let view = st
                .tensor(hf_name)
                .map_err(|e| Error::value(format!("{}: tensor {hf_name:?}: {e}", file.display())))?;
            let dtype = view.dtype();
            if hf::dtype_size(dtype).is_none() {
                return Err(Error::value(format!(
                    "{}: tensor {hf_name:?} has dtype {dtype:?}; only F32, F16 and BF16 are supported",
                    file.display()
                )));
            }
            let name = hf::map_name(hf_name).ok_or_else(|| {
                Error::value(format!("{}: cannot map tensor {hf_name:?} to a GGUF name for {}", file.display(), cfg.arch_name))
            })?;
            let shape = view.shape().to_vec();
            if shape.len() > crate::gguf::MAX_DIMS || shape.contains(&0) {
                return Err(Error::value(format!("{}: tensor {hf_name:?} has unsupported shape {shape:?}", file.display())));
            }
            let mut permute = None;
            if cfg.arch.permutes_qk() {
                let heads = if hf_name.ends_with("q_proj.weight") || hf_name.ends_with("q_proj.bias") {
                    Some(n_head)
                } else if hf_name.ends_with("k_proj.weight") || hf_name.ends_with("k_proj.bias") {
                    Some(n_head_kv)
                } else {
                    None
                };
                if let Some(h) = heads {
                    let h = h.ok_or_else(|| {
                        Error::value(format!("{}: required key \"num_attention_heads\" is missing", cfg.path.display()))
                    })? as usize;
                    let rows = shape.first().copied().unwrap_or(0);
                    if h == 0 || rows % (2 * h) != 0 {
                        return Err(Error::value(format!(
                            "{}: tensor {hf_name:?} has {rows} rows, not a whole number of {h} heads of even size",
                            file.display()
                        )));
                    }
                    permute = Some(h);
                }
            }
            let cols = shape.last().copied().unwrap_or(1);
            let ty = tensor_type(&name, shape.len(), cols, out_ty);
            plan.push(Planned { hf: hf_name.to_owned(), shard: si, name, shape, dtype, ty, permute, generated: None });
        }
    }
    if let Some(idx) = &index_names {
        let missing: Vec<&String> = idx.difference(&seen).collect();
        let extra: Vec<&String> = seen.difference(idx).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(Error::value(format!(
                "{}: the weight map and the shards disagree: missing tensors {missing:?}, unlisted tensors {extra:?}",
                dir.join("model.safetensors.index.json").display()
            )));
        }
    }
    if plan.iter().all(|p| p.name != "token_embd.weight") {
        return Err(Error::value(format!("{}: no model.embed_tokens.weight tensor", dir.display())));
    }

    let mut kv = Kv::default();
    let total_params: usize = plan.iter().map(|p| p.shape.iter().product::<usize>()).sum();
    model_metadata(&mut kv, cfg, dir, opts, opts.outtype.file_type(), total_params as u64)?;
    vocab::add_tokenizer(&mut kv, dir, cfg, opts.tokenizer_pre.as_deref())?;

    let mut w = GgufWriter::create(output)?;
    for (k, v) in kv.entries {
        w.add_metadata(&k, v)?;
    }
    for p in &plan {
        w.add_tensor_info(&p.name, &p.dims(), p.ty)?;
    }
    let bytes_total: usize = plan.iter().map(|p| p.rows() * p.cols() * hf::dtype_size(p.dtype).unwrap_or(4)).sum();
    let mut report = Report { n_elements: plan.iter().map(|p| p.rows() * p.cols()).sum(), ..Default::default() };
    let mut bytes_done = 0;
    let mut f32_buf: Vec<f32> = Vec::new();
    let mut out_buf: Vec<u8> = Vec::new();
    for (i, p) in plan.iter().enumerate() {
        let data: &[u8] = match &p.generated {
            Some(v) => bytemuck::cast_slice(v.as_slice()),
            // The view was fetched above; `parsed` and `p.shard` come from the same loop.
            None => parsed[p.shard]
                .tensor(&p.hf)
                .map_err(|e| Error::value(format!("tensor {:?}: {e}", p.hf)))?
                .data(),
        };
        write_tensor(&mut w, p, data, &mut f32_buf, &mut out_buf, opts.threads)?;
        let bytes_in = data.len();
        bytes_done += bytes_in;
        let t = TensorReport {
            name: p.name.clone(),
            shape: p.shape.clone(),
            from: dtype_qt(p.dtype),
            to: p.ty,
            bytes_in,
            bytes_out: p.ty.row_bytes(p.cols()).unwrap_or(0) * p.rows(),
            used_imatrix: false,
        };
        progress(&Progress { done: i + 1, total: plan.len(), tensor: &t, bytes_done, bytes_total })?;
        report.tensors.push(t);
    }
    w.finish()?;
    Ok(report)
}

/// Stream one tensor: rows gathered through the q/k permutation, converted slab by slab.
fn write_tensor(
    w: &mut GgufWriter,
    p: &Planned,
    data: &[u8],
    f32_buf: &mut Vec<f32>,
    out_buf: &mut Vec<u8>,
    threads: Option<usize>,
) -> Result<()> {
    let (rows, cols) = (p.rows(), p.cols());
    let es = hf::dtype_size(p.dtype).unwrap_or(4);
    let src_row = cols * es;
    if data.len() != rows * src_row {
        return Err(Error::value(format!("tensor {:?}: {} data bytes for shape {:?}", p.hf, data.len(), p.shape)));
    }
    let src_of = |r: usize| match p.permute {
        Some(h) => hf::perm_row(r, rows, h),
        None => r,
    };
    // Indexing below is in bounds: `data` holds exactly `rows` rows (checked above) and
    // `src_of` maps 0..rows onto 0..rows (`perm_row` permutes within each head, and the planner
    // checked `rows` is a whole number of heads of even size).
    let same = dtype_qt(p.dtype) == p.ty;
    if same && p.permute.is_none() {
        return w.write_tensor_data(data);
    }
    let slab = (SLAB_BYTES / (cols * 4)).clamp(1, rows.max(1));
    let mut r0 = 0;
    while r0 < rows {
        let n = slab.min(rows - r0);
        if same {
            // Same type in and out: move the rows' bytes unchanged.
            out_buf.clear();
            for r in r0..r0 + n {
                let s = src_of(r) * src_row;
                out_buf.extend_from_slice(&data[s..s + src_row]);
            }
        } else {
            f32_buf.clear();
            f32_buf.try_reserve(n * cols).map_err(|_| Error::value(format!("out of memory converting {:?}", p.hf)))?;
            f32_buf.resize(n * cols, 0.0);
            for (k, dst) in f32_buf.chunks_exact_mut(cols).enumerate() {
                let s = src_of(r0 + k) * src_row;
                hf::decode_into(p.dtype, &data[s..s + src_row], dst);
            }
            if p.ty == QuantType::F32 {
                out_buf.clear();
                for v in f32_buf.iter() {
                    out_buf.extend_from_slice(&v.to_le_bytes());
                }
            } else {
                let rb = p.ty.row_bytes(cols).ok_or_else(|| Error::value(format!("tensor {:?}: rows do not fit {}", p.name, p.ty)))?;
                out_buf.clear();
                out_buf.try_reserve(n * rb).map_err(|_| Error::value(format!("out of memory converting {:?}", p.hf)))?;
                out_buf.resize(n * rb, 0);
                quant::quantize_into(p.ty, f32_buf, cols, None, QPath::Chunk, out_buf, threads)
                    .map_err(|e| Error::value(format!("tensor {:?}: {e}", p.hf)))?;
            }
        }
        w.write_tensor_data(out_buf)?;
        r0 += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outtype_names() {
        assert_eq!(OutType::parse("f16").unwrap(), OutType::F16);
        assert_eq!(OutType::parse("Q8_0").unwrap(), OutType::Q8_0);
        assert_eq!(OutType::parse("q4_k_m").unwrap(), OutType::Mix(FileType::Q4_K_M));
        assert!(OutType::parse("q9").is_err());
    }

    #[test]
    fn types_follow_llama_cpp() {
        assert_eq!(tensor_type("blk.0.attn_norm.weight", 1, 64, QuantType::F16), QuantType::F32);
        assert_eq!(tensor_type("blk.0.attn_q.bias", 1, 64, QuantType::Q8_0), QuantType::F32);
        assert_eq!(tensor_type("blk.0.attn_q.weight", 2, 64, QuantType::Q8_0), QuantType::Q8_0);
        assert_eq!(tensor_type("blk.0.attn_q.weight", 2, 48, QuantType::Q8_0), QuantType::F16);
    }

    #[test]
    fn check_text_is_llama_cpps() {
        // Length of llama.cpp's chktxt in characters and UTF-8 bytes (measured with Python).
        assert_eq!(pre_hashes::CHECK_TEXT.chars().count(), 350);
        assert_eq!(pre_hashes::CHECK_TEXT.len(), 431);
    }
}

//! Hyperparameters of a llama-family model, read from GGUF metadata (`<arch>.*` keys).

use super::{Meta, ModelSource};
use crate::error::{Error, Result};

/// The architectures kquants runs. They share one graph and differ in metadata details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `llama` (also Mistral-style models, which are published under this name).
    Llama,
    /// `mistral`: the llama graph under its own metadata prefix.
    Mistral,
    /// `qwen2`: biases on q/k/v, NeoX RoPE.
    Qwen2,
}

impl Arch {
    /// Parse `general.architecture`; other architectures are rejected with a clear error.
    pub fn from_name(name: &str) -> Result<Arch> {
        match name {
            "llama" => Ok(Arch::Llama),
            "mistral" => Ok(Arch::Mistral),
            "qwen2" => Ok(Arch::Qwen2),
            other => Err(Error::value(format!(
                "unsupported model architecture {other:?}: kquants runs llama, mistral and qwen2"
            ))),
        }
    }

    /// The metadata prefix (`llama.block_count`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
        }
    }

    /// How this architecture rotates query/key pairs (llama.cpp `llama_model_rope_type`).
    pub fn rope_mode(self) -> RopeMode {
        match self {
            Arch::Llama | Arch::Mistral => RopeMode::Normal,
            Arch::Qwen2 => RopeMode::Neox,
        }
    }
}

/// Which dimensions RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    /// Adjacent pairs `(2i, 2i+1)` (llama: the converter permutes q/k rows for this).
    Normal,
    /// Halves: `(i, i + n_rot/2)` (GPT-NeoX, qwen2).
    Neox,
}

/// Model hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Architecture.
    pub arch: Arch,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Embedding width.
    pub n_embd: usize,
    /// FFN hidden width.
    pub n_ff: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Key/value heads (GQA).
    pub n_head_kv: usize,
    /// Per-head width of q and k.
    pub head_dim: usize,
    /// Rotated dimensions per head.
    pub n_rot: usize,
    /// RoPE base.
    pub rope_base: f32,
    /// RoPE position scale: `1 / rope.scaling.factor` for linear scaling, else 1 (ggml's
    /// `freq_scale`).
    pub rope_freq_scale: f32,
    /// RoPE mode.
    pub rope_mode: RopeMode,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Training context length.
    pub n_ctx_train: usize,
    /// Vocabulary size (rows of the embedding).
    pub n_vocab: usize,
}

/// Read an integer metadata value.
pub(crate) fn meta_usize(src: &dyn ModelSource, key: &str) -> Result<Option<usize>> {
    match src.meta(key) {
        None => Ok(None),
        Some(Meta::U(v)) => usize::try_from(v).map(Some).map_err(|_| Error::value(format!("{key} = {v} is too large"))),
        Some(Meta::I(v)) => usize::try_from(v).map(Some).map_err(|_| Error::value(format!("{key} = {v} is out of range"))),
        Some(other) => Err(Error::value(format!("metadata {key} should be an integer, found {other:?}"))),
    }
}

pub(crate) fn meta_f32(src: &dyn ModelSource, key: &str) -> Result<Option<f32>> {
    match src.meta(key) {
        None => Ok(None),
        Some(Meta::F(v)) => Ok(Some(v as f32)),
        Some(Meta::U(v)) => Ok(Some(v as f32)),
        Some(Meta::I(v)) => Ok(Some(v as f32)),
        Some(other) => Err(Error::value(format!("metadata {key} should be a number, found {other:?}"))),
    }
}

pub(crate) fn meta_str(src: &dyn ModelSource, key: &str) -> Result<Option<String>> {
    match src.meta(key) {
        None => Ok(None),
        Some(Meta::Str(s)) => Ok(Some(s)),
        Some(other) => Err(Error::value(format!("metadata {key} should be a string, found {other:?}"))),
    }
}

pub(crate) fn meta_bool(src: &dyn ModelSource, key: &str) -> Result<Option<bool>> {
    match src.meta(key) {
        None => Ok(None),
        Some(Meta::Bool(b)) => Ok(Some(b)),
        Some(Meta::U(v)) => Ok(Some(v != 0)),
        Some(Meta::I(v)) => Ok(Some(v != 0)),
        Some(other) => Err(Error::value(format!("metadata {key} should be a boolean, found {other:?}"))),
    }
}

fn required(src: &dyn ModelSource, key: &str) -> Result<usize> {
    meta_usize(src, key)?.ok_or_else(|| Error::value(format!("model metadata lacks {key}")))
}

impl Config {
    /// Read the hyperparameters; checks they are positive and consistent.
    pub fn from_source(src: &dyn ModelSource) -> Result<Config> {
        let arch_name =
            meta_str(src, "general.architecture")?.ok_or_else(|| Error::value("model metadata lacks general.architecture"))?;
        let arch = Arch::from_name(&arch_name)?;
        let a = arch.name();
        let n_layer = required(src, &format!("{a}.block_count"))?;
        let n_embd = required(src, &format!("{a}.embedding_length"))?;
        let n_ff = required(src, &format!("{a}.feed_forward_length"))?;
        let n_head = required(src, &format!("{a}.attention.head_count"))?;
        let n_head_kv = meta_usize(src, &format!("{a}.attention.head_count_kv"))?.unwrap_or(n_head);
        if n_layer == 0 || n_embd == 0 || n_ff == 0 || n_head == 0 || n_head_kv == 0 {
            return Err(Error::value("model dimensions must be positive"));
        }
        let head_dim = match meta_usize(src, &format!("{a}.attention.key_length"))? {
            Some(k) => k,
            None => {
                if n_embd % n_head != 0 {
                    return Err(Error::value(format!("embedding width {n_embd} is not a multiple of {n_head} heads")));
                }
                n_embd / n_head
            }
        };
        if let Some(vl) = meta_usize(src, &format!("{a}.attention.value_length"))? {
            if vl != head_dim {
                return Err(Error::value(format!("value_length {vl} differs from key_length {head_dim}: not supported")));
            }
        }
        if n_head % n_head_kv != 0 {
            return Err(Error::value(format!("{n_head} heads are not a multiple of {n_head_kv} key/value heads")));
        }
        let n_rot = meta_usize(src, &format!("{a}.rope.dimension_count"))?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(Error::value(format!("rope.dimension_count {n_rot} must be even and at most {head_dim}")));
        }
        let rope_base = meta_f32(src, &format!("{a}.rope.freq_base"))?.unwrap_or(10000.0);
        let rms_eps = meta_f32(src, &format!("{a}.attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5);
        if let Some(scale) = meta_f32(src, &format!("{a}.rope.freq_scale"))? {
            if scale != 1.0 {
                return Err(Error::value("rope.freq_scale other than 1 is not supported"));
            }
        }
        if let Some(t) = meta_str(src, &format!("{a}.rope.scaling.type"))? {
            if t != "none" && t != "linear" {
                return Err(Error::value(format!("rope scaling {t:?} is not supported")));
            }
        }
        // llama.cpp reads the factor from `rope.scale_linear` or `rope.scaling.factor` (the
        // latter wins) whatever the scaling type, and runs positions scaled by its inverse.
        let mut factor = meta_f32(src, &format!("{a}.rope.scale_linear"))?.unwrap_or(0.0);
        if let Some(f) = meta_f32(src, &format!("{a}.rope.scaling.factor"))? {
            factor = f;
        }
        if !factor.is_finite() || factor < 0.0 {
            return Err(Error::value(format!("rope scaling factor {factor} is not a positive number")));
        }
        let rope_freq_scale = if factor == 0.0 { 1.0 } else { 1.0 / factor };
        if let Some(e) = meta_usize(src, &format!("{a}.expert_count"))? {
            if e > 0 {
                return Err(Error::value("mixture-of-experts models are not supported"));
            }
        }
        let n_ctx_train = meta_usize(src, &format!("{a}.context_length"))?.unwrap_or(2048);
        let embd = src.tensor("token_embd.weight").ok_or_else(|| Error::value("model has no token_embd.weight"))?;
        let n_vocab = embd.dims.get(1).copied().unwrap_or(0) as usize;
        if embd.dims.len() != 2 || embd.dims[0] as usize != n_embd || n_vocab == 0 {
            return Err(Error::value(format!("token_embd.weight has shape {:?}, expected [{n_embd}, n_vocab]", embd.dims)));
        }
        Ok(Config {
            arch,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            rope_base,
            rope_freq_scale,
            rope_mode: arch.rope_mode(),
            rms_eps,
            n_ctx_train,
            n_vocab,
        })
    }
}

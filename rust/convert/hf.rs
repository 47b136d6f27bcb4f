//! Reading a Hugging Face model directory: `config.json`, the safetensors shards (memory-mapped,
//! parsed by the `safetensors` crate, read one tensor at a time) and the HF → GGUF tensor names.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};

/// The architectures `convert` handles and the GGUF architecture each becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HfArch {
    /// `LlamaForCausalLM` → `llama`.
    Llama,
    /// `MistralForCausalLM` → `llama` (llama.cpp's converter treats it as llama).
    Mistral,
    /// `Qwen2ForCausalLM` → `qwen2`.
    Qwen2,
}

impl HfArch {
    /// `general.architecture` of the output.
    pub fn gguf_name(self) -> &'static str {
        match self {
            HfArch::Llama | HfArch::Mistral => "llama",
            HfArch::Qwen2 => "qwen2",
        }
    }

    /// Whether q/k rows are permuted for llama.cpp's adjacent-pair RoPE (llama.cpp's
    /// `LlamaModel.undo_permute`); qwen2 keeps HF's layout and runs NeoX RoPE.
    pub fn permutes_qk(self) -> bool {
        matches!(self, HfArch::Llama | HfArch::Mistral)
    }
}

/// A parsed `config.json` (kept as JSON: the converter looks keys up by several names).
#[derive(Clone, Debug)]
pub struct HfConfig {
    /// Where it came from (for error messages).
    pub path: PathBuf,
    /// The architecture.
    pub arch: HfArch,
    /// `architectures[0]` as written.
    pub arch_name: String,
    /// All keys.
    pub hparams: Map<String, Json>,
}

/// Read and parse a JSON file; errors name the file.
pub(crate) fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| Error::value(format!("{}: invalid JSON: {e}", path.display())))
}

impl HfConfig {
    /// Load `config.json` from `dir` and check the architecture is one `convert` supports.
    pub fn load(dir: &Path) -> Result<HfConfig> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(Error::value(format!("{}: config.json is missing", dir.display())));
        }
        let Json::Object(hparams) = read_json(&path)? else {
            return Err(Error::value(format!("{}: expected a JSON object", path.display())));
        };
        let arch_name = match hparams.get("architectures") {
            Some(Json::Array(a)) => a.first().and_then(Json::as_str).map(str::to_owned),
            _ => None,
        }
        .ok_or_else(|| Error::value(format!("{}: key \"architectures\" is missing or not a list of names", path.display())))?;
        let arch = match arch_name.as_str() {
            "LlamaForCausalLM" | "LLaMAForCausalLM" => HfArch::Llama,
            "MistralForCausalLM" => HfArch::Mistral,
            "Qwen2ForCausalLM" => HfArch::Qwen2,
            other => {
                return Err(Error::value(format!(
                    "{}: architecture {other:?} is not supported (convert handles LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
                    path.display()
                )))
            }
        };
        let mut cfg = HfConfig { path, arch, arch_name, hparams };
        cfg.fill_transformers_defaults();
        Ok(cfg)
    }

    /// llama.cpp reads `config.json` through transformers' `AutoConfig(...).to_dict()`, which
    /// fills in the config class's defaults for absent keys. The scalar ones that reach the
    /// metadata are filled in here the same way (`LlamaConfig`, `MistralConfig`, `Qwen2Config`);
    /// missing dimensions are still errors.
    fn fill_transformers_defaults(&mut self) {
        let max_pos: u64 = match self.arch {
            HfArch::Llama => 2048,
            HfArch::Mistral => 4096 * 32,
            HfArch::Qwen2 => 32768,
        };
        let has_theta = self.hparams.contains_key("rope_theta")
            || self.hparams.get("rope_parameters").and_then(|p| p.get("rope_theta")).is_some();
        let h = &mut self.hparams;
        h.entry("max_position_embeddings").or_insert(Json::from(max_pos));
        h.entry("rms_norm_eps").or_insert(Json::from(1e-6));
        if !has_theta {
            h.insert("rope_theta".into(), Json::from(10000.0));
        }
        // The classes differ here: LlamaConfig copies num_attention_heads, MistralConfig's
        // default is 8 and Qwen2Config's 32 (an explicit null means num_attention_heads in all).
        let kv_default = match (self.arch, h.contains_key("num_key_value_heads")) {
            (HfArch::Mistral, false) => Some(Json::from(8)),
            (HfArch::Qwen2, false) => Some(Json::from(32)),
            (_, _) if h.get("num_key_value_heads").is_some_and(|v| !v.is_null()) => None,
            _ => h.get("num_attention_heads").cloned(),
        };
        if let Some(v) = kv_default {
            h.insert("num_key_value_heads".into(), v);
        }
    }

    /// The value of the first of `keys` present (llama.cpp's `find_hparam`); `null` counts as
    /// absent only when it is that first present key, as there.
    pub fn find(&self, keys: &[&str]) -> Option<&Json> {
        keys.iter().find_map(|k| self.hparams.get(*k)).filter(|v| !v.is_null())
    }

    /// An optional non-negative integer that fits `u32`.
    pub fn find_u32(&self, keys: &[&str]) -> Result<Option<u32>> {
        match self.find(keys) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.bad(keys, v, "a non-negative integer below 2^32")),
        }
    }

    /// A required non-negative integer.
    pub fn require_u32(&self, keys: &[&str]) -> Result<u32> {
        self.find_u32(keys)?.ok_or_else(|| {
            Error::value(format!("{}: required key {} is missing", self.path.display(), quoted(keys)))
        })
    }

    /// An optional number.
    pub fn find_f64(&self, keys: &[&str]) -> Result<Option<f64>> {
        match self.find(keys) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.bad(keys, v, "a number")),
        }
    }

    fn bad(&self, keys: &[&str], v: &Json, what: &str) -> Error {
        let key = keys.iter().find(|k| self.hparams.contains_key(**k)).copied().unwrap_or("?");
        Error::value(format!("{}: key {key:?} should be {what}, found {v}", self.path.display()))
    }
}

fn quoted(keys: &[&str]) -> String {
    keys.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(" or ")
}

/// The safetensors files of a model, memory-mapped.
pub struct Shards {
    /// File names relative to the model directory, in llama.cpp's order (sorted).
    pub names: Vec<String>,
    maps: Vec<Mmap>,
}

impl Shards {
    /// Find and map the shards: the files named by `model.safetensors.index.json`, or
    /// `model.safetensors` / `model-*.safetensors`.
    pub fn open(dir: &Path) -> Result<(Shards, Option<BTreeSet<String>>)> {
        let index_path = dir.join("model.safetensors.index.json");
        let (names, from_index) = if index_path.is_file() {
            let index = read_json(&index_path)?;
            let Some(Json::Object(map)) = index.get("weight_map") else {
                return Err(Error::value(format!("{}: key \"weight_map\" is missing or not an object", index_path.display())));
            };
            let mut files = BTreeSet::new();
            let mut tensors = BTreeSet::new();
            for (tensor, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    Error::value(format!("{}: weight_map[{tensor:?}] is not a file name", index_path.display()))
                })?;
                if file.contains('/') || file.contains('\\') || file == ".." {
                    return Err(Error::value(format!("{}: shard name {file:?} must be a plain file name", index_path.display())));
                }
                files.insert(file.to_owned());
                tensors.insert(tensor.clone());
            }
            (files.into_iter().collect::<Vec<_>>(), Some(tensors))
        } else {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("model") && n.ends_with(".safetensors"))
                .collect();
            names.sort();
            (names, None)
        };
        if names.is_empty() {
            return Err(Error::value(format!(
                "{}: no model.safetensors or model.safetensors.index.json (only safetensors weights are supported)",
                dir.display()
            )));
        }
        let mut maps = Vec::with_capacity(names.len());
        for n in &names {
            let p = dir.join(n);
            let f = File::open(&p).map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
            // SAFETY: memmap2's contract: the mapping is undefined if the file is modified while
            // mapped. We only read it, and a converter's inputs are not expected to change under
            // it (the same assumption llama.cpp's mmap loader and the safetensors crate make).
            let m = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(format!("mapping {}", p.display()), e))?;
            maps.push(m);
        }
        Ok((Shards { names, maps }, from_index))
    }

    /// Parse every shard's header (validated by the `safetensors` crate: offsets, sizes, dtypes).
    pub fn parse(&self, dir: &Path) -> Result<Vec<SafeTensors<'_>>> {
        self.names
            .iter()
            .zip(&self.maps)
            .map(|(n, m)| {
                SafeTensors::deserialize(m)
                    .map_err(|e| Error::value(format!("{}: invalid safetensors file: {e}", dir.join(n).display())))
            })
            .collect()
    }
}

/// Bytes per element of the dtypes `convert` reads, or `None`.
pub fn dtype_size(d: Dtype) -> Option<usize> {
    match d {
        Dtype::F32 => Some(4),
        Dtype::F16 | Dtype::BF16 => Some(2),
        _ => None,
    }
}

/// Decode `src` (elements of dtype `d`, little-endian) into `dst`.
pub fn decode_into(d: Dtype, src: &[u8], dst: &mut [f32]) {
    match d {
        Dtype::F32 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Dtype::F16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        Dtype::BF16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        // Callers check `dtype_size` first.
        _ => {}
    }
}

/// Names llama.cpp's converter drops without mapping.
pub fn is_ignored(name: &str) -> bool {
    name.ends_with(".attention.masked_bias") || name.ends_with(".attention.bias") || name.ends_with(".rotary_emb.inv_freq")
}

/// The GGUF name of an HF tensor (llama.cpp's `TensorNameMap` for llama / qwen2), or `None`.
pub fn map_name(hf: &str) -> Option<String> {
    // llama.cpp's `filter_tensors` strips these wrappers first.
    let name = hf.replace("language_model.", "").replace("text_model.", "");
    let (stem, suffix) = if let Some(s) = name.strip_suffix(".weight") {
        (s, ".weight")
    } else if let Some(s) = name.strip_suffix(".bias") {
        (s, ".bias")
    } else {
        (name.as_str(), "")
    };
    let top = match stem {
        "model.embed_tokens" => Some("token_embd"),
        "model.norm" => Some("output_norm"),
        "lm_head" => Some("output"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(format!("{t}{suffix}"));
    }
    let rest = stem.strip_prefix("model.layers.")?;
    let (bid, part) = rest.split_once('.')?;
    if bid.is_empty() || !bid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bid: u32 = bid.parse().ok()?;
    let t = match part {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{bid}.{t}{suffix}"))
}

/// llama.cpp's `LlamaModel.permute` as a row map: output row `r` of a q or k projection with
/// `n_head` heads takes input row `perm_row(r, ...)`. Within each head, HF keeps the two halves
/// rotated together apart (`[x0..x_{d/2}, y0..y_{d/2}]`); llama.cpp's adjacent-pair RoPE wants
/// them interleaved (`[x0, y0, x1, y1, ...]`).
pub fn perm_row(r: usize, rows: usize, n_head: usize) -> usize {
    let hd = rows / n_head;
    let half = hd / 2;
    let (h, within) = (r / hd, r % hd);
    let (j, i) = (within / 2, within % 2);
    h * hd + i * half + j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_like_llama_cpp() {
        assert_eq!(map_name("model.embed_tokens.weight").as_deref(), Some("token_embd.weight"));
        assert_eq!(map_name("lm_head.weight").as_deref(), Some("output.weight"));
        assert_eq!(map_name("model.layers.12.self_attn.k_proj.bias").as_deref(), Some("blk.12.attn_k.bias"));
        assert_eq!(map_name("model.layers.0.mlp.down_proj.weight").as_deref(), Some("blk.0.ffn_down.weight"));
        assert_eq!(map_name("model.layers.x.mlp.down_proj.weight"), None);
        assert_eq!(map_name("model.layers.0.mlp.experts.0.w1.weight"), None);
    }

    #[test]
    fn permutation_matches_reshape_swapaxes() {
        // reshape(n_head, 2, hd/2, cols).swapaxes(1, 2): output (h, j, i) <- input (h, i, j).
        let (rows, nh) = (24, 3);
        let hd = rows / nh;
        let mut expect = Vec::new();
        for h in 0..nh {
            for j in 0..hd / 2 {
                for i in 0..2 {
                    expect.push(h * hd + i * (hd / 2) + j);
                }
            }
        }
        let got: Vec<usize> = (0..rows).map(|r| perm_row(r, rows, nh)).collect();
        assert_eq!(got, expect);
    }
}

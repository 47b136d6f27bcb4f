//! Tokenizer built from GGUF metadata (`tokenizer.ggml.*`), encoding with the `tokenizers` crate.
//!
//! * `gpt2`: byte-level BPE from `tokens` + `merges`, pre-split by the regexes llama.cpp uses for
//!   the `tokenizer.ggml.pre` name (llama.cpp `llm_tokenizer_bpe`).
//! * `llama`: SentencePiece BPE from `tokens` + `scores`; merges are derived from the scores (a
//!   pair merges when its concatenation is a token; higher score first), spaces become `▁`, a
//!   leading `▁` is added when `add_space_prefix`, unknown bytes fall back to `<0xXX>` tokens.
//!
//! Control and user-defined tokens (`token_type` 3 and 4) are recognised in the input text as
//! whole tokens (llama.cpp's `parse_special = true`). Decoding maps each token back to bytes.

use std::collections::HashMap;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormSeq};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::config::{meta_bool, meta_str, meta_usize};
use super::{Meta, ModelSource};
use crate::error::{Error, Result};

/// Which tokenizer family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Byte-level BPE (`gpt2`).
    Gpt2,
    /// SentencePiece BPE (`llama`).
    Spm,
}

const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;
const TOKEN_TYPE_BYTE: i64 = 6;

/// Tokenizer: text ↔ token ids.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    kind: Kind,
    /// Token strings by id.
    tokens: Vec<String>,
    token_types: Vec<i64>,
    /// Bytes of each token (for decoding).
    bytes: Vec<Vec<u8>>,
    /// BOS id.
    pub bos: Option<u32>,
    /// EOS id.
    pub eos: Option<u32>,
    /// End-of-turn id, if the model names one.
    pub eot: Option<u32>,
    /// Whether [`Tokenizer::encode`] with `add_special` prepends BOS.
    pub add_bos: bool,
    /// Whether [`Tokenizer::encode`] with `add_special` appends EOS
    /// (`tokenizer.ggml.add_eos_token`, as llama.cpp's tokenizer does).
    pub add_eos: bool,
    /// The chat template (`tokenizer.chat_template`), if any.
    pub chat_template: Option<String>,
}

/// Pre-tokenizer regexes for a `tokenizer.ggml.pre` name (llama.cpp `llm_tokenizer_bpe`).
fn pre_regexes(pre: &str) -> Result<Vec<&'static str>> {
    const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
    const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Ok(match pre {
        "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" | "trillion" => vec![GPT2],
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => vec![r"\p{N}", GPT2],
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => vec![LLAMA3],
        "qwen2" | "stablelm2" | "hunyuan" => vec![QWEN2],
        other => {
            return Err(Error::value(format!(
                "tokenizer pre-tokenizer {other:?} is not supported (known: default, gpt2, smollm, starcoder, llama3, qwen2, ...)"
            )))
        }
    })
}

/// GPT-2's byte → printable char table, reversed (char → byte).
fn byte_decoder() -> HashMap<char, u8> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.iter().zip(&cs).filter_map(|(&b, &c)| char::from_u32(c).map(|ch| (ch, b as u8))).collect()
}

fn bpe_vocab(v: &HashMap<String, u32>) -> tokenizers::models::bpe::Vocab {
    v.iter().map(|(k, &i)| (k.clone(), i)).collect()
}

fn str_array(src: &dyn ModelSource, key: &str) -> Result<Option<Vec<String>>> {
    match src.meta(key) {
        None => Ok(None),
        Some(Meta::StrArr(v)) => Ok(Some(v)),
        Some(other) => Err(Error::value(format!("metadata {key} should be a string array, found {}", short(&other)))),
    }
}

fn short(m: &Meta) -> String {
    let s = format!("{m:?}");
    s.chars().take(60).collect()
}

fn token_id(src: &dyn ModelSource, key: &str, n: usize) -> Result<Option<u32>> {
    match meta_usize(src, key) {
        Ok(Some(v)) if v < n => Ok(Some(v as u32)),
        Ok(Some(_)) => Ok(None), // llama.cpp also ignores out-of-range ids (e.g. -1 written as u32::MAX)
        Ok(None) => Ok(None),
        Err(_) => Ok(None),
    }
}

impl Tokenizer {
    /// Build from metadata.
    pub fn from_source(src: &dyn ModelSource) -> Result<Tokenizer> {
        let model = meta_str(src, "tokenizer.ggml.model")?.ok_or_else(|| Error::value("model has no tokenizer.ggml.model"))?;
        let kind = match model.as_str() {
            "gpt2" => Kind::Gpt2,
            "llama" => Kind::Spm,
            other => return Err(Error::value(format!("tokenizer model {other:?} is not supported (gpt2, llama)"))),
        };
        let tokens = str_array(src, "tokenizer.ggml.tokens")?.ok_or_else(|| Error::value("model has no tokenizer.ggml.tokens"))?;
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::value("tokenizer.ggml.tokens is empty or too long"));
        }
        let token_types = match src.meta("tokenizer.ggml.token_type") {
            Some(Meta::IntArr(v)) if v.len() == n => v,
            Some(_) => return Err(Error::value("tokenizer.ggml.token_type does not have one integer per token")),
            None => vec![1; n],
        };
        let vocab: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let is_special = |i: usize| matches!(token_types[i], TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED);

        let (mut inner, bytes) = match kind {
            Kind::Gpt2 => {
                let merges_raw =
                    str_array(src, "tokenizer.ggml.merges")?.ok_or_else(|| Error::value("gpt2 tokenizer has no tokenizer.ggml.merges"))?;
                let mut merges = Vec::with_capacity(merges_raw.len());
                for m in &merges_raw {
                    let (a, b) = m
                        .split_once(' ')
                        .ok_or_else(|| Error::value(format!("tokenizer merge {m:?} is not two tokens separated by a space")))?;
                    merges.push((a.to_string(), b.to_string()));
                }
                let bpe = BPE::builder()
                    .vocab_and_merges(bpe_vocab(&vocab), merges)
                    .build()
                    .map_err(|e| Error::value(format!("cannot build the BPE tokenizer: {e}")))?;
                let pre = meta_str(src, "tokenizer.ggml.pre")?.unwrap_or_else(|| "default".to_string());
                let mut seq: Vec<PreTokenizerWrapper> = Vec::new();
                for re in pre_regexes(&pre)? {
                    let split = Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false)
                        .map_err(|e| Error::value(format!("bad pre-tokenizer regex: {e}")))?;
                    seq.push(split.into());
                }
                seq.push(ByteLevel::new(false, false, false).into());
                let mut t = tokenizers::Tokenizer::new(bpe);
                t.with_pre_tokenizer(Some(Sequence::new(seq)));
                t.with_decoder(Some(ByteLevelDecoder::default()));
                let dec = byte_decoder();
                let bytes = tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        if is_special(i) {
                            t.as_bytes().to_vec()
                        } else {
                            t.chars().flat_map(|c| dec.get(&c).copied().map(|b| vec![b]).unwrap_or_else(|| c.to_string().into_bytes())).collect()
                        }
                    })
                    .collect();
                (t, bytes)
            }
            Kind::Spm => {
                let scores = match src.meta("tokenizer.ggml.scores") {
                    Some(Meta::FloatArr(v)) if v.len() == n => v,
                    _ => return Err(Error::value("llama tokenizer needs tokenizer.ggml.scores with one value per token")),
                };
                // Derived merges: every split of a normal token into two tokens, best merged score first.
                let mut merges: Vec<(f32, u32, String, String)> = Vec::new();
                for (id, t) in tokens.iter().enumerate() {
                    if token_types[id] != 1 {
                        continue;
                    }
                    for (pos, _) in t.char_indices().skip(1) {
                        let (a, b) = t.split_at(pos);
                        if vocab.contains_key(a) && vocab.contains_key(b) {
                            merges.push((scores[id], id as u32, a.to_string(), b.to_string()));
                        }
                    }
                }
                merges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
                let merges = merges.into_iter().map(|(_, _, a, b)| (a, b)).collect();
                let mut builder = BPE::builder().vocab_and_merges(bpe_vocab(&vocab), merges).byte_fallback(true);
                if let Some(unk) = token_id(src, "tokenizer.ggml.unknown_token_id", n)? {
                    builder = builder.unk_token(tokens[unk as usize].clone());
                }
                let bpe = builder.build().map_err(|e| Error::value(format!("cannot build the BPE tokenizer: {e}")))?;
                let mut t = tokenizers::Tokenizer::new(bpe);
                let mut norms: Vec<NormalizerWrapper> = Vec::new();
                if meta_bool(src, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true) {
                    norms.push(Prepend::new("▁".to_string()).into());
                }
                norms.push(Replace::new(" ", "▁").map_err(|e| Error::value(e.to_string()))?.into());
                t.with_normalizer(Some(NormSeq::new(norms)))
                    .map_err(|e| Error::value(format!("cannot build the tokenizer normalizer: {e}")))?;
                let bytes = tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        if token_types[i] == TOKEN_TYPE_BYTE {
                            if let Some(b) = t.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                                return vec![b];
                            }
                        }
                        t.replace('▁', " ").into_bytes()
                    })
                    .collect();
                (t, bytes)
            }
        };
        let specials: Vec<AddedToken> = (0..n)
            .filter(|&i| is_special(i))
            .map(|i| AddedToken::from(tokens[i].clone(), token_types[i] == TOKEN_TYPE_CONTROL).normalized(false))
            .collect();
        inner.add_special_tokens(specials).map_err(|e| Error::value(format!("cannot add special tokens: {e}")))?;
        let bos = token_id(src, "tokenizer.ggml.bos_token_id", n)?;
        let eos = token_id(src, "tokenizer.ggml.eos_token_id", n)?;
        let eot = token_id(src, "tokenizer.ggml.eot_token_id", n)?;
        let add_bos = meta_bool(src, "tokenizer.ggml.add_bos_token")?.unwrap_or(kind == Kind::Spm) && bos.is_some();
        let add_eos = meta_bool(src, "tokenizer.ggml.add_eos_token")?.unwrap_or(false) && eos.is_some();
        let chat_template = meta_str(src, "tokenizer.chat_template").ok().flatten();
        Ok(Tokenizer { inner, kind, tokens, token_types, bytes, bos, eos, eot, add_bos, add_eos, chat_template })
    }

    /// Tokenizer family.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }

    /// The token string of `id`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Whether `id` is a control token (BOS, EOS, `<|im_start|>`...).
    pub fn is_control(&self, id: u32) -> bool {
        self.token_types.get(id as usize) == Some(&TOKEN_TYPE_CONTROL)
    }

    /// Encode `text`; special tokens written in the text are parsed. With `add_special`, BOS is
    /// prepended and EOS appended when the model asks for them (`tokenizer.ggml.add_bos_token`,
    /// `add_eos_token`).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| Error::value(format!("tokenization failed: {e}")))?;
        let mut ids = Vec::with_capacity(enc.get_ids().len() + 2);
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        if add_special && self.add_eos {
            ids.extend(self.eos);
        }
        Ok(ids)
    }

    /// The bytes token `id` stands for (empty for an unknown id).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Decode ids to text (invalid UTF-8 becomes U+FFFD). Control tokens are written out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut out = Vec::new();
        for &id in ids {
            if id as usize >= self.tokens.len() {
                return Err(Error::value(format!("token id {id} is outside the vocabulary of {} tokens", self.tokens.len())));
            }
            out.extend_from_slice(self.token_bytes(id));
        }
        if self.kind == Kind::Spm && out.first() == Some(&b' ') && ids.first() != self.bos.as_ref() {
            out.remove(0);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Turns a stream of token byte strings into valid UTF-8 pieces, holding back an incomplete
/// multi-byte character until its remaining bytes arrive.
#[derive(Default, Debug)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Add bytes; return the text that is complete so far.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let s = s.to_string();
                self.pending.clear();
                s
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // An invalid sequence (not just an incomplete tail) is emitted lossily.
                let cut = if e.error_len().is_some() { self.pending.len() } else { valid };
                let out = String::from_utf8_lossy(&self.pending[..cut]).into_owned();
                self.pending.drain(..cut);
                out
            }
        }
    }

    /// Whatever is left (lossily).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// Render a chat template (Jinja, as in `tokenizer.chat_template`) with `messages`
/// (`{"role": ..., "content": ...}` maps), `add_generation_prompt`, `bos_token`, `eos_token`.
pub fn render_chat(
    template: &str,
    messages: &[std::collections::HashMap<String, String>],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env.add_template("chat", template).map_err(|e| Error::value(format!("invalid chat template: {e}")))?;
    let tpl = env.get_template("chat").map_err(|e| Error::value(format!("invalid chat template: {e}")))?;
    let msgs: Vec<minijinja::Value> = messages
        .iter()
        .map(|m| {
            let map: std::collections::BTreeMap<String, minijinja::Value> =
                m.iter().map(|(k, v)| (k.clone(), minijinja::Value::from(v.as_str()))).collect();
            minijinja::Value::from(map)
        })
        .collect();
    let ctx = minijinja::context! {
        messages => minijinja::Value::from(msgs),
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    };
    tpl.render(ctx).map_err(|e| Error::value(format!("chat template failed: {e}")))
}

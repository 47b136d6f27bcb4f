//! Tokenizer metadata from `tokenizer.json` / `tokenizer_config.json`, as llama.cpp's converter
//! writes it for byte-level BPE ("gpt2") vocabularies (`_set_vocab_gpt2`, gguf-py `SpecialVocab`).
//!
//! SentencePiece vocabularies (`tokenizer.model`) become `llama` vocabularies as llama.cpp's
//! `_set_vocab_sentencepiece` writes them (tokens, scores and types from [`super::spm`], then the
//! same `SpecialVocab` keys). A `tokenizer.json` with byte-fallback BPE and no `tokenizer.model`
//! (llama.cpp's `LlamaHfVocab` path) is still reported as unsupported.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use super::hf::{read_json, HfConfig};
use super::pre_hashes::{CHECK_TEXT, PRE_HASHES};
use super::spm;
use super::Kv;
use crate::error::{Error, Result};
use crate::gguf::{Array, Value};

use spm::{CONTROL, NORMAL, UNUSED, USER_DEFINED};

/// Pre-tokenizer regexes as Hugging Face tokenizers write them in `tokenizer.json`.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One entry of `added_tokens`.
struct Added {
    id: u32,
    content: String,
    special: bool,
    normalized: bool,
}

fn obj<'a>(v: &'a Json, key: &str) -> Option<&'a Map<String, Json>> {
    v.get(key).and_then(Json::as_object)
}

/// Append the tokenizer keys for the model in `dir` to `kv`.
pub(crate) fn add_tokenizer(kv: &mut Kv, dir: &Path, cfg: &HfConfig, pre_override: Option<&str>) -> Result<()> {
    let tc_path = dir.join("tokenizer_config.json");
    let tokenizer_config = if tc_path.is_file() { Some(read_json(&tc_path)?) } else { None };
    if cfg.arch.permutes_qk() {
        // LlamaModel.set_vocab records add_prefix_space before anything else.
        if let Some(b) = tokenizer_config.as_ref().and_then(|t| t.get("add_prefix_space")).and_then(Json::as_bool) {
            kv.set("tokenizer.ggml.add_space_prefix", Value::Bool(b));
        }
    }
    let tj_path = dir.join("tokenizer.json");
    if dir.join("tokenizer.model").is_file() {
        return add_sentencepiece(kv, dir, cfg, tokenizer_config, &tj_path);
    }
    if !tj_path.is_file() {
        return Err(Error::value(format!("{}: tokenizer.json is missing (needed for the vocabulary)", dir.display())));
    }
    let tj = read_json(&tj_path)?;
    let model = obj(&tj, "model").ok_or_else(|| Error::value(format!("{}: key \"model\" is missing", tj_path.display())))?;
    let mtype = model.get("type").and_then(Json::as_str).unwrap_or("");
    let byte_fallback = model.get("byte_fallback").and_then(Json::as_bool);
    let ignore_merges = model.get("ignore_merges").and_then(Json::as_bool).unwrap_or(false);
    let is_llama3 = mtype == "BPE" && ignore_merges && !byte_fallback.unwrap_or(true);
    let decoder_seq = tj.get("decoder").and_then(|d| d.get("type")).and_then(Json::as_str) == Some("Sequence");
    if cfg.arch.permutes_qk() && !is_llama3 && mtype == "BPE" && byte_fallback == Some(true) && decoder_seq {
        return Err(Error::value(format!(
            "{}: a SentencePiece-style BPE vocabulary (byte_fallback) is converted by llama.cpp as a \
             \"llama\" tokenizer, which kquants convert does not support yet",
            tj_path.display()
        )));
    }
    if mtype != "BPE" {
        return Err(Error::value(format!(
            "{}: tokenizer model type {mtype:?} is not supported (byte-level BPE only)",
            tj_path.display()
        )));
    }

    // --- tokens (get_vocab_base) ---
    let Some(Json::Object(vocab)) = model.get("vocab") else {
        return Err(Error::value(format!("{}: key \"model.vocab\" is missing or not an object", tj_path.display())));
    };
    let mut by_id: HashMap<u32, String> = HashMap::with_capacity(vocab.len());
    for (tok, id) in vocab {
        let id = id
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| Error::value(format!("{}: model.vocab[{tok:?}] is not a token id", tj_path.display())))?;
        by_id.insert(id, tok.clone());
    }
    let mut added: Vec<Added> = Vec::new();
    if let Some(list) = tj.get("added_tokens").and_then(Json::as_array) {
        for (i, a) in list.iter().enumerate() {
            let id = a.get("id").and_then(Json::as_u64).and_then(|i| u32::try_from(i).ok());
            let content = a.get("content").and_then(Json::as_str);
            let (Some(id), Some(content)) = (id, content) else {
                return Err(Error::value(format!("{}: added_tokens[{i}] lacks an id or content", tj_path.display())));
            };
            by_id.insert(id, content.to_owned());
            added.push(Added {
                id,
                content: content.to_owned(),
                special: a.get("special").and_then(Json::as_bool).unwrap_or(false),
                normalized: a.get("normalized").and_then(Json::as_bool).unwrap_or(true),
            });
        }
    }
    let max_id = by_id.keys().copied().max().ok_or_else(|| Error::value(format!("{}: the vocabulary is empty", tj_path.display())))?;
    let vocab_size = match cfg.find_u32(&["vocab_size"])? {
        Some(v) => v as usize,
        None => by_id.len(),
    };
    if max_id as usize >= vocab_size {
        return Err(Error::value(format!(
            "{}: token id {max_id} is not below vocab_size {vocab_size} ({})",
            tj_path.display(),
            cfg.path.display()
        )));
    }
    let added_by_id: HashMap<u32, &Added> = added.iter().map(|a| (a.id, a)).collect();
    let mut tokens: Vec<String> = Vec::with_capacity(vocab_size);
    let mut types: Vec<i32> = Vec::with_capacity(vocab_size);
    for i in 0..vocab_size as u32 {
        match by_id.get(&i) {
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(UNUSED);
            }
            Some(tok) => match added_by_id.get(&i) {
                Some(a) if a.special || looks_special(tok) => {
                    tokens.push(tok.clone());
                    types.push(CONTROL);
                }
                Some(a) => {
                    // llama.cpp re-encodes non-normalized added tokens through the HF tokenizer
                    // (a no-op for byte-level vocabularies) and writes user spaces as spaces.
                    let _ = a.normalized;
                    tokens.push(tok.replace('\u{2581}', " "));
                    types.push(USER_DEFINED);
                }
                None => {
                    tokens.push(tok.clone());
                    types.push(NORMAL);
                }
            },
        }
    }
    let pre = match pre_override {
        Some(p) => p.to_owned(),
        None => detect_pre(&tj_path, &tj)?,
    };
    kv.set("tokenizer.ggml.model", Value::from("gpt2"));
    kv.set("tokenizer.ggml.pre", Value::from(pre.as_str()));
    kv.set("tokenizer.ggml.tokens", Value::Array(Array::from_strs(&tokens)));
    kv.set("tokenizer.ggml.token_type", Value::Array(Array::from_slice(&types)));

    // --- SpecialVocab(load_merges=True) ---
    let merges = merges(&tj_path, model)?;
    if !merges.is_empty() {
        kv.set("tokenizer.ggml.merges", Value::Array(Array::from_strs(&merges)));
    }
    let special = special_vocab(Some(&tj), tokenizer_config, &added, dir, None)?;
    special.write(kv);
    granite_no_bos(kv, cfg)
}

/// LlamaModel.set_vocab: granite-small style vocabularies never get a BOS.
fn granite_no_bos(kv: &mut Kv, cfg: &HfConfig) -> Result<()> {
    if cfg.arch.permutes_qk() && cfg.find_u32(&["vocab_size"])?.unwrap_or(32000) == 49152 {
        kv.set("tokenizer.ggml.add_bos_token", Value::Bool(false));
    }
    Ok(())
}

/// `_set_vocab_sentencepiece`: the `llama` vocabulary from `tokenizer.model`, then
/// `SpecialVocab(dir, n_vocab=len(tokens))` (no merges), which still reads `tokenizer.json`'s
/// post-processor, normalizer and added tokens when that file exists.
fn add_sentencepiece(kv: &mut Kv, dir: &Path, cfg: &HfConfig, tokenizer_config: Option<Json>, tj_path: &Path) -> Result<()> {
    let v = spm::create_vocab(dir, cfg, looks_special)?;
    kv.set("tokenizer.ggml.model", Value::from("llama"));
    kv.set("tokenizer.ggml.pre", Value::from("default"));
    kv.set("tokenizer.ggml.tokens", Value::Array(Array::from_strs(&v.tokens)));
    kv.set("tokenizer.ggml.scores", Value::Array(Array::from_slice(&v.scores)));
    kv.set("tokenizer.ggml.token_type", Value::Array(Array::from_slice(&v.types)));
    let tj = if tj_path.is_file() { Some(read_json(tj_path)?) } else { None };
    // SpecialVocab only looks the added tokens up by content (entries without both are skipped).
    let added: Vec<Added> = tj
        .as_ref()
        .and_then(|t| t.get("added_tokens"))
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let id = a.get("id").and_then(Json::as_u64).and_then(|i| u32::try_from(i).ok())?;
            let content = a.get("content").and_then(Json::as_str)?.to_owned();
            Some(Added { id, content, special: false, normalized: false })
        })
        .collect();
    let special = special_vocab(tj.as_ref(), tokenizer_config, &added, dir, Some(v.tokens.len()))?;
    special.write(kv);
    granite_no_bos(kv, cfg)
}

/// llama.cpp's `does_token_look_special`.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// `model.merges` as "left right" strings (the pair form's spaces become U+0120, as gguf-py does).
fn merges(path: &Path, model: &Map<String, Json>) -> Result<Vec<String>> {
    let Some(Json::Array(list)) = model.get("merges") else { return Ok(Vec::new()) };
    let bad = || Error::value(format!("{}: unknown tokenizer merges format", path.display()));
    match list.first() {
        None => Ok(Vec::new()),
        Some(Json::String(_)) => list.iter().map(|m| m.as_str().map(str::to_owned).ok_or_else(bad)).collect(),
        Some(Json::Array(_)) => list
            .iter()
            .map(|m| {
                let pair = m.as_array().filter(|p| p.len() == 2).ok_or_else(bad)?;
                let enc = |v: &Json| v.as_str().map(|s| s.replace(' ', "\u{120}")).ok_or_else(bad);
                Ok(format!("{} {}", enc(&pair[0])?, enc(&pair[1])?))
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// The pre-tokenizer name: llama.cpp's fingerprint (sha256 of the check text's token ids) when
/// the HF tokenizer loads and the hash is known, else the pre-tokenizer's structure.
fn detect_pre(path: &Path, tj: &Json) -> Result<String> {
    if let Some(name) = pre_by_hash(path) {
        return Ok(name.to_owned());
    }
    let parts: Vec<&Json> = match tj.get("pre_tokenizer") {
        Some(p) if p.get("type").and_then(Json::as_str) == Some("Sequence") => {
            p.get("pretokenizers").and_then(Json::as_array).map(|v| v.iter().collect()).unwrap_or_default()
        }
        Some(Json::Null) | None => Vec::new(),
        Some(p) => vec![p],
    };
    let kind = |j: &Json| j.get("type").and_then(Json::as_str).unwrap_or("").to_owned();
    let byte_level = |j: &Json, regex: bool| {
        kind(j) == "ByteLevel" && j.get("use_regex").and_then(Json::as_bool).unwrap_or(true) == regex
    };
    let split_re = |j: &Json| -> Option<String> {
        (kind(j) == "Split").then(|| j.get("pattern").and_then(|p| p.get("Regex")).and_then(Json::as_str).map(str::to_owned))?
    };
    let name = match parts.as_slice() {
        [s, b] if byte_level(b, false) && split_re(s).as_deref() == Some(LLAMA3_SPLIT) => Some("llama-bpe"),
        [s, b] if byte_level(b, false) && split_re(s).as_deref() == Some(QWEN2_SPLIT) => Some("qwen2"),
        [d, b]
            if kind(d) == "Digits"
                && d.get("individual_digits").and_then(Json::as_bool) == Some(true)
                && byte_level(b, true) =>
        {
            Some("smollm")
        }
        [b] if byte_level(b, true) => Some("gpt-2"),
        _ => None,
    };
    name.map(str::to_owned).ok_or_else(|| {
        Error::value(format!(
            "{}: the BPE pre-tokenizer was not recognized (neither by llama.cpp's fingerprint nor by its \
             pattern); pass tokenizer_pre= (e.g. \"default\", \"llama-bpe\", \"qwen2\", \"smollm\", \"gpt-2\") \
             to choose one",
            path.display()
        ))
    })
}

/// llama.cpp's fingerprint: encode the check text with special tokens, sha256 of `str(ids)`.
fn pre_by_hash(path: &Path) -> Option<&'static str> {
    // The HF tokenizer library parses an untrusted file here; should it panic rather than return
    // an error, fall back to the pattern detection instead of letting the panic reach Python.
    std::panic::catch_unwind(|| pre_by_hash_inner(path)).ok().flatten()
}

fn pre_by_hash_inner(path: &Path) -> Option<&'static str> {
    let tok = tokenizers::Tokenizer::from_file(path).ok()?;
    let enc = tok.encode(CHECK_TEXT, true).ok()?;
    let ids: Vec<String> = enc.get_ids().iter().map(|i| i.to_string()).collect();
    let text = format!("[{}]", ids.join(", "));
    let hash = Sha256::digest(text.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    PRE_HASHES.iter().find(|(h, _)| *h == hex).map(|(_, n)| *n)
}

/// What gguf-py's `SpecialVocab` collects.
#[derive(Default)]
struct Special {
    /// Ids at or above this are skipped (`SpecialVocab(n_vocab=...)`).
    n_vocab: Option<usize>,
    ids: Vec<(String, u32)>,
    add: Vec<(String, bool)>,
    chat_template: Option<Json>,
    lowercase: Option<bool>,
    strip_accents: Option<bool>,
}

impl Special {
    fn set_id(&mut self, typ: &str, id: Option<&Json>) -> Result<()> {
        let Some(id) = id else { return Ok(()) };
        let Some(n) = id.as_i64() else { return Ok(()) };
        if n < 0 {
            return Err(Error::value(format!("invalid value for special token type {typ}: {n}")));
        }
        let Ok(n) = u32::try_from(n) else { return Ok(()) };
        if self.n_vocab.is_some_and(|nv| n as usize >= nv) {
            return Ok(()); // out of range: skipped with a warning there
        }
        if !self.ids.iter().any(|(t, _)| t == typ) {
            self.ids.push((typ.to_owned(), n));
        }
        Ok(())
    }
    fn set_add(&mut self, typ: &str, on: bool, overwrite: bool) {
        match self.add.iter_mut().find(|(t, _)| t == typ) {
            Some(e) if overwrite => e.1 = on,
            Some(_) => {}
            None => self.add.push((typ.to_owned(), on)),
        }
    }
    /// gguf-py `SpecialVocab.add_to_gguf` (merges are written by the caller).
    fn write(self, kv: &mut Kv) {
        for (typ, id) in &self.ids {
            if let Some(key) = id_key(typ) {
                kv.set(key, Value::U32(*id));
            }
        }
        for (typ, on) in &self.add {
            if let Some(key) = add_key(typ) {
                kv.set(key, Value::Bool(*on));
            }
        }
        match self.chat_template {
            Some(Json::String(s)) => kv.set("tokenizer.chat_template", Value::String(s)),
            Some(Json::Array(list)) => add_chat_templates(kv, &list),
            _ => {}
        }
        if let Some(b) = self.lowercase {
            kv.set("tokenizer.ggml.normalizer.lowercase", Value::Bool(b));
        }
        if let Some(b) = self.strip_accents {
            kv.set("tokenizer.ggml.normalizer.strip_accents", Value::Bool(b));
        }
    }

    fn parse_normalizer(&mut self, n: &Json) {
        match n.get("type").and_then(Json::as_str) {
            Some("Lowercase") => self.lowercase = Some(true),
            Some("StripAccents") => self.strip_accents = Some(true),
            Some("BertNormalizer") => {
                if let Some(b) = n.get("lowercase").and_then(Json::as_bool) {
                    self.lowercase = Some(b);
                }
                if let Some(b) = n.get("strip_accents").and_then(Json::as_bool) {
                    self.strip_accents = Some(b);
                }
            }
            Some("Sequence") => {
                for m in n.get("normalizers").and_then(Json::as_array).into_iter().flatten() {
                    self.parse_normalizer(m);
                }
            }
            _ => {}
        }
    }
}

fn token_content(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_owned),
        _ => None,
    }
}

/// gguf-py `SpecialVocab._try_load_from_tokenizer_json` + `_try_load_from_config_json` (the
/// single-sequence part of `TemplateProcessing`; pair templates and separators are not read).
fn special_vocab(
    tj: Option<&Json>,
    tokenizer_config: Option<Json>,
    added: &[Added],
    dir: &Path,
    n_vocab: Option<usize>,
) -> Result<Special> {
    let mut s = Special { n_vocab, ..Special::default() };
    let mut types: Vec<&str> = vec!["bos", "eos", "unk", "sep", "pad", "cls", "mask"];
    if let Some(n) = tj.and_then(|t| t.get("normalizer")).filter(|n| !n.is_null()) {
        s.parse_normalizer(n);
    }
    let mut tc: Option<Map<String, Json>> = tokenizer_config.and_then(|t| match t {
        Json::Object(o) => Some(o),
        _ => None,
    });
    let get = |tc: &Option<Map<String, Json>>, k: &str| tc.as_ref().and_then(|t| token_content(t.get(k)));
    let mut special_bos = get(&tc, "bos_token");
    let mut special_cls = get(&tc, "cls_token");
    let mut special_eos = get(&tc, "eos_token");
    let special_sep = get(&tc, "sep_token");
    if special_bos.is_none() && special_cls.is_some() {
        if let Some(t) = tc.as_mut() {
            t.insert("bos_token".into(), Json::String(special_cls.clone().unwrap_or_default()));
            special_bos = special_cls.clone();
        }
    }
    if special_eos.is_none() && special_sep.is_some() {
        if let Some(t) = tc.as_mut() {
            t.insert("eos_token".into(), Json::String(special_sep.clone().unwrap_or_default()));
            special_eos = special_sep.clone();
        }
    }
    if let Some(pp) = tj.and_then(|t| t.get("post_processor")).filter(|p| !p.is_null()) {
        let procs: Vec<&Json> = match pp.get("processors").and_then(Json::as_array) {
            Some(list) => list.iter().collect(),
            None => vec![pp],
        };
        for p in procs {
            match p.get("type").and_then(Json::as_str) {
                Some("ByteLevel") => {
                    s.set_add("bos", false, false);
                    s.set_add("eos", false, false);
                }
                Some("RobertaProcessing") => {
                    s.set_add("bos", true, true);
                    s.set_add("eos", true, true);
                    s.set_add("sep", true, true);
                }
                Some("TemplateProcessing") => {
                    let single = p.get("single").and_then(Json::as_array).cloned().unwrap_or_default();
                    if single.len() > 1 {
                        let sp = |j: Option<&Json>| {
                            j.and_then(|x| x.get("SpecialToken")).and_then(|x| x.get("id")).and_then(Json::as_str).map(str::to_owned)
                        };
                        if let Some(first) = sp(single.first()).filter(|f| !f.is_empty()) {
                            if tc.is_none() {
                                special_bos = Some(first.clone());
                            } else if Some(&first) != special_bos.as_ref() && Some(&first) != special_cls.as_ref() {
                                if let Some(t) = tc.as_mut() {
                                    if special_bos.is_none() {
                                        t.insert("bos_token".into(), Json::String(first.clone()));
                                        special_bos = Some(first.clone());
                                    }
                                    if special_cls.is_none() {
                                        t.insert("cls_token".into(), Json::String(first.clone()));
                                        special_cls = Some(first.clone());
                                    }
                                }
                            }
                            let is_bos = Some(&first) == special_bos.as_ref() || Some(&first) == special_cls.as_ref();
                            s.set_add("bos", is_bos, true);
                        }
                        if let Some(last) = sp(single.last()).filter(|f| !f.is_empty()) {
                            if tc.is_none() {
                                special_eos = Some(last.clone());
                            } else if Some(&last) != special_eos.as_ref() {
                                let old = special_eos.clone().map(Json::String).unwrap_or(Json::Null);
                                if let Some(t) = tc.as_mut() {
                                    if !types.contains(&"eot") {
                                        types.push("eot");
                                        t.insert("eot_token".into(), old);
                                    } else if !types.contains(&"eom") {
                                        types.push("eom");
                                        t.insert("eom_token".into(), old);
                                    }
                                    t.insert("eos_token".into(), Json::String(last.clone()));
                                }
                                special_eos = Some(last.clone());
                            }
                            s.set_add("eos", Some(&last) == special_eos.as_ref(), true);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(tc) = &tc {
        let jinja = dir.join("chat_template.jinja");
        let json = dir.join("chat_template.json");
        let alt = if jinja.is_file() {
            Some(Json::String(
                std::fs::read_to_string(&jinja).map_err(|e| Error::io(format!("reading {}", jinja.display()), e))?,
            ))
        } else if json.is_file() {
            read_json(&json)?.get("chat_template").cloned()
        } else {
            None
        };
        s.chat_template = match tc.get("chat_template") {
            Some(t) => Some(t.clone()),
            None => alt,
        };
        for typ in &types {
            if let Some(b) = tc.get(&format!("add_{typ}_token")).and_then(Json::as_bool) {
                s.set_add(typ, b, false);
            }
            let Some(content) = token_content(tc.get(&format!("{typ}_token"))) else { continue };
            let id = added.iter().find(|a| a.content == content).map(|a| Json::from(a.id));
            s.set_id(typ, id.as_ref())?;
        }
    }
    let cfg_path = dir.join("config.json");
    if cfg_path.is_file() {
        let cfg = read_json(&cfg_path)?;
        for typ in &types {
            let key = format!("{typ}_token_id");
            let v = cfg.get(&key).filter(|v| !v.is_null()).or_else(|| cfg.get("text_config").and_then(|t| t.get(&key)));
            s.set_id(typ, v)?;
        }
    }
    Ok(s)
}

fn id_key(typ: &str) -> Option<&'static str> {
    Some(match typ {
        "bos" => "tokenizer.ggml.bos_token_id",
        "eos" => "tokenizer.ggml.eos_token_id",
        "unk" => "tokenizer.ggml.unknown_token_id",
        "sep" => "tokenizer.ggml.seperator_token_id",
        "pad" => "tokenizer.ggml.padding_token_id",
        "mask" => "tokenizer.ggml.mask_token_id",
        "eot" => "tokenizer.ggml.eot_token_id",
        "eom" => "tokenizer.ggml.eom_token_id",
        // gguf-py's writer has no handler for cls and skips it.
        _ => return None,
    })
}

fn add_key(typ: &str) -> Option<&'static str> {
    Some(match typ {
        "bos" => "tokenizer.ggml.add_bos_token",
        "eos" => "tokenizer.ggml.add_eos_token",
        "sep" => "tokenizer.ggml.add_sep_token",
        _ => return None,
    })
}

/// gguf-py `add_chat_template` for a list of named templates.
fn add_chat_templates(kv: &mut Kv, list: &[Json]) {
    let mut default = None;
    let mut names: Vec<String> = Vec::new();
    for c in list {
        let name: String = c
            .get("name")
            .and_then(Json::as_str)
            .unwrap_or("")
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
            .collect();
        let Some(t) = c.get("template").and_then(Json::as_str) else { continue };
        if name.is_empty() {
            continue;
        }
        if name == "default" {
            default = Some(t.to_owned());
        } else {
            kv.set(&format!("tokenizer.chat_template.{name}"), Value::from(t));
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if !names.is_empty() {
        kv.set("tokenizer.chat_templates", Value::Array(Array::from_strs(&names)));
    }
    if let Some(t) = default {
        kv.set("tokenizer.chat_template", Value::String(t));
    }
}

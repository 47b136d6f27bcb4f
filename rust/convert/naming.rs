//! `general.name` and its companions (`organization`, `basename`, `finetune`, `version`,
//! `size_label`) as gguf-py's `Metadata.load` derives them for llama.cpp's converter: from
//! `config.json`'s `_name_or_path` when it looks like a model id, then from the directory name,
//! by the same heuristics (`get_model_id_components`, `id_to_title`), with the size label
//! computed from the parameter count when no name part gives one (`size_label`).
//!
//! `generation_config.json`'s sampling defaults become `general.sampling.*`, written first as
//! there. Not read: the model card (`README.md` YAML front matter: name, license, tags, base
//! models, datasets...).

use std::path::Path;

use regex::Regex;
use serde_json::Value as Json;

use super::hf::HfConfig;
use super::Kv;
use crate::gguf::Value;

/// The `general.*` naming keys (and the sampling defaults written before them).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Naming {
    pub sampling: Vec<(&'static str, Value)>,
    pub name: Option<String>,
    pub organization: Option<String>,
    pub basename: Option<String>,
    pub finetune: Option<String>,
    pub version: Option<String>,
    pub size_label: Option<String>,
}

/// What `get_model_id_components` returns: full name, organization, basename, finetune,
/// version, size label.
#[derive(Debug, Default, PartialEq)]
struct Components {
    full_name: Option<String>,
    org: Option<String>,
    basename: Option<String>,
    finetune: Option<String>,
    version: Option<String>,
    size_label: Option<String>,
}

#[derive(Default, Clone)]
struct Tags {
    basename: bool,
    size_label: bool,
    finetune: bool,
    version: bool,
    kind: bool,
}

impl Tags {
    fn is_empty(&self) -> bool {
        !(self.basename || self.size_label || self.finetune || self.version || self.kind)
    }
    fn count(&self) -> usize {
        [self.basename, self.size_label, self.finetune, self.version, self.kind].iter().filter(|b| **b).count()
    }
}

fn re(pattern: &str) -> Regex {
    // The patterns are constants of this module; a failure would be a bug caught by the tests.
    Regex::new(pattern).expect("valid regex")
}

/// Python's `float(s)` for the strings the size pattern lets through (digits with at most one
/// dot); anything else fails, as `float` would for these inputs.
fn py_float(s: &str) -> Option<f64> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    s.parse().ok()
}

/// Python's `str.isdecimal` for one character, ASCII digits only (Python also counts other
/// scripts' decimal digits).
fn is_decimal(c: char) -> bool {
    c.is_ascii_digit()
}

/// gguf-py `Metadata.get_model_id_components`.
fn components(model_id: &str, total_params: i64) -> Components {
    if model_id.contains(' ') {
        return Components { full_name: Some(model_id.to_owned()), ..Components::default() };
    }
    let (mut org, full) = match model_id.split_once('/') {
        Some((o, f)) => (Some(o.to_owned()), f.to_owned()),
        None => (None, model_id.to_owned()),
    };
    if org.as_deref().is_some_and(|o| o.starts_with('.')) {
        org = None;
    }
    let mut parts: Vec<String> = full.split('-').filter(|p| !p.is_empty()).map(str::to_owned).collect();
    let mut tags: Vec<Tags> = vec![Tags::default(); parts.len()];
    let version_re = re(r"(?i)^(?:v|iter)?\d+(?:[.]\d+)*$");
    let type_re = re(r"(?i)^(?:i?q\d(?:_\w)*|b?fp?(?:16|32))$");
    let size_re = re(r"(?i)^(?:(?:[A]|\d+[x])?\d+(?:[._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)$");
    let finetune_re = re(r"(?i)^(?:chat|instruct|vision|lora)$");
    for i in 0..parts.len() {
        let part = parts[i].clone();
        if version_re.is_match(&part) {
            tags[i].version = true;
        } else if type_re.is_match(&part) {
            tags[i].kind = true;
            parts[i] = part.to_uppercase();
        } else if i > 0 && size_re.is_match(&part) {
            let mut p: Vec<char> = part.replace('_', ".").chars().collect();
            // bloom-7b1 style: "7b1" -> "7.1b"
            if p.last().is_some_and(|&c| is_decimal(c)) && p.len() >= 2 {
                let n = p.len();
                let (a, b) = (p[n - 1], p[n - 2]);
                p.truncate(n - 2);
                p.extend(['.', a, b]);
            }
            let n = p.len();
            if n > 1 && is_decimal(p[n - 2]) && matches!(p[n - 1], 'k' | 'm' | 'b' | 't') {
                p[n - 1] = p[n - 1].to_ascii_uppercase();
            }
            if total_params != 0 {
                let head: String = p[..n - 1].iter().collect();
                if let Some(v) = py_float(&head) {
                    // " KMBT".find(last): -1 when absent, so a factor of 1/1000.
                    let exp = " KMBT".find(p[n - 1]).map_or(-1, |e| e as i32);
                    let label = v * 1000f64.powi(exp);
                    let tp = total_params as f64;
                    let context_like = (total_params < 0 && label < (total_params.abs() / 8) as f64)
                        || (total_params > 0 && (label - tp).abs() > (7 * total_params / 8) as f64);
                    if context_like {
                        tags[i].finetune = true;
                        p[n - 1] = p[n - 1].to_lowercase().next().unwrap_or(p[n - 1]);
                    }
                }
            }
            if tags[i].is_empty() {
                tags[i].size_label = true;
            }
            parts[i] = p.into_iter().collect();
        } else if i > 0 && finetune_re.is_match(&part) {
            if total_params < 0 && part.eq_ignore_ascii_case("lora") {
                tags[i].kind = true;
            } else {
                tags[i].finetune = true;
            }
        }
    }
    // Word-only size labels are dropped when a numeric one exists.
    if parts.iter().zip(&tags).any(|(n, t)| t.size_label && n.chars().any(is_decimal)) {
        for (n, t) in parts.iter().zip(tags.iter_mut()) {
            if t.size_label && n.chars().all(char::is_alphabetic) {
                t.size_label = false;
            }
        }
    }
    let mut at_start = true;
    for (part, t) in parts.iter().zip(tags.iter_mut()) {
        let alpha_first = part.chars().next().is_some_and(char::is_alphabetic);
        if at_start && ((t.is_empty() && alpha_first) || t.version) {
            t.basename = true;
        } else {
            at_start = false;
            if t.is_empty() {
                t.finetune = true;
            }
        }
    }
    for t in tags.iter_mut().rev() {
        if t.basename && t.count() > 1 {
            t.basename = false;
        } else {
            break;
        }
    }
    let join = |f: &dyn Fn(&Tags) -> bool| -> Option<String> {
        let mut out: Vec<&str> = Vec::new();
        for (n, t) in parts.iter().zip(&tags) {
            if f(t) {
                out.push(n);
            }
        }
        let s = out.join("-");
        (!s.is_empty()).then_some(s)
    };
    let mut basename = join(&|t| t.basename);
    let size_label = {
        let mut out: Vec<&str> = Vec::new();
        for (n, t) in parts.iter().zip(&tags) {
            if t.size_label && !out.contains(&n.as_str()) {
                out.push(n);
            }
        }
        let s = out.join("-");
        (!s.is_empty()).then_some(s)
    };
    let finetune = join(&|t| t.finetune);
    let version = join(&|t| t.version && !t.basename);
    if size_label.is_none() && finetune.is_none() && version.is_none() {
        basename = None;
    }
    Components { full_name: Some(full), org, basename, finetune, version, size_label }
}

/// Python's `str.title()`: a cased character after an uncased one is upper-cased, others
/// lower-cased.
fn py_title(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    let mut prev_cased = false;
    for c in w.chars() {
        let cased = c.is_lowercase() || c.is_uppercase();
        if cased && !prev_cased {
            out.extend(c.to_uppercase());
        } else if cased {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        prev_cased = cased;
    }
    out
}

/// Python's `str.islower()`: some cased character and no upper-case one.
fn py_islower(w: &str) -> bool {
    w.chars().any(char::is_lowercase) && !w.chars().any(char::is_uppercase)
}

/// gguf-py `Metadata.id_to_title`.
fn id_to_title(s: &str) -> String {
    let keep = re(r"^(?:v\d+(?:\.\d+)*|\d.*)$");
    s.trim()
        .replace('-', " ")
        .split_whitespace()
        .map(|w| if py_islower(w) && !keep.is_match(w) { py_title(w) } else { w.to_owned() })
        .collect::<Vec<_>>()
        .join(" ")
}

/// gguf-py `model_weight_count_rounded_notation(n, min_digits=2)`.
fn rounded_notation(n: u64) -> String {
    let x = n as f64;
    let (scaled, suffix) = if x > 1e12 {
        (x * 1e-12, 'T')
    } else if x > 1e9 {
        (x * 1e-9, 'B')
    } else if x > 1e6 {
        (x * 1e-6, 'M')
    } else {
        (x * 1e-3, 'K')
    };
    // Python's round() rounds half to even; the digits are counted without leading zeros.
    let int_digits = format!("{}", scaled.round_ties_even() as u64).trim_start_matches('0').len();
    let fix = 2usize.saturating_sub(int_digits);
    format!("{scaled:.fix$}{suffix}")
}

impl Naming {
    fn fill(&mut self, c: Components) {
        if self.name.is_none() {
            self.name = c.full_name.map(|n| id_to_title(&n));
        }
        if self.organization.is_none() {
            self.organization = c.org.map(|o| id_to_title(&o));
        }
        self.basename = self.basename.take().or(c.basename);
        self.finetune = self.finetune.take().or(c.finetune);
        self.version = self.version.take().or(c.version);
        self.size_label = self.size_label.take().or(c.size_label);
    }

    /// What llama.cpp's converter derives for the model in `dir` with `total_params` weights
    /// (`model_name` overrides the name, as `--model-name` does).
    pub(crate) fn derive(dir: &Path, cfg: &HfConfig, model_name: Option<&str>, total_params: u64) -> Naming {
        let tp = i64::try_from(total_params).unwrap_or(i64::MAX);
        let mut n = Naming::default();
        if let Some(Json::String(id)) = cfg.hparams.get("_name_or_path") {
            if id.matches('/').count() <= 1 {
                n.fill(components(id, tp));
            }
        }
        let dir_name = dir.canonicalize().ok().and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()));
        if let Some(d) = &dir_name {
            n.fill(components(d, tp));
        }
        if let Some(m) = model_name {
            n.name = Some(m.to_owned());
        }
        if n.name.is_none() {
            n.name = Some(dir_name.unwrap_or_else(|| "model".into()));
        }
        if n.size_label.is_none() && total_params > 0 {
            n.size_label = Some(rounded_notation(total_params));
        }
        n.sampling = sampling_defaults(dir);
        n
    }

    /// Write the keys in `set_gguf_meta_model`'s order.
    pub(crate) fn write(&self, kv: &mut Kv) {
        for (k, v) in &self.sampling {
            kv.set(k, v.clone());
        }
        let keys = [
            ("general.name", &self.name),
            ("general.version", &self.version),
            ("general.organization", &self.organization),
            ("general.finetune", &self.finetune),
            ("general.basename", &self.basename),
            ("general.size_label", &self.size_label),
        ];
        for (k, v) in keys {
            if let Some(v) = v {
                kv.set(k, Value::String(v.clone()));
            }
        }
    }
}

/// `general.sampling.*` from `generation_config.json` (gguf-py `Metadata.load`: an unreadable or
/// invalid file counts as empty). Values of the wrong JSON type are skipped (gguf-py would fail
/// to write them).
fn sampling_defaults(dir: &Path) -> Vec<(&'static str, Value)> {
    let Ok(text) = std::fs::read_to_string(dir.join("generation_config.json")) else { return Vec::new() };
    let Ok(Json::Object(g)) = serde_json::from_str::<Json>(&text) else { return Vec::new() };
    enum T {
        Str,
        I32,
        F32,
    }
    const KEYS: [(&str, &[&str], T); 12] = [
        ("general.sampling.sequence", &["sequence"], T::Str),
        ("general.sampling.top_k", &["top_k"], T::I32),
        ("general.sampling.top_p", &["top_p"], T::F32),
        ("general.sampling.min_p", &["min_p"], T::F32),
        ("general.sampling.xtc_probability", &["xtc_probability"], T::F32),
        ("general.sampling.xtc_threshold", &["xtc_threshold"], T::F32),
        ("general.sampling.temp", &["temperature"], T::F32),
        ("general.sampling.penalty_last_n", &["penalty_last_n"], T::I32),
        ("general.sampling.penalty_repeat", &["penalty_repeat", "repetition_penalty"], T::F32),
        ("general.sampling.mirostat", &["mirostat"], T::I32),
        ("general.sampling.mirostat_tau", &["mirostat_tau"], T::F32),
        ("general.sampling.mirostat_eta", &["mirostat_eta"], T::F32),
    ];
    let mut out = Vec::new();
    for (key, names, ty) in KEYS {
        // `gen_config.get(a, gen_config.get(b, None))`: the first key present wins, even if null.
        let Some(v) = names.iter().find_map(|n| g.get(*n)) else { continue };
        let value = match ty {
            T::Str => v.as_str().map(Value::from),
            T::I32 => v.as_i64().and_then(|i| i32::try_from(i).ok()).map(Value::I32),
            T::F32 if v.is_boolean() => None,
            T::F32 => v.as_f64().map(|f| Value::F32(f as f32)),
        };
        if let Some(value) = value {
            out.push((key, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, tp: i64) -> [Option<String>; 6] {
        let c = components(id, tp);
        [c.full_name, c.org, c.basename, c.finetune, c.version, c.size_label]
    }

    fn s(v: [&str; 6]) -> [Option<String>; 6] {
        v.map(|x| (!x.is_empty()).then(|| x.to_owned()))
    }

    #[test]
    fn components_follow_gguf_py() {
        // Expected values: printed by gguf-py's Metadata.get_model_id_components (the gguf
        // package at llama.cpp's pinned commit) for the same inputs.
        assert_eq!(c("Mixtral-8x7B-Instruct-v0.1", 0), s(["Mixtral-8x7B-Instruct-v0.1", "", "Mixtral", "Instruct", "v0.1", "8x7B"]));
        assert_eq!(c("mistralai/Mistral-7B-Instruct-v0.2", 0), s(["Mistral-7B-Instruct-v0.2", "mistralai", "Mistral", "Instruct", "v0.2", "7B"]));
        assert_eq!(c("Meta-Llama-3-8B", 0), s(["Meta-Llama-3-8B", "", "Meta-Llama-3", "", "", "8B"]));
        assert_eq!(c("bigscience/bloom-7b1-petals", 0), s(["bloom-7b1-petals", "bigscience", "bloom", "petals", "", "7.1B"]));
        assert_eq!(c("NousResearch/Meta-Llama-3-8B", 0), s(["Meta-Llama-3-8B", "NousResearch", "Meta-Llama-3", "", "", "8B"]));
        assert_eq!(c("Qwen1.5-MoE-A2.7B-Chat", 0), s(["Qwen1.5-MoE-A2.7B-Chat", "", "Qwen1.5-MoE", "Chat", "", "A2.7B"]));
        assert_eq!(c("smallcloudai/Refact-1_6-base", 0), s(["Refact-1_6-base", "smallcloudai", "Refact", "1_6-base", "", ""]));
        assert_eq!(c("SmolLM2-135M", 0), s(["SmolLM2-135M", "", "SmolLM2", "", "", "135M"]));
        assert_eq!(c("a model name", 0), s(["a model name", "", "", "", "", ""]));
        assert_eq!(c("hf", 0), s(["hf", "", "", "", "", ""]));
        assert_eq!(c("../tiny", 0), s(["tiny", "", "", "", "", ""]));
        // context-length-like sizes become fine-tunes (total_params given)
        assert_eq!(c("Llama-3-8B-262k", 8_000_000_000), s(["Llama-3-8B-262k", "", "Llama-3", "262k", "", "8B"]));
        assert_eq!(c("Phi-3-mini-128k-instruct", 3_800_000_000), s(["Phi-3-mini-128k-instruct", "", "Phi-3", "128k-instruct", "", "mini"]));
    }

    #[test]
    fn titles_and_size_labels() {
        // Expected values: gguf-py's Metadata.id_to_title and model_weight_count_rounded_notation.
        assert_eq!(id_to_title("tiny-llama"), "Tiny Llama");
        assert_eq!(id_to_title("SmolLM2-135M"), "SmolLM2 135M");
        assert_eq!(id_to_title("llama2b-v0.1-7b"), "Llama2B v0.1 7b");
        assert_eq!(rounded_notation(134_515_008), "135M");
        assert_eq!(rounded_notation(31_520), "32K");
        assert_eq!(rounded_notation(1_100_048_384), "1.1B");
        assert_eq!(rounded_notation(7_241_732_096), "7.2B");
        assert_eq!(rounded_notation(300), "0.30K");
    }
}

//! SentencePiece vocabularies (`tokenizer.model`), as llama.cpp's converter turns them into a
//! `llama` GGUF vocabulary (`_create_vocab_sentencepiece`): one token per model piece with its
//! score and type, then the ids of `added_tokens.json` and `tokenizer_config.json`'s
//! `added_tokens_decoder` written over them, padded with `[PADn]` up to `config.json`'s
//! `vocab_size`.
//!
//! The model file is a protobuf `ModelProto`; only its `pieces` are read (declared below with
//! `prost`; every other field is skipped as unknown).

use std::path::Path;

use prost::Message;
use serde_json::Value as Json;

use super::hf::{read_json, HfConfig};
use crate::error::{Error, Result};

/// gguf-py `TokenType` / SentencePiece piece types.
pub(crate) const NORMAL: i32 = 1;
pub(crate) const UNKNOWN: i32 = 2;
pub(crate) const CONTROL: i32 = 3;
pub(crate) const USER_DEFINED: i32 = 4;
pub(crate) const UNUSED: i32 = 5;
pub(crate) const BYTE: i32 = 6;

/// Score of the tokens that fill ids the model has no piece for.
const PAD_SCORE: f32 = -10000.0;
/// Score llama.cpp gives tokens added by `added_tokens.json` / `added_tokens_decoder`.
const ADDED_SCORE: f32 = -1000.0;

/// SentencePiece's `ModelProto`, reduced to the pieces (field 1).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ModelProto {
    /// The vocabulary; the index is the token id.
    #[prost(message, repeated, tag = "1")]
    pub pieces: Vec<Piece>,
}

/// `ModelProto.SentencePiece`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Piece {
    /// The piece text (`▁` for a space).
    #[prost(string, optional, tag = "1")]
    pub piece: Option<String>,
    /// Its score (BPE: merge priority, higher first).
    #[prost(float, optional, tag = "2")]
    pub score: Option<f32>,
    /// Its type (`Type` enum: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte);
    /// absent means normal.
    #[prost(int32, optional, tag = "3")]
    pub kind: Option<i32>,
}

/// A `llama` vocabulary: token texts, scores and types, one per id.
pub(crate) struct SpmVocab {
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub types: Vec<i32>,
}

/// The token type llama.cpp's converter records for a piece type: it asks SentencePiece
/// `IsUnknown`, `IsControl`, `IsUnused`, `IsByte` in that order and calls everything else
/// normal, user-defined pieces included.
fn token_type(piece_kind: Option<i32>) -> i32 {
    match piece_kind {
        Some(k @ (UNKNOWN | CONTROL | UNUSED | BYTE)) => k,
        _ => NORMAL,
    }
}

/// Parse a `tokenizer.model` file's bytes.
pub(crate) fn parse_model(path: &Path, bytes: &[u8]) -> Result<ModelProto> {
    let m = ModelProto::decode(bytes)
        .map_err(|e| Error::value(format!("{}: not a SentencePiece model ({e})", path.display())))?;
    if m.pieces.is_empty() {
        return Err(Error::value(format!("{}: the SentencePiece model has no pieces", path.display())));
    }
    Ok(m)
}

/// A token id from JSON (`added_tokens.json` value or `added_tokens_decoder` key).
fn json_id(path: &Path, what: &str, v: Option<i64>) -> Result<usize> {
    v.and_then(|i| usize::try_from(i).ok())
        .ok_or_else(|| Error::value(format!("{}: {what} is not a token id", path.display())))
}

/// llama.cpp's `_create_vocab_sentencepiece` for the model directory `dir`.
pub(crate) fn create_vocab(dir: &Path, cfg: &HfConfig, looks_special: fn(&str) -> bool) -> Result<SpmVocab> {
    let path = dir.join("tokenizer.model");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let model = parse_model(&path, &bytes)?;
    // `find_hparam([...], optional=True) or tokenizer.vocab_size()`: a missing or zero size
    // means the model's own.
    let vocab_size = match cfg.find_u32(&["vocab_size_per_layer_input", "vocab_size"])? {
        Some(v) if v > 0 => v as usize,
        _ => model.pieces.len(),
    };
    let mut tokens: Vec<String> = (0..vocab_size).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![PAD_SCORE; vocab_size];
    let mut types = vec![UNUSED; vocab_size];
    // Pieces past vocab_size are dropped, as there.
    for (id, p) in model.pieces.iter().enumerate().take(vocab_size) {
        tokens[id] = p.piece.clone().unwrap_or_default();
        scores[id] = p.score.unwrap_or(0.0);
        types[id] = token_type(p.kind);
    }

    let added_path = dir.join("added_tokens.json");
    if added_path.is_file() {
        let json = read_json(&added_path)?;
        let map = json
            .as_object()
            .ok_or_else(|| Error::value(format!("{}: expected an object of token -> id", added_path.display())))?;
        for (tok, id) in map {
            let id = json_id(&added_path, &format!("the value of {tok:?}"), id.as_i64())?;
            if id >= vocab_size {
                continue; // out of range: ignored, as there
            }
            tokens[id] = tok.clone();
            scores[id] = ADDED_SCORE;
            types[id] = USER_DEFINED;
        }
    }

    let tc_path = dir.join("tokenizer_config.json");
    if tc_path.is_file() {
        let tc = read_json(&tc_path)?;
        if let Some(dec) = tc.get("added_tokens_decoder").and_then(Json::as_object) {
            for (key, data) in dec {
                let id = json_id(&tc_path, &format!("added_tokens_decoder key {key:?}"), key.trim().parse::<i64>().ok())?;
                let content = data.get("content").and_then(Json::as_str).ok_or_else(|| {
                    Error::value(format!("{}: added_tokens_decoder[{key:?}] has no \"content\" string", tc_path.display()))
                })?;
                if id >= vocab_size {
                    continue;
                }
                let special = data.get("special").is_some_and(truthy);
                if special || looks_special(content) {
                    tokens[id] = content.to_owned();
                    types[id] = CONTROL;
                } else {
                    // User-defined tokens are stored with plain spaces.
                    tokens[id] = content.replace('\u{2581}', " ");
                    types[id] = USER_DEFINED;
                }
                scores[id] = ADDED_SCORE;
            }
        }
    }
    Ok(SpmVocab { tokens, scores, types })
}

/// Python truthiness of a JSON value (`token_data.get("special") or ...`).
fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, score: f32, kind: Option<i32>) -> Piece {
        Piece { piece: Some(text.into()), score: Some(score), kind }
    }

    fn write_dir(dir: &Path, pieces: Vec<Piece>, config_vocab: Option<usize>) -> HfConfig {
        std::fs::write(dir.join("tokenizer.model"), ModelProto { pieces }.encode_to_vec()).unwrap();
        let mut cfg = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 8, "num_attention_heads": 2,
            "num_hidden_layers": 1, "intermediate_size": 16,
        });
        if let Some(v) = config_vocab {
            cfg["vocab_size"] = v.into();
        }
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        HfConfig::load(dir).unwrap()
    }

    #[test]
    fn piece_types_map_as_llama_cpp_maps_them() {
        let dir = tempfile::tempdir().unwrap();
        let pieces = vec![
            piece("<unk>", 0.0, Some(UNKNOWN)),
            piece("<s>", 0.0, Some(CONTROL)),
            piece("<0x41>", 0.0, Some(BYTE)),
            piece("<user>", 0.0, Some(USER_DEFINED)),
            piece("<gone>", 0.0, Some(UNUSED)),
            piece("\u{2581}a", -1.5, Some(NORMAL)),
            piece("b", -2.5, None),
            piece("c", -3.0, Some(99)),
        ];
        let cfg = write_dir(dir.path(), pieces, Some(10));
        let v = create_vocab(dir.path(), &cfg, |_| false).unwrap();
        assert_eq!(v.types, [UNKNOWN, CONTROL, BYTE, NORMAL, UNUSED, NORMAL, NORMAL, NORMAL, UNUSED, UNUSED]);
        assert_eq!(v.tokens[5], "\u{2581}a");
        assert_eq!(&v.tokens[8..], ["[PAD8]", "[PAD9]"]);
        assert_eq!(v.scores[5..], [-1.5, -2.5, -3.0, PAD_SCORE, PAD_SCORE]);
    }

    #[test]
    fn added_tokens_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let pieces = (0..6).map(|i| piece(&format!("p{i}"), -(i as f32), None)).collect();
        let cfg = write_dir(dir.path(), pieces, Some(4));
        std::fs::write(dir.path().join("added_tokens.json"), r#"{"<x>": 2, "<far>": 9}"#).unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"added_tokens_decoder": {"1": {"content": "<|ctl|>", "special": false},
                "3": {"content": "a\u2581b", "special": false}, "40": {"content": "x"}}}"#,
        )
        .unwrap();
        let v = create_vocab(dir.path(), &cfg, |t| t.starts_with("<|")).unwrap();
        assert_eq!(v.tokens, ["p0", "<|ctl|>", "<x>", "a b"]);
        assert_eq!(v.types, [NORMAL, CONTROL, USER_DEFINED, USER_DEFINED]);
        assert_eq!(v.scores, [0.0, ADDED_SCORE, ADDED_SCORE, ADDED_SCORE]);
    }

    #[test]
    fn bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_dir(dir.path(), vec![piece("a", 0.0, None)], None);
        std::fs::write(dir.path().join("tokenizer.model"), b"\xff\xff\xff").unwrap();
        assert!(create_vocab(dir.path(), &cfg, |_| false).is_err());
        std::fs::write(dir.path().join("tokenizer.model"), b"").unwrap();
        assert!(create_vocab(dir.path(), &cfg, |_| false).is_err());
        std::fs::write(dir.path().join("tokenizer.model"), ModelProto { pieces: vec![piece("a", 0.0, None)] }.encode_to_vec())
            .unwrap();
        std::fs::write(dir.path().join("added_tokens.json"), r#"{"<x>": -1}"#).unwrap();
        assert!(create_vocab(dir.path(), &cfg, |_| false).is_err());
        std::fs::write(dir.path().join("added_tokens.json"), r#"{"<x>": 0}"#).unwrap();
        let v = create_vocab(dir.path(), &cfg, |_| false).unwrap();
        assert_eq!((v.tokens, v.types), (vec!["<x>".to_string()], vec![USER_DEFINED]));
    }
}

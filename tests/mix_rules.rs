//! Per-tensor type choice against what llama-quantize chose for SmolLM2-135M
//! (`../shared/golden/smollm2/quantized_model_hashes/*.json`, llama.cpp 0c1e57098).

mod common;

use kquants::mix::{plan, FileType, MixOptions, ModelInfo, TensorDesc};
use kquants::QuantType;

fn load(name: &str) -> serde_json::Value {
    let p = common::golden_dir().join("smollm2/quantized_model_hashes").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn smollm2() -> (ModelInfo, Vec<TensorDesc>) {
    let base = load("F32");
    let md = &base["metadata"];
    let model = ModelInfo {
        arch: md["general.architecture"].as_str().unwrap().to_string(),
        n_layer: md["llama.block_count"].as_u64().unwrap() as u32,
        n_head: md["llama.attention.head_count"].as_u64().unwrap() as u32,
        n_head_kv: md["llama.attention.head_count_kv"].as_u64().unwrap() as u32,
        n_expert: 0,
    };
    let tensors = base["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| TensorDesc {
            name: t["name"].as_str().unwrap().to_string(),
            dims: t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect(),
            ty: QuantType::from_name(t["type"].as_str().unwrap()).unwrap(),
        })
        .collect();
    (model, tensors)
}

fn check(fixture: &str, ftype: FileType, imatrix: bool) {
    let (model, tensors) = smollm2();
    let mut opts = MixOptions::new(ftype);
    opts.has_imatrix = imatrix;
    let choices = plan(&model, &tensors, &opts).unwrap();
    let want = load(fixture);
    let want = want["tensors"].as_array().unwrap();
    assert_eq!(choices.len(), want.len());
    let mut bad = Vec::new();
    for (c, w) in choices.iter().zip(want) {
        let name = &tensors[c.index].name;
        // The fixture lists tensors in the order llama-quantize wrote them: the order must match too.
        assert_eq!(name, w["name"].as_str().unwrap(), "{fixture}: tensor order");
        if c.target.name() != w["type"].as_str().unwrap() {
            bad.push(format!("{name}: got {} want {}", c.target, w["type"]));
        }
    }
    assert!(bad.is_empty(), "{fixture}: {} tensors differ:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn smollm2_q8_0() {
    check("Q8_0", FileType::Q8_0, false);
}
#[test]
fn smollm2_q6_k() {
    check("Q6_K", FileType::Q6_K, false);
}
#[test]
fn smollm2_q4_k_m() {
    check("Q4_K_M", FileType::Q4_K_M, false);
}
#[test]
fn smollm2_q4_k_m_imatrix() {
    check("Q4_K_M_imatrix", FileType::Q4_K_M, true);
}
#[test]
fn smollm2_q4_0() {
    check("Q4_0", FileType::Q4_0, false);
}
#[test]
fn smollm2_iq4_xs_imatrix() {
    check("IQ4_XS_imatrix", FileType::IQ4_XS, true);
}

/// The synthetic 32-layer GQA llama of `tests/fixtures/mix_32layer_gqa.json`.
fn synthetic_32_layer() -> (ModelInfo, Vec<TensorDesc>) {
    let model = ModelInfo { arch: "llama".into(), n_layer: 32, n_head: 32, n_head_kv: 8, n_expert: 0 };
    let t = |name: String, dims: &[u64]| TensorDesc { name, dims: dims.to_vec(), ty: QuantType::F32 };
    let mut v = vec![
        t("token_embd.weight".into(), &[4096, 32000]),
        t("output_norm.weight".into(), &[4096]),
        t("output.weight".into(), &[4096, 32000]),
    ];
    for i in 0..32 {
        v.push(t(format!("blk.{i}.attn_norm.weight"), &[4096]));
        v.push(t(format!("blk.{i}.attn_q.weight"), &[4096, 4096]));
        v.push(t(format!("blk.{i}.attn_k.weight"), &[4096, 1024]));
        v.push(t(format!("blk.{i}.attn_v.weight"), &[4096, 1024]));
        v.push(t(format!("blk.{i}.attn_output.weight"), &[4096, 4096]));
        v.push(t(format!("blk.{i}.ffn_norm.weight"), &[4096]));
        v.push(t(format!("blk.{i}.ffn_gate.weight"), &[4096, 14336]));
        v.push(t(format!("blk.{i}.ffn_up.weight"), &[4096, 14336]));
        v.push(t(format!("blk.{i}.ffn_down.weight"), &[14336, 4096]));
    }
    (model, v)
}

/// Expected type of one tensor from the fixture's hand-derived rules.
fn expected(mix: &serde_json::Value, umb: &[u64], name: &str) -> String {
    if name.ends_with("_norm.weight") {
        return "F32".into();
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap().to_string();
    if name == "output.weight" {
        return s(&mix["output"][0]);
    }
    if name == "token_embd.weight" {
        return mix.get("token_embd").map(|e| s(&e[0])).unwrap_or_else(|| s(&mix["default"]));
    }
    let rest = name.strip_prefix("blk.").unwrap();
    let (layer, role) = rest.split_once('.').unwrap();
    let layer: u64 = layer.parse().unwrap();
    let role = role.trim_end_matches(".weight");
    if let Some(rules) = mix.get(role) {
        for r in rules.as_array().unwrap() {
            let hit = match &r[0] {
                serde_json::Value::String(w) if w == "all" => true,
                serde_json::Value::String(w) if w == "UMB" => umb.contains(&layer),
                serde_json::Value::Array(ls) => ls.iter().any(|l| l.as_u64() == Some(layer)),
                other => panic!("bad layer set {other}"),
            };
            if hit {
                return s(&r[1]);
            }
        }
    }
    s(&mix["default"])
}

#[test]
fn synthetic_32_layer_gqa_every_mix() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mix_32layer_gqa.json");
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let umb: Vec<u64> = fixture["UMB"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let (model, tensors) = synthetic_32_layer();
    let mut seen = Vec::new();
    let mut bad = Vec::new();
    for (key, mix) in fixture["mixes"].as_object().unwrap() {
        let (name, imatrix) = match key.strip_suffix("+imatrix") {
            Some(n) => (n, true),
            None => (key.as_str(), false),
        };
        let ftype = FileType::from_name(name).unwrap_or_else(|| panic!("unknown mix {name}"));
        seen.push(ftype);
        let mut opts = MixOptions::new(ftype);
        opts.has_imatrix = imatrix;
        for c in plan(&model, &tensors, &opts).unwrap() {
            let n = &tensors[c.index].name;
            let want = expected(mix, &umb, n);
            if c.target.name() != want {
                bad.push(format!("{key} {n}: got {} want {want}", c.target));
            }
        }
    }
    // Every file type llama-quantize offers is covered by the fixture.
    for f in FileType::ALL {
        assert!(seen.contains(f), "fixture lacks {}", f.name());
    }
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

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

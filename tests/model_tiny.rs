//! A tiny random-weight llama/qwen2 built in memory: batched prefill equals token-by-token
//! decoding bit for bit (our kernels compute each row the same way whatever the batch), the
//! metadata checks reject what we do not run, and the tokenizer round-trips on a tiny vocabulary.

use std::sync::Arc;

use kquants::model::{Meta, MemorySource, Model, ModelSource, Tokenizer};
use kquants::QuantType;

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn tiny(arch: &str, bias: bool, tied: bool) -> MemorySource {
    let (d, ff, nh, nkv, nl, nv) = (32u64, 48u64, 4u64, 2u64, 2usize, 64u64);
    let hd = d / nh;
    let mut s = MemorySource::new();
    s.set("general.architecture", Meta::Str(arch.into()));
    s.set(&format!("{arch}.block_count"), Meta::U(nl as u64));
    s.set(&format!("{arch}.embedding_length"), Meta::U(d));
    s.set(&format!("{arch}.feed_forward_length"), Meta::U(ff));
    s.set(&format!("{arch}.attention.head_count"), Meta::U(nh));
    s.set(&format!("{arch}.attention.head_count_kv"), Meta::U(nkv));
    s.set(&format!("{arch}.rope.freq_base"), Meta::F(10000.0));
    s.set(&format!("{arch}.attention.layer_norm_rms_epsilon"), Meta::F(1e-5));
    let mut r = Rng(42);
    let mut add = |s: &mut MemorySource, name: &str, dims: &[u64], scale: f32| {
        let n: u64 = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| r.f() * scale).collect();
        s.add_tensor(name, QuantType::F32, dims, f32_bytes(&v)).unwrap();
    };
    add(&mut s, "token_embd.weight", &[d, nv], 1.0);
    for i in 0..nl {
        let p = format!("blk.{i}");
        add(&mut s, &format!("{p}.attn_norm.weight"), &[d], 1.0);
        add(&mut s, &format!("{p}.attn_q.weight"), &[d, d], 0.3);
        add(&mut s, &format!("{p}.attn_k.weight"), &[d, nkv * hd], 0.3);
        add(&mut s, &format!("{p}.attn_v.weight"), &[d, nkv * hd], 0.3);
        if bias {
            add(&mut s, &format!("{p}.attn_q.bias"), &[d], 0.3);
            add(&mut s, &format!("{p}.attn_k.bias"), &[nkv * hd], 0.3);
            add(&mut s, &format!("{p}.attn_v.bias"), &[nkv * hd], 0.3);
        }
        add(&mut s, &format!("{p}.attn_output.weight"), &[d, d], 0.3);
        add(&mut s, &format!("{p}.ffn_norm.weight"), &[d], 1.0);
        add(&mut s, &format!("{p}.ffn_gate.weight"), &[d, ff], 0.3);
        add(&mut s, &format!("{p}.ffn_up.weight"), &[d, ff], 0.3);
        add(&mut s, &format!("{p}.ffn_down.weight"), &[ff, d], 0.3);
    }
    add(&mut s, "output_norm.weight", &[d], 1.0);
    if !tied {
        add(&mut s, "output.weight", &[d, nv], 0.3);
    }
    s
}

fn model(s: MemorySource, threads: usize) -> Arc<Model> {
    Arc::new(Model::from_source(Arc::new(s), Some(threads)).unwrap())
}

#[test]
fn batch_equals_sequential_and_threads_do_not_matter() {
    for (arch, bias, tied) in [("llama", false, true), ("qwen2", true, false), ("mistral", false, false)] {
        let m = model(tiny(arch, bias, tied), 2);
        let toks: Vec<u32> = vec![3, 17, 5, 60, 0, 9, 33];
        let batch = m.session().eval(&toks, true).unwrap();
        let mut s = m.session();
        let mut seq = Vec::new();
        for &t in &toks {
            seq.extend(s.eval(&[t], false).unwrap());
        }
        assert_eq!(s.pos(), toks.len());
        let nv = m.config.n_vocab;
        assert_eq!(batch.len(), toks.len() * nv);
        // Same per-row arithmetic in both schedules: bit-identical.
        for (i, (a, b)) in batch.iter().zip(&seq).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{arch}: position {} logit {} differs: {a} vs {b}", i / nv, i % nv);
        }
        // Split prefill (3 + 4) equals one batch too.
        let mut s2 = m.session();
        s2.eval(&toks[..3], false).unwrap();
        let last = s2.eval(&toks[3..], false).unwrap();
        assert_eq!(last, batch[(toks.len() - 1) * nv..].to_vec());
        let m1 = model(tiny(arch, bias, tied), 1);
        assert_eq!(m1.session().eval(&toks, true).unwrap(), batch, "{arch}: thread count changed the logits");
    }
}

#[test]
fn rope_mode_and_bias_matter() {
    // The qwen2 graph (NeoX RoPE) must not coincide with the llama one on the same weights.
    let toks = [1u32, 2, 3, 4];
    let a = model(tiny("llama", false, false), 1).session().eval(&toks, false).unwrap();
    let mut q = tiny("qwen2", false, false);
    q.set("qwen2.rope.freq_base", Meta::F(10000.0));
    let b = model(q, 1).session().eval(&toks, false).unwrap();
    assert_ne!(a, b);
}

#[test]
fn rejects_what_it_cannot_run() {
    let mut s = tiny("llama", false, true);
    s.set("general.architecture", Meta::Str("gptneox".into()));
    let e = Model::from_source(Arc::new(s), Some(1)).err().unwrap().to_string();
    assert!(e.contains("unsupported model architecture"), "{e}");
    let mut s = tiny("llama", false, true);
    s.set("llama.attention.head_count_kv", Meta::U(3));
    assert!(Model::from_source(Arc::new(s), Some(1)).is_err());
    let m = model(tiny("llama", false, true), 1);
    assert!(m.session().eval(&[64], false).is_err(), "token id outside the vocabulary");
    let s = tiny("llama", false, true);
    assert!(s.tensor("output.weight").is_none());
}

fn gpt2_vocab() -> MemorySource {
    // Byte-level alphabet for "hello world" plus a few merges and two control tokens.
    let mut toks: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
    for c in "helowrdĠĊ!".chars() {
        toks.push(c.to_string());
    }
    let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"];
    for m in merges {
        toks.push(m.replace(' ', ""));
    }
    let mut types = vec![3i64; 3];
    types.extend(std::iter::repeat_n(1i64, toks.len() - 3));
    let mut s = MemorySource::new();
    s.set("tokenizer.ggml.model", Meta::Str("gpt2".into()));
    s.set("tokenizer.ggml.pre", Meta::Str("smollm".into()));
    s.set("tokenizer.ggml.tokens", Meta::StrArr(toks));
    s.set("tokenizer.ggml.token_type", Meta::IntArr(types));
    s.set("tokenizer.ggml.merges", Meta::StrArr(merges.iter().map(|m| m.to_string()).collect()));
    s.set("tokenizer.ggml.bos_token_id", Meta::U(1));
    s.set("tokenizer.ggml.eos_token_id", Meta::U(2));
    s.set("tokenizer.ggml.add_bos_token", Meta::Bool(false));
    s
}

#[test]
fn gpt2_tokenizer_roundtrip_and_specials() {
    let t = Tokenizer::from_source(&gpt2_vocab()).unwrap();
    let ids = t.encode("hello world", true).unwrap();
    let pieces: Vec<&str> = ids.iter().map(|&i| t.token(i).unwrap()).collect();
    assert_eq!(pieces, ["hello", "Ġworld"]);
    assert_eq!(t.decode(&ids).unwrap(), "hello world");
    let ids = t.encode("<|im_start|>hello<|im_end|>\n", true).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(ids[2], 2);
    assert_eq!(t.decode(&ids).unwrap(), "<|im_start|>hello<|im_end|>\n");
    assert!(!t.add_bos);
    let mut s = gpt2_vocab();
    s.set("tokenizer.ggml.add_bos_token", Meta::Bool(true));
    let t = Tokenizer::from_source(&s).unwrap();
    assert_eq!(t.encode("hello", true).unwrap()[0], 1);
    assert_eq!(t.encode("hello", false).unwrap().len(), 1);
    let mut s = gpt2_vocab();
    s.set("tokenizer.ggml.pre", Meta::Str("no-such-pre".into()));
    assert!(Tokenizer::from_source(&s).is_err());
}

#[test]
fn spm_tokenizer_merges_by_score() {
    let toks: Vec<String> = ["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab", "▁ab", "<0x21>"].iter().map(|s| s.to_string()).collect();
    let scores = vec![0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -0.5, -0.7, -0.1, 0.0];
    let types = vec![2i64, 3, 3, 1, 1, 1, 1, 1, 1, 6];
    let mut s = MemorySource::new();
    s.set("tokenizer.ggml.model", Meta::Str("llama".into()));
    s.set("tokenizer.ggml.tokens", Meta::StrArr(toks));
    s.set("tokenizer.ggml.scores", Meta::FloatArr(scores));
    s.set("tokenizer.ggml.token_type", Meta::IntArr(types));
    s.set("tokenizer.ggml.bos_token_id", Meta::U(1));
    s.set("tokenizer.ggml.eos_token_id", Meta::U(2));
    s.set("tokenizer.ggml.unknown_token_id", Meta::U(0));
    let t = Tokenizer::from_source(&s).unwrap();
    assert!(t.add_bos, "llama tokenizers add BOS by default");
    let ids = t.encode("ab a!", true).unwrap();
    assert_eq!(ids, vec![1, 8, 6, 9], "BOS, ▁ab, ▁a, byte fallback for '!'");
    assert_eq!(t.decode(&ids[1..]).unwrap(), "ab a!");
}

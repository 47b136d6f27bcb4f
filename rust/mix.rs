//! Quantization mixes: which type each tensor of a model gets, as llama-quantize decides it.
//!
//! A *file type* (`Q4_K_M`, `IQ2_XS`, …) names a default tensor type plus per-tensor rules that give
//! sensitive tensors (attention V, FFN down in some layers, the output projection) more bits and
//! fall back to compatible types when a row length is not a multiple of the block size. The rules
//! here follow llama.cpp's `llama-quant.cpp` at the pinned commit (0c1e57098) so that the same
//! model, mix and importance matrix give the same type for every tensor; each rule is cited by the
//! name of the llama.cpp function it comes from.
//!
//! ```
//! use kquants::mix::{FileType, ModelInfo, MixOptions, TensorDesc, plan};
//! use kquants::QuantType;
//! let model = ModelInfo { arch: "llama".into(), n_layer: 1, n_head: 4, n_head_kv: 4, n_expert: 0 };
//! let tensors = [
//!     TensorDesc { name: "blk.0.ffn_down.weight".into(), dims: vec![256, 256], ty: QuantType::F32 },
//!     TensorDesc { name: "blk.0.attn_norm.weight".into(), dims: vec![256], ty: QuantType::F32 },
//! ];
//! let p = plan(&model, &tensors, &MixOptions::new(FileType::Q4_K_M)).unwrap();
//! assert_eq!(p[0].target, QuantType::F32); // sorted: attn_norm first, never quantized (1-D)
//! assert_eq!(p[1].target, QuantType::Q6_K); // ffn_down of layer 0: use_more_bits
//! ```

use regex::Regex;

use crate::error::{Error, Result};
use crate::types::QuantType;

macro_rules! file_types {
    ($( $name:ident = $id:literal => $default:ident, $help:literal; )*) => {
        /// A llama.cpp file type (`LLAMA_FTYPE_*`): the mix named on llama-quantize's command line.
        /// The discriminant is the value written to `general.file_type`.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum FileType {
            $( #[doc = $help] $name = $id, )*
        }

        impl FileType {
            /// Every file type, in llama-quantize's list order.
            pub const ALL: &'static [FileType] = &[$(FileType::$name),*];

            /// The name llama-quantize uses (`"Q4_K_M"`).
            pub const fn name(self) -> &'static str {
                match self { $( FileType::$name => stringify!($name), )* }
            }

            /// The default tensor type of the mix (`llama_ftype_get_default_type`).
            pub const fn default_type(self) -> QuantType {
                match self { $( FileType::$name => QuantType::$default, )* }
            }

            /// One-line description (bits per weight or llama-quantize's quality note).
            pub const fn help(self) -> &'static str {
                match self { $( FileType::$name => $help, )* }
            }
        }
    };
}

file_types! {
    ALL_F32 = 0 => F32, "32-bit floats";
    F16 = 1 => F16, "16-bit floats (except 1-D tensors)";
    Q4_0 = 2 => Q4_0, "4.5 bpw legacy";
    Q4_1 = 3 => Q4_1, "5.0 bpw legacy";
    Q8_0 = 7 => Q8_0, "8.5 bpw legacy";
    Q5_0 = 8 => Q5_0, "5.5 bpw legacy";
    Q5_1 = 9 => Q5_1, "6.0 bpw legacy";
    Q2_K = 10 => Q2_K, "Q2_K mix";
    Q3_K_S = 11 => Q3_K, "Q3_K small mix";
    Q3_K_M = 12 => Q3_K, "Q3_K medium mix";
    Q3_K_L = 13 => Q3_K, "Q3_K large mix";
    Q4_K_S = 14 => Q4_K, "Q4_K small mix";
    Q4_K_M = 15 => Q4_K, "Q4_K medium mix";
    Q5_K_S = 16 => Q5_K, "Q5_K small mix";
    Q5_K_M = 17 => Q5_K, "Q5_K medium mix";
    Q6_K = 18 => Q6_K, "Q6_K";
    IQ2_XXS = 19 => IQ2_XXS, "2.06 bpw";
    IQ2_XS = 20 => IQ2_XS, "2.31 bpw";
    Q2_K_S = 21 => Q2_K, "Q2_K small mix (needs an imatrix)";
    IQ3_XS = 22 => IQ3_S, "3.3 bpw mix";
    IQ3_XXS = 23 => IQ3_XXS, "3.06 bpw";
    IQ1_S = 24 => IQ1_S, "1.56 bpw";
    IQ4_NL = 25 => IQ4_NL, "4.5 bpw non-linear";
    IQ3_S = 26 => IQ3_S, "3.44 bpw";
    IQ3_M = 27 => IQ3_S, "3.66 bpw mix";
    IQ2_S = 28 => IQ2_XS, "2.5 bpw mix";
    IQ2_M = 29 => IQ2_S, "2.7 bpw mix";
    IQ4_XS = 30 => IQ4_XS, "4.25 bpw non-linear";
    IQ1_M = 31 => IQ1_M, "1.75 bpw";
    BF16 = 32 => BF16, "bfloat16 (except 1-D tensors)";
    TQ1_0 = 36 => TQ1_0, "1.69 bpw ternary";
    TQ2_0 = 37 => TQ2_0, "2.06 bpw ternary";
    MXFP4_MOE = 38 => MXFP4, "MXFP4 for MoE experts, Q8_0 elsewhere";
    Q1_0 = 40 => Q1_0, "1.125 bpw";
    Q2_0 = 41 => Q2_0, "2.25 bpw (group 64)";
}

impl FileType {
    /// The `general.file_type` value.
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// Parse a mix name as llama-quantize accepts it, case-insensitively, including its aliases
    /// `Q3_K`/`Q4_K`/`Q5_K` (the `_M` mixes) and `F32`. `COPY` is not a file type: see
    /// [`MixOptions::only_copy`].
    pub fn from_name(name: &str) -> Option<FileType> {
        let n = name.trim().to_ascii_uppercase();
        let alias = match n.as_str() {
            "F32" => Some(FileType::ALL_F32),
            "Q3_K" => Some(FileType::Q3_K_M),
            "Q4_K" => Some(FileType::Q4_K_M),
            "Q5_K" => Some(FileType::Q5_K_M),
            _ => None,
        };
        alias.or_else(|| FileType::ALL.iter().copied().find(|f| f.name() == n))
    }

    /// The file type whose `general.file_type` value is `id`.
    pub fn from_id(id: u32) -> Option<FileType> {
        FileType::ALL.iter().copied().find(|f| f.id() == id)
    }

    fn is_iq1_iq2(self) -> bool {
        use FileType::*;
        matches!(self, IQ2_XXS | IQ2_XS | IQ1_S | IQ2_S | IQ2_M | IQ1_M)
    }
}

/// The model facts the mix rules look at (from the GGUF metadata).
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// `general.architecture`.
    pub arch: String,
    /// `<arch>.block_count`.
    pub n_layer: u32,
    /// `<arch>.attention.head_count` (of layer 0 when it is an array).
    pub n_head: u32,
    /// `<arch>.attention.head_count_kv` (defaults to `n_head`).
    pub n_head_kv: u32,
    /// `<arch>.expert_count` (0 without experts).
    pub n_expert: u32,
}

impl ModelInfo {
    fn n_gqa(&self) -> u32 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }
    /// llama.cpp calls 80-layer llama models with grouped KV heads "70B" and gives their attn_v
    /// more bits (`llm_build_llama` type detection, PR #2807).
    fn is_70b(&self) -> bool {
        self.arch == "llama" && self.n_layer == 80 && self.n_head != self.n_head_kv
    }
    fn is_falcon(&self) -> bool {
        self.arch == "falcon"
    }
}

/// One tensor as the planner sees it.
#[derive(Clone, Debug)]
pub struct TensorDesc {
    /// GGUF tensor name.
    pub name: String,
    /// Dimensions in GGUF `ne` order (`dims[0]` is the row length).
    pub dims: Vec<u64>,
    /// Current type.
    pub ty: QuantType,
}

/// llama-quantize's options that affect type choice.
#[derive(Clone, Debug)]
pub struct MixOptions {
    /// The mix.
    pub ftype: FileType,
    /// `--output-tensor-type`.
    pub output_tensor_type: Option<QuantType>,
    /// `--token-embedding-type`.
    pub token_embedding_type: Option<QuantType>,
    /// `--tensor-type REGEX=TYPE`, first match wins (searched anywhere in the name).
    pub tensor_types: Vec<(Regex, QuantType)>,
    /// `--pure`: no per-tensor mix rules (overrides still apply).
    pub pure: bool,
    /// `false` with `--leave-output-tensor`.
    pub quantize_output_tensor: bool,
    /// `COPY`: copy every tensor as it is.
    pub only_copy: bool,
    /// An importance matrix is given (some rules depend on it).
    pub has_imatrix: bool,
}

impl MixOptions {
    /// Defaults for a mix, as llama-quantize without extra flags.
    pub fn new(ftype: FileType) -> MixOptions {
        MixOptions {
            ftype,
            output_tensor_type: None,
            token_embedding_type: None,
            tensor_types: Vec::new(),
            pure: false,
            quantize_output_tensor: true,
            only_copy: false,
            has_imatrix: false,
        }
    }
}

/// The decision for one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Index of the tensor in the input slice.
    pub index: usize,
    /// Type to write.
    pub target: QuantType,
    /// Whether the tensor may be quantized at all (`tensor_allows_quantization`).
    pub allows_quantization: bool,
    /// Whether llama-quantize refuses this choice without an importance matrix
    /// (`tensor_requires_imatrix`).
    pub requires_imatrix: bool,
    /// The row length did not fit the mix's type and a fallback was taken (`tensor_type_fallback`).
    pub fell_back: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Category {
    Output,
    TokenEmbd,
    AttnQkv,
    AttnKvB,
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

fn is_token_embd(name: &str) -> bool {
    name == "token_embd.weight" || name == "per_layer_token_embd.weight"
}

/// `tensor_get_category`: broad roles by name, checked in llama.cpp's order.
fn category(name: &str) -> Category {
    use Category::*;
    if name == "output.weight" {
        return Output;
    }
    if is_token_embd(name) {
        return TokenEmbd;
    }
    for (pat, c) in [
        ("attn_qkv.weight", AttnQkv),
        ("attn_kv_b.weight", AttnKvB),
        ("attn_v.weight", AttnV),
        ("attn_k.weight", AttnK),
        ("attn_q.weight", AttnQ),
        ("attn_output.weight", AttnOutput),
        ("ffn_up", FfnUp),
        ("ffn_gate", FfnGate),
        ("ffn_down", FfnDown),
    ] {
        if name.contains(pat) {
            return c;
        }
    }
    Other
}

fn is_attn_v(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// `tensor_allows_quantization`: only 2-D/3-D weights, never norms, routers, position/token-type
/// embeddings or the small special weights some architectures have.
pub fn allows_quantization(name: &str, n_dims: usize, opts: &MixOptions) -> bool {
    if opts.only_copy || n_dims < 2 || !name.ends_with("weight") {
        return false;
    }
    if !opts.quantize_output_tensor && name == "output.weight" {
        return false;
    }
    const NEVER: &[&str] = &[
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ];
    if NEVER.iter().any(|p| name.contains(p)) {
        return false;
    }
    // LLM_TENSOR_POS_EMBD / LLM_TENSOR_TOKEN_TYPES for every architecture.
    name != "position_embd.weight" && name != "token_types.weight"
}

/// `tensor_requires_imatrix`.
fn requires_imatrix(name: &str, ty: QuantType, ftype: FileType) -> bool {
    if is_token_embd(name) || name == "output.weight" {
        return false;
    }
    use QuantType::*;
    match ty {
        IQ3_XXS | IQ2_XXS | IQ2_XS | IQ2_S | IQ1_M | IQ1_S => true,
        Q2_K => ftype == FileType::Q2_K_S,
        _ => false,
    }
}

/// `tensor_type_fallback`: a type whose block fits the row length.
fn fallback(ncols: u64, target: QuantType) -> Result<(QuantType, bool)> {
    use QuantType::*;
    if ncols.is_multiple_of(target.block_size() as u64) {
        return Ok((target, false));
    }
    let mut t = match target {
        IQ1_S | IQ1_M | IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ4_XS => IQ4_NL,
        Q2_0 | Q2_K | Q3_K | TQ1_0 | TQ2_0 => Q4_0,
        Q4_K => Q5_0,
        Q5_K => Q5_1,
        Q6_K => Q8_0,
        t if t.block_size() <= 32 => t,
        t => return Err(Error::value(format!("no fallback type is defined for {t} with rows of {ncols}"))),
    };
    if !ncols.is_multiple_of(t.block_size() as u64) {
        t = F16;
    }
    Ok((t, true))
}

/// Layer counters llama.cpp keeps while walking the tensors (`quantize_state_impl`).
struct State<'a> {
    model: &'a ModelInfo,
    opts: &'a MixOptions,
    has_tied_embeddings: bool,
    n_attention_wv: i64,
    i_attention_wv: i64,
    i_ffn_down: i64,
    i_ffn_gate: i64,
    i_ffn_up: i64,
}

fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

impl State<'_> {
    /// `layer_info`: with experts the layer comes from the name, else from the running counter.
    fn layer(&self, counter: i64, name: &str) -> Result<(i64, i64)> {
        let n = self.model.n_layer as i64;
        if self.model.n_expert > 1 {
            let i = parse_layer(name).ok_or_else(|| Error::value(format!("cannot determine the layer of {name}")))?;
            if i < 0 || i >= n {
                return Err(Error::value(format!("bad layer {i} for tensor {name}: must be in [0, {n})")));
            }
            return Ok((i, n));
        }
        Ok((counter, n))
    }

    /// `llama_tensor_get_type_impl`: the mix rules.
    // The if-chains follow llama-quantize's rules one by one, in its order; arms that pick the
    // same type stay separate so each rule can be matched against the original.
    #[allow(clippy::if_same_then_else)]
    fn mix_rule(&mut self, mut t: QuantType, name: &str, ne0: u64, ne2: u64, cat: Category) -> Result<QuantType> {
        use FileType as F;
        use QuantType as Q;
        let ft = self.opts.ftype;
        let m = self.model;
        let n_gqa = m.n_gqa();
        let has_imatrix = self.opts.has_imatrix;

        if cat == Category::Output || (self.has_tied_embeddings && cat == Category::TokenEmbd) {
            if let Some(o) = self.opts.output_tensor_type {
                t = o;
            } else if ft == F::MXFP4_MOE {
                t = Q::Q8_0;
            } else if m.is_falcon() || !ne0.is_multiple_of(t.block_size() as u64) {
                t = Q::Q8_0;
            } else if matches!(ft, F::IQ2_XXS | F::IQ2_XS | F::IQ3_XXS | F::IQ1_S | F::IQ2_S | F::IQ2_M | F::IQ1_M) {
                t = Q::Q5_K;
            } else if t != Q::Q8_0 {
                t = Q::Q6_K;
            }
        } else if ft == F::MXFP4_MOE {
            t = if ne2 > 1 { Q::MXFP4 } else { Q::Q8_0 };
        } else if cat == Category::TokenEmbd {
            if let Some(o) = self.opts.token_embedding_type {
                t = o;
            } else if matches!(ft, F::IQ2_XXS | F::IQ2_XS | F::IQ1_S | F::IQ1_M) {
                t = Q::Q2_K;
            } else if matches!(ft, F::IQ2_S | F::IQ2_M | F::IQ3_XXS) {
                t = Q::IQ3_S;
            } else if matches!(ft, F::TQ1_0 | F::TQ2_0 | F::Q2_0) {
                t = Q::Q4_K;
            }
        } else if ft.is_iq1_iq2() {
            let iq2_sm = matches!(ft, F::IQ2_S | F::IQ2_M);
            if is_attn_v(cat) {
                t = if n_gqa >= 4 || m.n_expert >= 4 {
                    Q::Q4_K
                } else if iq2_sm {
                    Q::IQ3_S
                } else {
                    Q::Q2_K
                };
                self.i_attention_wv += 1;
            } else if m.n_expert == 8 && cat == Category::AttnK {
                t = Q::Q4_K;
            } else if cat == Category::FfnDown {
                if self.i_ffn_down < m.n_layer as i64 / 8 {
                    t = if iq2_sm { Q::IQ3_S } else { Q::Q2_K };
                }
                self.i_ffn_down += 1;
            } else if cat == Category::AttnOutput {
                if m.n_expert == 8 {
                    t = Q::Q5_K;
                } else if matches!(ft, F::IQ1_S | F::IQ1_M) {
                    t = Q::IQ2_XXS;
                } else if iq2_sm {
                    t = Q::IQ3_S;
                }
            }
        } else if is_attn_v(cat) {
            if ft == F::Q2_K {
                t = if n_gqa >= 4 { Q::Q4_K } else { Q::Q3_K };
            } else if ft == F::Q2_K_S && n_gqa >= 4 {
                t = Q::Q4_K;
            } else if ft == F::IQ3_XXS {
                t = if n_gqa >= 4 {
                    Q::Q4_K
                } else if !has_imatrix {
                    Q::IQ3_S
                } else {
                    Q::IQ3_XXS
                };
            } else if matches!(ft, F::IQ3_XS | F::IQ3_S) && n_gqa >= 4 {
                t = Q::Q4_K;
            } else if ft == F::IQ3_M {
                t = Q::Q4_K;
            } else if ft == F::Q3_K_M {
                t = if self.i_attention_wv < 2 { Q::Q5_K } else { Q::Q4_K };
            } else if ft == F::Q3_K_L {
                t = Q::Q5_K;
            } else if matches!(ft, F::IQ4_NL | F::IQ4_XS) && n_gqa >= 4 {
                t = Q::Q5_K;
            } else if matches!(ft, F::Q4_K_M | F::Q5_K_M) && use_more_bits(self.i_attention_wv, self.n_attention_wv) {
                t = Q::Q6_K;
            } else if ft == F::Q4_K_S && self.i_attention_wv < 4 {
                t = Q::Q5_K;
            }
            if m.is_70b() && matches!(t, Q::Q3_K | Q::Q4_K) {
                t = Q::Q5_K;
            }
            if m.n_expert == 8 {
                t = Q::Q8_0;
            }
            self.i_attention_wv += 1;
        } else if cat == Category::AttnK {
            if m.n_expert == 8 {
                t = Q::Q8_0;
            } else if ft == F::IQ3_XS {
                t = Q::IQ3_XXS;
            } else if ft == F::IQ3_XXS {
                t = Q::IQ2_S;
            }
        } else if cat == Category::AttnQ {
            if ft == F::IQ3_XS {
                t = Q::IQ3_XXS;
            } else if ft == F::IQ3_XXS {
                t = Q::IQ2_S;
            }
        } else if cat == Category::FfnDown {
            let (i, n) = self.layer(self.i_ffn_down, name)?;
            let falcon = m.is_falcon();
            if ft == F::Q2_K {
                t = Q::Q3_K;
            } else if ft == F::Q2_K_S {
                if i < n / 8 {
                    t = Q::Q4_K;
                }
            } else if ft == F::IQ3_XXS && !has_imatrix {
                t = if i < n / 8 { Q::Q4_K } else { Q::Q3_K };
            } else if ft == F::Q3_K_M {
                t = if i < n / 16 {
                    Q::Q5_K
                } else if !falcon || use_more_bits(i, n) {
                    Q::Q4_K
                } else {
                    Q::Q3_K
                };
            } else if ft == F::IQ3_M && (i < n / 8 || (m.n_expert == 8 && use_more_bits(i, n))) {
                t = Q::Q4_K;
            } else if ft == F::Q3_K_L {
                t = if falcon { Q::Q4_K } else { Q::Q5_K };
            } else if ft == F::Q4_K_M {
                if falcon {
                    t = if i < n / 16 {
                        Q::Q6_K
                    } else if use_more_bits(i, n) {
                        Q::Q5_K
                    } else {
                        Q::Q4_K
                    };
                } else if use_more_bits(i, n) {
                    t = Q::Q6_K;
                }
            } else if i < n / 8 && matches!(ft, F::IQ4_NL | F::IQ4_XS) && !has_imatrix {
                t = Q::Q5_K;
            } else if ft == F::Q5_K_M && use_more_bits(i, n) {
                t = Q::Q6_K;
            } else if ft == F::Q4_K_S && !falcon && i < n / 8 {
                t = Q::Q5_K;
            } else if matches!(ft, F::Q4_0 | F::Q5_0) && has_imatrix && i < n / 8 {
                t = if ft == F::Q4_0 { Q::Q4_1 } else { Q::Q5_1 };
            }
            self.i_ffn_down += 1;
        } else if cat == Category::AttnOutput {
            if !m.is_falcon() {
                if m.n_expert == 8 {
                    if matches!(
                        ft,
                        F::Q2_K | F::IQ3_XS | F::IQ3_XXS | F::Q3_K_S | F::Q3_K_M | F::IQ4_NL | F::Q4_K_S | F::Q4_K_M | F::IQ3_S | F::IQ3_M | F::IQ4_XS
                    ) {
                        t = Q::Q5_K;
                    }
                } else if ft == F::Q2_K {
                    t = Q::Q3_K;
                } else if ft == F::IQ3_XXS {
                    t = Q::IQ3_S;
                } else if ft == F::Q3_K_M {
                    t = Q::Q4_K;
                } else if ft == F::Q3_K_L {
                    t = Q::Q5_K;
                } else if ft == F::IQ3_M {
                    t = Q::Q4_K;
                }
            } else if ft == F::Q3_K_L {
                t = Q::Q4_K;
            }
        } else if cat == Category::AttnQkv {
            // Unreachable in llama.cpp too (attn_qkv is an attn_v category and handled above); kept
            // for parity with its source.
            if matches!(ft, F::Q3_K_M | F::Q3_K_L | F::IQ3_M) {
                t = Q::Q4_K;
            } else if ft == F::Q4_K_M {
                t = Q::Q5_K;
            } else if ft == F::Q5_K_M {
                t = Q::Q6_K;
            }
        } else if cat == Category::FfnGate || cat == Category::FfnUp {
            let counter = if cat == Category::FfnGate { self.i_ffn_gate } else { self.i_ffn_up };
            let (i, n) = self.layer(counter, name)?;
            if ft == F::IQ3_XS && i >= n / 8 && i < 7 * n / 8 {
                t = Q::IQ3_XXS;
            }
            if cat == Category::FfnGate {
                self.i_ffn_gate += 1;
            } else {
                self.i_ffn_up += 1;
            }
        }
        Ok(t)
    }
}

/// `sscanf(name, "blk.%d.")`.
fn parse_layer(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?;
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '+')).unwrap_or(rest.len());
    let (num, tail) = rest.split_at(end);
    if !tail.starts_with('.') {
        return None;
    }
    num.parse().ok()
}

/// The order llama-quantize processes and writes tensors in (`weight_name_comparer`): by layer
/// number (tensors outside `blk.N.` first), then by name.
pub fn llama_order(names: &[&str]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..names.len()).collect();
    idx.sort_by(|&a, &b| {
        let la = parse_layer(names[a]).unwrap_or(-1);
        let lb = parse_layer(names[b]).unwrap_or(-1);
        la.cmp(&lb).then_with(|| names[a].as_bytes().cmp(names[b].as_bytes()))
    });
    idx
}

/// Decide the type of every tensor, returning choices in llama-quantize's processing order.
pub fn plan(model: &ModelInfo, tensors: &[TensorDesc], opts: &MixOptions) -> Result<Vec<Choice>> {
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    let order = llama_order(&names);
    let default_type = opts.ftype.default_type();
    let cats: Vec<Category> = tensors.iter().map(|t| category(&t.name)).collect();
    let mut st = State {
        model,
        opts,
        has_tied_embeddings: !cats.contains(&Category::Output),
        n_attention_wv: cats.iter().filter(|c| is_attn_v(**c)).count() as i64,
        i_attention_wv: 0,
        i_ffn_down: 0,
        i_ffn_gate: 0,
        i_ffn_up: 0,
    };
    let mut out = Vec::with_capacity(tensors.len());
    for i in order {
        let t = &tensors[i];
        let cat = cats[i];
        let allows = allows_quantization(&t.name, t.dims.len(), opts);
        let ne0 = t.dims.first().copied().unwrap_or(1);
        let ne2 = t.dims.get(2).copied().unwrap_or(1);
        let mut fell_back = false;
        let target = if !allows {
            t.ty
        } else if let (Some(o), Category::TokenEmbd) = (opts.token_embedding_type, cat) {
            // An explicit --tensor-type may still name per_layer_token_embd.
            let named = t.name == "per_layer_token_embd.weight" && opts.tensor_types.iter().any(|(r, _)| r.is_match(&t.name));
            if named {
                pick(&mut st, default_type, t, cat, ne0, ne2, &mut fell_back)?
            } else {
                o
            }
        } else if let (Some(o), Category::Output) = (opts.output_tensor_type, cat) {
            o
        } else {
            pick(&mut st, default_type, t, cat, ne0, ne2, &mut fell_back)?
        };
        out.push(Choice {
            index: i,
            target,
            allows_quantization: allows,
            requires_imatrix: requires_imatrix(&t.name, target, opts.ftype),
            fell_back,
        });
    }
    Ok(out)
}

/// `llama_tensor_get_type` for a quantizable tensor: overrides, then the mix rules, then the
/// shape fallback.
fn pick(
    st: &mut State<'_>,
    default_type: QuantType,
    t: &TensorDesc,
    cat: Category,
    ne0: u64,
    ne2: u64,
    fell_back: &mut bool,
) -> Result<QuantType> {
    let mut ty = default_type;
    if !default_type.is_quantized() {
        return Ok(ty);
    }
    let manual = st.opts.tensor_types.iter().find(|(r, _)| r.is_match(&t.name)).map(|(_, q)| *q);
    if let Some(q) = manual {
        ty = q;
    } else if !st.opts.pure {
        ty = st.mix_rule(ty, &t.name, ne0, ne2, cat)?;
    }
    let (ty, fb) = fallback(ne0, ty)?;
    *fell_back = fb;
    Ok(ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases() {
        assert_eq!(FileType::from_name("q4_k"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::from_name("F32"), Some(FileType::ALL_F32));
        assert_eq!(FileType::from_name("IQ2_M").map(|f| f.default_type()), Some(QuantType::IQ2_S));
        assert_eq!(FileType::from_name("nope"), None);
    }

    #[test]
    fn use_more_bits_matches_llama_formula() {
        // 30 layers: first 3, last 4 (>= 26), and every third from layer 5.
        let picked: Vec<i64> = (0..30).filter(|&i| use_more_bits(i, 30)).collect();
        assert_eq!(picked, vec![0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
    }

    #[test]
    fn order_puts_non_block_tensors_first() {
        let names = ["blk.10.a", "blk.2.b", "token_embd.weight", "blk.2.a", "output_norm.weight"];
        let o: Vec<&str> = llama_order(&names).into_iter().map(|i| names[i]).collect();
        assert_eq!(o, ["output_norm.weight", "token_embd.weight", "blk.2.a", "blk.2.b", "blk.10.a"]);
    }

    #[test]
    fn fallbacks() {
        assert_eq!(fallback(576, QuantType::Q4_K).unwrap(), (QuantType::Q5_0, true));
        assert_eq!(fallback(576, QuantType::IQ2_XS).unwrap(), (QuantType::IQ4_NL, true));
        assert_eq!(fallback(100, QuantType::Q6_K).unwrap(), (QuantType::F16, true));
        assert_eq!(fallback(512, QuantType::Q6_K).unwrap(), (QuantType::Q6_K, false));
    }
}

//! The ggml tensor types: ids, names and block geometry.
//!
//! Ids, block sizes and bytes per block are those of ggml (`ggml.h` / `ggml-common.h` at the ggml
//! version the golden data pins, 0.25.3). Ids 4, 5 (Q4_2, Q4_3), 31–33 (Q4_0_4_4/4_8/8_8) and 36–38
//! (IQ4_NL_4_4/4_8/8_8) were removed from ggml and are rejected everywhere.

use std::fmt;

macro_rules! quant_types {
    ($( $(#[$doc:meta])* $name:ident = $id:literal, $blck:literal, $size:literal, $quant:literal; )*) => {
        /// A ggml tensor type. The discriminant is the ggml type id stored in GGUF files.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum QuantType {
            $( $(#[$doc])* $name = $id, )*
        }

        impl QuantType {
            /// Every type ggml defines, in id order.
            pub const ALL: &'static [QuantType] = &[$(QuantType::$name),*];

            /// The type with this ggml id, or `None` for unknown and removed ids.
            pub const fn from_id(id: u32) -> Option<QuantType> {
                match id {
                    $( $id => Some(QuantType::$name), )*
                    _ => None,
                }
            }

            /// ggml's name, as gguf-py's `GGMLQuantizationType` spells it (`"Q4_K"`, `"IQ2_XXS"`).
            pub const fn name(self) -> &'static str {
                match self { $( QuantType::$name => stringify!($name), )* }
            }

            /// Number of values in one block.
            pub const fn block_size(self) -> usize {
                match self { $( QuantType::$name => $blck, )* }
            }

            /// Number of bytes in one block.
            pub const fn type_size(self) -> usize {
                match self { $( QuantType::$name => $size, )* }
            }

            /// True for block-quantized types (everything but the plain float and integer types).
            pub const fn is_quantized(self) -> bool {
                match self { $( QuantType::$name => $quant, )* }
            }
        }
    };
}

quant_types! {
    /// 32-bit IEEE float.
    F32 = 0, 1, 4, false;
    /// 16-bit IEEE half float.
    F16 = 1, 1, 2, false;
    /// 4.5 bpw: 32 values, f16 scale, 4-bit quants (`x = d * (q - 8)`).
    Q4_0 = 2, 32, 18, true;
    /// 5.0 bpw: 32 values, f16 scale and min, 4-bit quants (`x = d * q + m`).
    Q4_1 = 3, 32, 20, true;
    /// 5.5 bpw: 32 values, f16 scale, 5-bit quants.
    Q5_0 = 6, 32, 22, true;
    /// 6.0 bpw: 32 values, f16 scale and min, 5-bit quants.
    Q5_1 = 7, 32, 24, true;
    /// 8.5 bpw: 32 values, f16 scale, int8 quants.
    Q8_0 = 8, 32, 34, true;
    /// 9.0 bpw activation type: Q8_0 plus `s = d * sum(q)` (dotted with Q4_1/Q5_1).
    Q8_1 = 9, 32, 36, true;
    /// 2.625 bpw K-quant: 16 sub-blocks of 16 with 4-bit scales and mins.
    Q2_K = 10, 256, 84, true;
    /// 3.4375 bpw K-quant: 16 sub-blocks of 16 with 6-bit scales.
    Q3_K = 11, 256, 110, true;
    /// 4.5 bpw K-quant: 8 sub-blocks of 32 with 6-bit scales and mins.
    Q4_K = 12, 256, 144, true;
    /// 5.5 bpw K-quant: 8 sub-blocks of 32 with 6-bit scales and mins.
    Q5_K = 13, 256, 176, true;
    /// 6.5625 bpw K-quant: 16 sub-blocks of 16 with int8 scales.
    Q6_K = 14, 256, 210, true;
    /// Activation type of the K and IQ quants: f32 scale, int8 quants, per-16 sums.
    Q8_K = 15, 256, 292, true;
    /// 2.0625 bpw, E8 lattice grid codebook.
    IQ2_XXS = 16, 256, 66, true;
    /// 2.3125 bpw, 512-entry grid codebook.
    IQ2_XS = 17, 256, 74, true;
    /// 3.0625 bpw, 256-entry grid codebook.
    IQ3_XXS = 18, 256, 98, true;
    /// 1.5625 bpw, 2048-entry grid codebook.
    IQ1_S = 19, 256, 50, true;
    /// 4.5 bpw, non-linear 16-value codebook, blocks of 32.
    IQ4_NL = 20, 32, 18, true;
    /// 3.4375 bpw, 512-entry grid codebook.
    IQ3_S = 21, 256, 110, true;
    /// 2.5625 bpw, 1024-entry grid codebook.
    IQ2_S = 22, 256, 82, true;
    /// 4.25 bpw, non-linear 16-value codebook, super-blocks of 256.
    IQ4_XS = 23, 256, 136, true;
    /// 8-bit signed integer.
    I8 = 24, 1, 1, false;
    /// 16-bit signed integer.
    I16 = 25, 1, 2, false;
    /// 32-bit signed integer.
    I32 = 26, 1, 4, false;
    /// 64-bit signed integer.
    I64 = 27, 1, 8, false;
    /// 64-bit IEEE float.
    F64 = 28, 1, 8, false;
    /// 1.75 bpw, 2048-entry grid codebook with per-16 shifts.
    IQ1_M = 29, 256, 56, true;
    /// bfloat16.
    BF16 = 30, 1, 2, false;
    /// 1.6875 bpw ternary, base-3 packed.
    TQ1_0 = 34, 256, 54, true;
    /// 2.0625 bpw ternary, 2-bit packed.
    TQ2_0 = 35, 256, 66, true;
    /// 4.25 bpw microscaling FP4 (E2M1 values, E8M0 shared scale per 32).
    MXFP4 = 39, 32, 17, true;
    /// 4.5 bpw NVIDIA FP4 (E2M1 values, UE4M3 scale per 16).
    NVFP4 = 40, 64, 36, true;
    /// 1.125 bpw binary: sign bits with an f16 scale per 128.
    Q1_0 = 41, 128, 18, true;
    /// 2.25 bpw: 2-bit quants with an f16 scale per 64.
    Q2_0 = 42, 64, 18, true;
}

impl QuantType {
    /// Number of ggml types kquants knows (the length of [`QuantType::ALL`]).
    pub const COUNT: usize = QuantType::ALL.len();

    /// The ggml type id.
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// Parse a type name case-insensitively (`"q4_k"`, `"IQ2_XXS"`).
    pub fn from_name(name: &str) -> Option<QuantType> {
        QuantType::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Bits per weight: `8 * type_size / block_size`.
    pub fn bits_per_weight(self) -> f64 {
        8.0 * self.type_size() as f64 / self.block_size() as f64
    }

    /// Bytes taken by a row of `n` values, or `None` when `n` is not a multiple of the block size
    /// (or the size overflows).
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_size()) {
            return None;
        }
        (n / self.block_size()).checked_mul(self.type_size())
    }

    /// The type ggml quantizes activations to before calling this type's `vec_dot`
    /// (ggml-cpu `type_traits_cpu[t].vec_dot_type`). `None` for types ggml cannot dot.
    pub const fn dot_type(self) -> Option<QuantType> {
        use QuantType::*;
        match self {
            F32 => Some(F32),
            F16 => Some(F16),
            BF16 => Some(BF16),
            Q4_0 | Q5_0 | Q8_0 | IQ4_NL | MXFP4 | NVFP4 | Q1_0 | Q2_0 => Some(Q8_0),
            Q4_1 | Q5_1 => Some(Q8_1),
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ2_XXS | IQ2_XS | IQ3_XXS | IQ1_S | IQ3_S
            | IQ2_S | IQ4_XS | IQ1_M | TQ1_0 | TQ2_0 => Some(Q8_K),
            Q8_1 | Q8_K | I8 | I16 | I32 | I64 | F64 => None,
        }
    }

    /// True where ggml refuses to quantize without an importance matrix
    /// (`ggml_quantize_requires_imatrix`: IQ2_XXS, IQ2_XS, IQ1_S).
    pub const fn requires_imatrix(self) -> bool {
        matches!(self, QuantType::IQ2_XXS | QuantType::IQ2_XS | QuantType::IQ1_S)
    }

    /// True for activation-only types: ggml has row quantizers for them but no `ggml_quantize_chunk`.
    pub const fn is_activation_only(self) -> bool {
        matches!(self, QuantType::Q8_1 | QuantType::Q8_K)
    }
}

impl fmt::Display for QuantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_removed_ids_are_unknown() {
        for &t in QuantType::ALL {
            assert_eq!(QuantType::from_id(t.id()), Some(t));
            assert_eq!(QuantType::from_name(&t.name().to_lowercase()), Some(t));
        }
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 43, 1000] {
            assert_eq!(QuantType::from_id(removed), None);
        }
    }

    #[test]
    fn geometry_matches_ggml() {
        // ggml-common.h static_asserts: bytes per block.
        assert_eq!(QuantType::Q4_K.type_size(), 2 + 2 + 12 + 128);
        assert_eq!(QuantType::Q6_K.type_size(), 128 + 64 + 16 + 2);
        assert_eq!(QuantType::Q8_K.type_size(), 4 + 256 + 32);
        assert_eq!(QuantType::IQ4_XS.row_bytes(512), Some(272));
        assert_eq!(QuantType::Q4_K.row_bytes(576), None);
        assert!((QuantType::Q4_0.bits_per_weight() - 4.5).abs() < 1e-12);
    }
}

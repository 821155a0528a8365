//! llama.cpp's per-tensor type choice for Q4_K_M and Q5_K_M files (`docs/gguf.md` in the shared
//! docs, from llama.cpp's quantizer), so synthetic weights and memory estimates can have the
//! type mix of the official files without a download.
//!
//! The base type (Q4_K or Q5_K) everywhere, except:
//! - `token_embd` (the tied head) is Q6_K;
//! - `ffn_down` / `ffn_down_exps` of block i is Q6_K when [`use_more_bits`]`(i, blocks)`;
//! - `attn_v` of the a-th attention block is Q6_K when `use_more_bits(a, attention blocks)`;
//! - the router (`ffn_gate_inp`) and every vector stay F32.

use crate::dtype::DType;
use crate::model::config::{Config, LayerKind};

/// The named mixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    Q4KM,
    Q5KM,
}

impl Mix {
    /// "q4_k_m" / "q5_k_m" (case-insensitive).
    pub fn parse(s: &str) -> Option<Mix> {
        match s.to_ascii_lowercase().as_str() {
            "q4_k_m" => Some(Mix::Q4KM),
            "q5_k_m" => Some(Mix::Q5KM),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mix::Q4KM => "q4_k_m",
            Mix::Q5KM => "q5_k_m",
        }
    }

    /// The base type.
    pub fn base(self) -> DType {
        match self {
            Mix::Q4KM => DType::Q4_K,
            Mix::Q5KM => DType::Q5_K,
        }
    }

    /// The type of the matrix GGUF tensor `gguf` (e.g. `blk.5.ffn_down_exps.weight`) in a
    /// model of `cfg`'s shape.
    pub fn matrix_type(self, gguf: &str, cfg: &Config) -> DType {
        if gguf == "token_embd.weight" || gguf == "output.weight" {
            return DType::Q6_K;
        }
        let Some((block, rest)) = gguf
            .strip_prefix("blk.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)))
        else {
            return self.base();
        };
        let attention: Vec<usize> = (0..cfg.num_layers())
            .filter(|&i| cfg.layer_types[i] == LayerKind::Attention)
            .collect();
        let more = match rest {
            "ffn_gate_inp.weight" => return DType::F32,
            "ffn_down.weight" | "ffn_down_exps.weight" => use_more_bits(block, cfg.num_layers()),
            "attn_v.weight" => attention
                .iter()
                .position(|&i| i == block)
                .is_some_and(|a| use_more_bits(a, attention.len())),
            _ => false,
        };
        if more {
            DType::Q6_K
        } else {
            self.base()
        }
    }
}

/// llama.cpp's rule for the tensors that get more bits: the first and last eighth of the
/// `n` layers, and every third one in between.
pub fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_types_of_lfm2_8b_a1b() {
        // docs/gguf.md: Q6_K on ffn_down(_exps) of these blocks, on attn_v of blocks 10 and 21.
        let cfg = Config::lfm2_8b_a1b(24).unwrap();
        let more: Vec<usize> = (0..24).filter(|&i| use_more_bits(i, 24)).collect();
        assert_eq!(more, [0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]);
        let m = Mix::Q4KM;
        let ty = |name: &str| m.matrix_type(name, &cfg);
        assert_eq!(ty("token_embd.weight"), DType::Q6_K);
        assert_eq!(ty("blk.0.ffn_down.weight"), DType::Q6_K);
        assert_eq!(ty("blk.5.ffn_down_exps.weight"), DType::Q6_K);
        assert_eq!(ty("blk.6.ffn_down_exps.weight"), DType::Q4_K);
        let v: Vec<usize> = (0..24)
            .filter(|i| {
                ty(&format!("blk.{i}.attn_v.weight")) == DType::Q6_K && cfg.layer_types[*i] == LayerKind::Attention
            })
            .collect();
        assert_eq!(v, [10, 21]);
        assert_eq!(ty("blk.6.attn_v.weight"), DType::Q4_K);
        assert_eq!(ty("blk.3.ffn_gate_inp.weight"), DType::F32);
        assert_eq!(ty("blk.3.ffn_up_exps.weight"), DType::Q4_K);
        assert_eq!(Mix::Q5KM.matrix_type("blk.3.ffn_up_exps.weight", &cfg), DType::Q5_K);
    }
}

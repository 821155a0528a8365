//! Sampling settings: how the next token is chosen (host-side values; the GPU sampler is
//! `model::sampling`, the CPU reference of its distribution `reference::sampling_probs`),
//! and [`TokenConstraint`], a rule on which tokens may come next (structured output), which
//! the GPU sampler applies as a mask.

use crate::error::{Error, Result};

/// How the next token is chosen. Filters apply in transformers' order: repetition penalty,
/// temperature, top-k, top-p, min-p.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0: greedy (argmax); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep the k most likely tokens (ties kept); 0: off.
    pub top_k: usize,
    /// Keep the smallest set holding this much probability; 1: off.
    pub top_p: f32,
    /// Keep tokens at least this fraction as likely as the most likely; 0: off.
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of tokens already in the sequence; 1: off.
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }

    /// LFM2-8B-A1B's model card: temperature 0.3, min_p 0.15, repetition penalty 1.05.
    pub fn model_card(seed: u64) -> Self {
        SamplingParams {
            temperature: 0.3,
            min_p: 0.15,
            repetition_penalty: 1.05,
            seed,
            ..Self::greedy()
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Invalid(format!("sampling: {what}")));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature must be ≥ 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top-p must be in (0, 1]");
        }
        if !(0.0..1.0).contains(&self.min_p) {
            return bad("min-p must be in [0, 1)");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition penalty must be > 0");
        }
        Ok(())
    }
}

/// What a [`TokenConstraint`] allows next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Draw among the tokens set in the mask just filled.
    Sample,
    /// These tokens, in order, are the only continuation: they are produced without a draw
    /// (the constraint has already taken them).
    Forced(Vec<u32>),
    /// The constraint is complete: nothing more may be generated.
    Done,
    /// No token is allowed here: generation ends (`GenStats::dead_end`).
    DeadEnd,
}

/// A rule on the tokens that may be generated (JSON Schema, grammar, regex), applied by the
/// GPU sampler as a bit mask before any filter. [`crate::constrain::Constraint`] is the
/// llguidance one; the session asks [`Self::next`] while the GPU runs the forward pass of
/// the token before.
pub trait TokenConstraint {
    /// What may come next; on [`Next::Sample`], `mask` holds the allowed tokens (bit i % 32
    /// of word i / 32: token i; ⌈vocab / 32⌉ words).
    fn next(&mut self, mask: &mut [u32]) -> Result<Next>;
    /// The token drawn from the last mask.
    fn accept(&mut self, token: u32) -> Result<()>;
}

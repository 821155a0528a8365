//! The session's blocking API for native programs: each call runs its async form to the end
//! (natively a readback polls the device itself, so the future never waits on anything else).

use super::{GenStats, Session};
use crate::error::Result;
use crate::sampling::TokenConstraint;
use pollster::block_on;

impl Session {
    /// Prefills `tokens` (continuing the sequence) and returns the greedy next token, plus
    /// the last position's logits when `want_logits`.
    pub fn prefill(&mut self, tokens: &[u32], want_logits: bool) -> Result<(u32, Option<Vec<f32>>)> {
        block_on(self.prefill_async(tokens, want_logits))
    }

    /// Decodes one token ([`Self::decode_async`]).
    pub fn decode(&mut self, token: Option<u32>, want_logits: bool) -> Result<(u32, Option<Vec<f32>>)> {
        block_on(self.decode_async(token, want_logits))
    }

    /// `count` chained greedy decode steps ([`Self::decode_chained_async`]).
    pub fn decode_chained(&mut self, count: usize, ids: &mut Vec<u32>) -> Result<()> {
        block_on(self.decode_chained_async(count, ids))
    }

    /// Prefill, then streamed decoding ([`Self::generate_async`]).
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        checkpoint: bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenStats> {
        block_on(self.generate_async(prompt, max_new, checkpoint, on_token))
    }

    /// Greedy generation with optional logits ([`Self::generate_greedy_async`]).
    pub fn generate_greedy(&mut self, prompt: &[u32], n: usize, want_logits: bool) -> Result<(Vec<u32>, Vec<f32>)> {
        block_on(self.generate_greedy_async(prompt, n, want_logits))
    }

    /// Every position's logits [T, vocab] ([`Self::prefill_all_logits_async`]).
    pub fn prefill_all_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        block_on(self.prefill_all_logits_async(tokens))
    }

    /// Every position's logits and the taps `wanted` names ([`Self::prefill_dump_async`]).
    #[allow(clippy::type_complexity)]
    pub fn prefill_dump(
        &mut self,
        tokens: &[u32],
        wanted: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<f32>, Vec<(String, Vec<f32>)>)> {
        block_on(self.prefill_dump_async(tokens, wanted))
    }

    /// Generation within `constraint` ([`Self::generate_constrained_async`]).
    pub fn generate_constrained(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        checkpoint: bool,
        constraint: &mut dyn TokenConstraint,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenStats> {
        block_on(self.generate_constrained_async(prompt, max_new, checkpoint, constraint, on_token))
    }
}

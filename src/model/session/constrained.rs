//! Constrained generation (structured output): each draw reads an allowed-token mask that
//! the host computes while the GPU runs the forward pass of the token before.
//!
//! Per token: the forward pass of the last token is submitted without a draw; the
//! constraint computes the next mask meanwhile (it needs that token, not its logits); the
//! mask is uploaded and the masked draw submitted; only the id is read back. Tokens the
//! constraint forces skip the draw, and a run of them is fed as one prefill.

use super::{GenStats, Mode, Session};
use crate::error::{Error, Result};
use crate::kernels::StepShape;
use crate::sampling::{Next, TokenConstraint};
use web_time::Instant;

impl Session {
    /// As [`Session::generate_async`], with every token allowed by `constraint`: prefills `prompt`
    /// (continuing the sequence), then hands each produced token to `on_token` (return false
    /// to stop) until the constraint is complete or stuck (`GenStats::dead_end`), `max_new`
    /// tokens, or a full context. Greedy settings take the largest allowed logit.
    pub async fn generate_constrained_async(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        checkpoint: bool,
        constraint: &mut dyn TokenConstraint,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenStats> {
        let mut st = GenStats::for_prompt(prompt.len());
        if max_new == 0 {
            return Ok(st);
        }
        if prompt.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        let start = Instant::now();
        self.feed(prompt, true)?;
        if checkpoint {
            self.checkpoint();
        }
        let mut mask = vec![0u32; self.model.cfg.vocab_size.div_ceil(32)];
        let mut decode_start = None;
        loop {
            let t = Instant::now();
            let next = constraint.next(&mut mask);
            st.mask_s += t.elapsed().as_secs_f64();
            let (tokens, drawn) = match next? {
                Next::Done => {
                    st.complete = true;
                    break;
                }
                Next::DeadEnd => {
                    st.dead_end = true;
                    break;
                }
                Next::Forced(tokens) => {
                    st.forced_tokens += tokens.len();
                    (tokens, false)
                }
                Next::Sample => {
                    let id = self.draw_masked(&mask).await?;
                    constraint.accept(id)?;
                    (vec![id], true)
                }
            };
            if decode_start.is_none() {
                st.prefill_s = start.elapsed().as_secs_f64();
                decode_start = Some(Instant::now());
            }
            let mut go = true;
            for &id in &tokens {
                st.new_tokens += 1;
                go = on_token(id) && !self.cancelled() && st.new_tokens < max_new;
                if !go {
                    break;
                }
            }
            if !go {
                break;
            }
            if self.pos + tokens.len() > self.state.ctx {
                st.context_full = true;
                break;
            }
            self.feed(&tokens, !drawn)?;
        }
        st.decode_s = decode_start.map_or(0.0, |d| d.elapsed().as_secs_f64());
        self.last = None;
        Ok(st)
    }

    /// Feeds `tokens` into the caches: forward passes only, no draw, nothing read back.
    /// `mark_seen`: add them to the sampler's seen mask (a drawn token is there already).
    fn feed(&mut self, tokens: &[u32], mark_seen: bool) -> Result<()> {
        self.check(tokens)?;
        if mark_seen {
            self.sampler.upload_seen(&self.model.gpu, &self.history, tokens);
        }
        for chunk in tokens.chunks(self.state.ubatch) {
            if self.cancelled() {
                self.last = None;
                return Err(Error::Cancelled);
            }
            self.write_ids(chunk);
            let mode = match chunk.len() {
                1 => Mode::Decode,
                _ => Mode::Prefill,
            };
            self.run_step(mode, chunk.len(), None, false, false)?;
            self.fed(chunk);
        }
        Ok(())
    }

    /// Uploads `mask` and draws from the last forward pass's logits among the tokens it
    /// allows; waits for the id.
    async fn draw_masked(&self, mask: &[u32]) -> Result<u32> {
        let gpu = &self.model.gpu;
        self.sampler.upload_allowed(gpu, mask);
        gpu.scoped("masked sampling", || {
            let mut enc = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("draw") });
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                let shape = StepShape { n_tokens: 1, splits: 1 };
                self.sampler.masked_program.record(&mut pass, shape);
            }
            enc.copy_buffer_to_buffer(&self.state.ids, 0, &self.state.staging_id, 0, 4);
            gpu.queue.submit([enc.finish()]);
            Ok(())
        })?;
        self.read_id().await
    }
}

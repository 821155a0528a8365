//! `lfm logits` and the oracle tests: every position's logits of a prefill, and the
//! intermediates (taps) named by HF module path, read back per ubatch.

use super::{check_logits, Session};
use crate::error::{Error, Result};
use crate::kernels::{StepShape, Tap};
use crate::model::forward::{self, Mode};

impl Session {
    /// Prefills `tokens` and returns the logits of every position, [T, vocab].
    pub async fn prefill_all_logits_async(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        Ok(self.prefill_dump_async(tokens, &|_| false).await?.0)
    }

    /// As [`Self::prefill_all_logits`], also reading back the intermediates whose names
    /// `wanted` accepts (HF module paths: `model.embed_tokens`, `model.layers.{i}` — the
    /// residual stream after layer i —, `model.embedding_norm`, `lm_head`), each [T, width].
    /// Not the token loop: it creates its readback buffer per call.
    #[allow(clippy::type_complexity)]
    pub async fn prefill_dump_async(
        &mut self,
        tokens: &[u32],
        wanted: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<f32>, Vec<(String, Vec<f32>)>)> {
        if tokens.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        self.check(tokens)?;
        if self.prefill_all.is_none() {
            let p = forward::build(
                &self.model,
                &self.state,
                &self.kernels,
                &self.uniforms,
                Mode::PrefillAllLogits,
                self.int8,
            )?;
            self.prefill_all = Some(p);
        }
        let all_taps = &self.prefill_all.as_ref().expect("built above").taps;
        let taps: Vec<usize> = (0..all_taps.len()).filter(|&i| wanted(&all_taps[i].name)).collect();
        let mut dumps: Vec<(String, Vec<f32>)> = taps.iter().map(|&i| (all_taps[i].name.clone(), Vec::new())).collect();
        let v = self.model.cfg.vocab_size;
        let mut out = Vec::with_capacity(tokens.len() * v);
        for chunk in tokens.chunks(self.state.logit_rows.min(self.state.ubatch)) {
            self.write_ids(chunk);
            match taps.is_empty() {
                true => self.run(Mode::PrefillAllLogits, chunk.len(), false, false)?,
                false => {
                    let n = chunk.len();
                    let during = format!("dumping intermediates at position {}", self.pos);
                    let (dump, sizes) = self.model.gpu.scoped(&during, || Ok(self.run_tapped(&taps, n)))?;
                    let values = self.read_taps(&dump, sizes).await?;
                    for ((_, dump), part) in dumps.iter_mut().zip(values) {
                        dump.extend(part);
                    }
                }
            }
            self.fed(chunk);
            self.last = None;
            let at = out.len() / v;
            out.extend(
                self.model
                    .gpu
                    .read_f32_async(&self.state.logits, 0, chunk.len() * v)
                    .await?,
            );
            check_logits(&out[at * v..], self.pos - chunk.len(), v)?;
        }
        Ok((out, dumps))
    }

    /// Submits one all-logits step of `n` tokens, pausing after each of the taps `picked` to
    /// copy what it names into the returned buffer (its parts' byte sizes, in order).
    fn run_tapped(&self, picked: &[usize], n: usize) -> (wgpu::Buffer, Vec<u64>) {
        let gpu = &self.model.gpu;
        let program = self.prefill_all.as_ref().expect("built before use");
        let taps: Vec<&Tap> = picked.iter().map(|&i| &program.taps[i]).collect();
        let sizes: Vec<u64> = taps.iter().map(|t| (n * t.row_values * 4) as u64).collect();
        let dump = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dump"),
            size: sizes.iter().sum::<u64>().max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue.write_buffer(
            &self.state.step,
            0,
            bytemuck::cast_slice(&[n as u32, self.pos as u32, 1, 0]),
        );
        let shape = StepShape {
            n_tokens: n as u32,
            splits: 1,
        };
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let (mut done, mut at) = (0, 0);
        for (t, &size) in taps.iter().zip(&sizes) {
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                program.record_range(&mut pass, shape, done..t.after);
            }
            enc.copy_buffer_to_buffer(&t.buffer, 0, &dump, at, size);
            (done, at) = (t.after, at + size);
        }
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            program.record_range(&mut pass, shape, done..program.dispatches.len());
        }
        gpu.queue.submit([enc.finish()]);
        (dump, sizes)
    }

    /// The parts [`Self::run_tapped`] copied.
    async fn read_taps(&self, dump: &wgpu::Buffer, sizes: Vec<u64>) -> Result<Vec<Vec<f32>>> {
        let at = sizes.iter().sum::<u64>();
        let bytes = self.model.gpu.read_staging_async(dump, at.max(4), None).await?;
        let all: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[..at as usize]);
        let mut parts = Vec::with_capacity(sizes.len());
        let mut from = 0;
        for size in sizes {
            let len = size as usize / 4;
            parts.push(all[from..from + len].to_vec());
            from += len;
        }
        Ok(parts)
    }
}

//! Per-dispatch GPU timestamps of one step (`wgpu-bench --kernels`; native only: profiling
//! is not the token loop, and it blocks on its readback).

use super::Session;
use crate::error::{Error, Result};
use crate::gpu::DType;
use crate::kernels::StepShape;
use crate::model::forward::Mode;
use crate::model::state::{KEYS_PER_SPLIT, MAX_ATTN_SPLITS};

/// One dispatch of a profiled step.
#[derive(Clone, Debug)]
pub struct DispatchTime {
    pub label: String,
    /// Kernel family (e.g. "matvec experts down").
    pub family: String,
    /// Weight format the kernel read.
    pub dtype: DType,
    /// Weight bytes read.
    pub bytes: u64,
    pub seconds: f64,
}

impl Session {
    /// Runs one decode step (input `token`) with every dispatch timed by GPU timestamps;
    /// returns each dispatch's time. Needs TIMESTAMP_QUERY; creates its query buffers
    /// (profiling is not the token loop).
    pub fn decode_profiled(&mut self, token: u32) -> Result<Vec<DispatchTime>> {
        self.profiled(Mode::Decode, &[token])
    }

    /// One prefill submission of `tokens` (at most one ubatch) with a timestamp pair around
    /// every dispatch, as [`Self::decode_profiled`].
    pub fn prefill_profiled(&mut self, tokens: &[u32]) -> Result<Vec<DispatchTime>> {
        if tokens.is_empty() || tokens.len() > self.state.ubatch {
            return Err(Error::Invalid(format!(
                "a profiled prefill takes 1..={} tokens (one ubatch), not {}",
                self.state.ubatch,
                tokens.len()
            )));
        }
        self.profiled(Mode::Prefill, tokens)
    }

    fn profiled(&mut self, which: Mode, tokens: &[u32]) -> Result<Vec<DispatchTime>> {
        let gpu = self.model.gpu.clone();
        if !gpu.caps.timestamps {
            return Err(Error::Invalid(format!(
                "{} has no timestamp queries: no per-kernel profile",
                gpu.info.name
            )));
        }
        self.check(tokens)?;
        let n = crate::kernels::MAX_PROFILE_QUERIES;
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: n,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile resolve"),
            size: n as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        self.write_ids(tokens);
        let t = tokens.len() as u32;
        let (program, splits) = match which {
            Mode::Decode => (
                &self.decode,
                (self.pos as u32 + 1).div_ceil(KEYS_PER_SPLIT).clamp(1, MAX_ATTN_SPLITS),
            ),
            _ => (&self.prefill, 1),
        };
        gpu.queue.write_buffer(
            &self.state.step,
            0,
            bytemuck::cast_slice(&[t, self.pos as u32, splits, 0]),
        );
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let timed = program.record_profiled(&mut enc, &queries, 0, StepShape { n_tokens: t, splits });
        let used = 2 * timed.len() as u32;
        enc.resolve_query_set(&queries, 0..used, &resolve, 0);
        gpu.queue.submit([enc.finish()]);
        self.fed(tokens);
        self.last = None;
        let raw = gpu.read(&resolve, 0, used as u64 * 8)?;
        let ticks: &[u64] = bytemuck::cast_slice(&raw);
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        Ok(timed
            .into_iter()
            .enumerate()
            .map(|(i, (label, family, dtype, bytes))| {
                let seconds = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period;
                DispatchTime {
                    label,
                    family,
                    dtype,
                    bytes,
                    seconds,
                }
            })
            .collect())
    }
}

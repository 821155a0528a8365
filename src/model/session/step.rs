//! Recording and submitting one step, and what it costs the host.
//!
//! A step writes the 16-byte step uniform, records its program (and the sampler) into
//! compute passes and submits them. A decode step may be cut into several submissions
//! ([`Session::set_decode_submissions`]): each is submitted as soon as it is recorded, so the
//! GPU can start on the first layers while the host records the rest. [`HostCost`] counts
//! what the host spent doing this, and, when armed, pass timestamps give the GPU's time.

use super::Session;
use crate::error::{Error, Result};
use crate::kernels::StepShape;
use crate::model::forward::Mode;
use std::ops::Range;

/// Most decode steps one [`GpuStepTimer`] records (two timestamps each).
pub const MAX_TIMED_STEPS: u32 = 1024;

/// Bytes between two steps' resolved timestamps: a query resolve's destination offset must
/// be a multiple of 256 (`QUERY_RESOLVE_BUFFER_ALIGNMENT`).
const RESOLVE_STRIDE: u64 = wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT;

/// Host cost of the decode steps since [`Session::reset_host_cost`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostCost {
    /// Decode steps submitted.
    pub steps: usize,
    /// Host time writing uniforms and recording the passes (error scopes included), not
    /// counting the submit calls.
    pub encode_s: f64,
    /// Host time inside `queue.submit` (on a driver that runs the work in the submitting
    /// thread, lavapipe, this includes the GPU's execution).
    pub submit_s: f64,
    /// Host time blocked waiting for the GPU (reading back sampled ids).
    pub wait_s: f64,
    /// Dispatches, compute passes and queue submissions recorded.
    pub dispatches: usize,
    pub passes: usize,
    pub submissions: usize,
}

impl HostCost {
    /// The figures per decode step (zeros when no step ran).
    pub fn per_step(&self) -> HostCostPerStep {
        let n = self.steps.max(1) as f64;
        HostCostPerStep {
            encode_s: self.encode_s / n,
            submit_s: self.submit_s / n,
            wait_s: self.wait_s / n,
            dispatches: self.dispatches as f64 / n,
            passes: self.passes as f64 / n,
            submissions: self.submissions as f64 / n,
        }
    }
}

/// [`HostCost`] divided by its steps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostCostPerStep {
    pub encode_s: f64,
    pub submit_s: f64,
    pub wait_s: f64,
    pub dispatches: f64,
    pub passes: f64,
    pub submissions: f64,
}

/// GPU time of decode steps: a timestamp at the start of each step's first pass and at the
/// end of its last, resolved in the step's own submission (no extra synchronisation).
pub(super) struct GpuStepTimer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    /// Steps recorded so far (at most [`MAX_TIMED_STEPS`]).
    used: u32,
}

/// `n` dispatches cut into `parts` contiguous ranges of near-equal length (fewer when
/// `n < parts`; one empty range when `n == 0`).
pub fn split_ranges(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts).map(|k| k * n / parts..(k + 1) * n / parts).collect()
}

/// One submission of a step: its dispatches, and whether it opens or closes the step.
struct Part {
    first: bool,
    last: bool,
    range: Range<usize>,
}

/// A timed step's query set, resolve buffer, first query index and resolve offset.
type TimerSlots = (wgpu::QuerySet, wgpu::Buffer, u32, u64);

impl Session {
    /// Records `part` of `program` (the sampler after the last part when `draw`; the copies of
    /// the sampled id and the logits row, and the timestamps' resolve, after the last part)
    /// into a command buffer; returns it and the dispatches recorded.
    #[allow(clippy::too_many_arguments)]
    fn encode_part(
        &self,
        program: &crate::kernels::Program,
        shape: StepShape,
        part: &Part,
        timer: Option<&TimerSlots>,
        draw: bool,
        id_to: Option<&wgpu::Buffer>,
        read_logit_row: bool,
    ) -> (wgpu::CommandBuffer, usize) {
        let gpu = &self.model.gpu;
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") });
        let mut dispatches = 0;
        {
            let timestamp_writes = timer.map(|(q, _, i, _)| wgpu::ComputePassTimestampWrites {
                query_set: q,
                beginning_of_pass_write_index: part.first.then_some(*i),
                end_of_pass_write_index: part.last.then_some(*i + 1),
            });
            let timestamp_writes = timestamp_writes
                .filter(|w| w.beginning_of_pass_write_index.is_some() || w.end_of_pass_write_index.is_some());
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes,
            });
            dispatches += program.record_range(&mut pass, shape, part.range.clone());
            if draw && part.last {
                dispatches += self
                    .sampler
                    .program
                    .record(&mut pass, StepShape { n_tokens: 1, splits: 1 });
            }
        }
        if part.last {
            if let Some(staging) = id_to {
                enc.copy_buffer_to_buffer(&self.state.ids, 0, staging, 0, 4);
            }
            if read_logit_row {
                let bytes = self.model.cfg.vocab_size as u64 * 4;
                enc.copy_buffer_to_buffer(&self.state.logits, 0, &self.state.staging_logits, 0, bytes);
            }
            if let Some((q, resolve, i, at)) = timer {
                enc.resolve_query_set(q, *i..*i + 2, resolve, *at);
            }
        }
        (enc.finish(), dispatches)
    }

    /// Mean host seconds to record and finish one decode step as one command buffer, inside
    /// error scopes, `reps` times in a row without submitting: the host's own cost with warm
    /// caches, which on a CPU adapter the pipelined figures cannot show (there the previous
    /// token executes on the same cores, evicting the host's data between tokens).
    pub fn decode_encode_seconds(&self, reps: usize) -> Result<f64> {
        let shape = StepShape { n_tokens: 1, splits: 1 };
        let draw = !self.sampler.params.is_greedy();
        let part = Part {
            first: true,
            last: true,
            range: 0..self.decode.dispatches.len(),
        };
        let reps = reps.max(1);
        let t = web_time::Instant::now();
        for _ in 0..reps {
            self.model.gpu.scoped("recording a decode step", || {
                let staging = Some(&self.state.staging_id);
                drop(self.encode_part(&self.decode, shape, &part, None, draw, staging, false));
                Ok(())
            })?;
        }
        Ok(t.elapsed().as_secs_f64() / reps as f64)
    }

    /// Cuts each decode step into `n` submissions (1..=16; 1 is one command buffer per token).
    pub fn set_decode_submissions(&mut self, n: usize) -> Result<()> {
        if !(1..=16).contains(&n) {
            return Err(Error::Invalid(format!(
                "decode submissions per token must be 1..=16, not {n}"
            )));
        }
        self.decode_parts = n;
        Ok(())
    }

    /// The host cost counted since the last [`Self::reset_host_cost`].
    pub fn host_cost(&self) -> HostCost {
        self.cost.get()
    }

    /// Starts counting the host cost afresh; with `gpu_timing` (and timestamp queries on the
    /// adapter) also times the next decode steps on the GPU ([`Self::gpu_step_seconds`]).
    pub fn reset_host_cost(&mut self, gpu_timing: bool) {
        self.cost.set(HostCost::default());
        let gpu = &self.model.gpu;
        *self.gpu_timer.get_mut() = (gpu_timing && gpu.caps.timestamps).then(|| GpuStepTimer {
            queries: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("decode step timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * MAX_TIMED_STEPS,
            }),
            resolve: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("decode step timer resolve"),
                size: MAX_TIMED_STEPS as u64 * RESOLVE_STRIDE,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            used: 0,
        });
    }

    /// GPU seconds of each decode step timed since [`Self::reset_host_cost`] (waits for the
    /// device; native only); None when timing was not armed or the adapter has no timestamp
    /// queries.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn gpu_step_seconds(&mut self) -> Result<Option<Vec<f64>>> {
        let Some(t) = self.gpu_timer.get_mut().take() else {
            return Ok(None);
        };
        if t.used == 0 {
            return Ok(Some(Vec::new()));
        }
        let gpu = &self.model.gpu;
        let raw = gpu.read(&t.resolve, 0, t.used as u64 * RESOLVE_STRIDE)?;
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        Ok(Some(
            raw.chunks_exact(RESOLVE_STRIDE as usize)
                .map(|step| {
                    let ticks: [u64; 2] = bytemuck::pod_read_unaligned(&step[..16]);
                    ticks[1].saturating_sub(ticks[0]) as f64 * period
                })
                .collect(),
        ))
    }

    /// Writes the step uniform, records `which` (and the sampler when `draw`) and submits it
    /// (a decode step in [`Self::set_decode_submissions`] parts). Returns the last
    /// submission's index.
    pub(super) fn submit(
        &self,
        which: Mode,
        n: usize,
        splits: u32,
        id_to: Option<&wgpu::Buffer>,
        read_logit_row: bool,
        draw: bool,
    ) -> Result<wgpu::SubmissionIndex> {
        let gpu = self.model.gpu.clone();
        let step = [n as u32, self.pos as u32, splits, 0];
        gpu.queue.write_buffer(&self.state.step, 0, bytemuck::cast_slice(&step));
        let program = match which {
            Mode::Prefill => &self.prefill,
            Mode::Decode => &self.decode,
            Mode::PrefillAllLogits => self
                .prefill_all
                .as_ref()
                .ok_or_else(|| Error::Invalid("the all-logits prefill program was not built".into()))?,
        };
        let decode = which == Mode::Decode;
        let parts = match decode {
            true => split_ranges(program.dispatches.len(), self.decode_parts),
            false => split_ranges(program.dispatches.len(), 1),
        };
        // Timestamp slots of this step: the first part's start, the last part's end.
        let mut timer_slot = self.gpu_timer.borrow_mut();
        let timer: Option<TimerSlots> = match (&*timer_slot, decode) {
            (Some(t), true) if t.used < MAX_TIMED_STEPS => Some((
                t.queries.clone(),
                t.resolve.clone(),
                2 * t.used,
                t.used as u64 * RESOLVE_STRIDE,
            )),
            _ => None,
        };
        let shape = StepShape {
            n_tokens: n as u32,
            splits,
        };
        let (mut dispatches, count) = (0, parts.len());
        let mut submit_s = 0.0;
        let mut index = None;
        for (k, range) in parts.into_iter().enumerate() {
            let part = Part {
                first: k == 0,
                last: k + 1 == count,
                range,
            };
            let (cmd, recorded) = self.encode_part(program, shape, &part, timer.as_ref(), draw, id_to, read_logit_row);
            dispatches += recorded;
            let submitting = web_time::Instant::now();
            index = Some(gpu.queue.submit([cmd]));
            submit_s += submitting.elapsed().as_secs_f64();
        }
        if decode {
            if let Some(t) = timer_slot.as_mut() {
                t.used = (t.used + 1).min(MAX_TIMED_STEPS);
            }
            let mut c = self.cost.get();
            c.steps += 1;
            c.dispatches += dispatches;
            c.passes += count;
            c.submissions += count;
            c.submit_s += submit_s;
            self.cost.set(c);
        }
        index.ok_or_else(|| Error::Invalid("a step with nothing to submit".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_ranges_cover_every_dispatch_once_in_order() {
        for n in [0usize, 1, 2, 7, 100, 301] {
            for parts in [1usize, 2, 3, 4, 16] {
                let r = split_ranges(n, parts);
                assert_eq!(r.first().map(|r| r.start), Some(0), "n {n} parts {parts}");
                assert_eq!(r.last().map(|r| r.end), Some(n), "n {n} parts {parts}");
                assert!(
                    r.windows(2).all(|w| w[0].end == w[1].start),
                    "n {n} parts {parts}: {r:?}"
                );
                assert_eq!(r.len(), parts.min(n.max(1)), "n {n} parts {parts}");
                if n >= parts {
                    assert!(
                        r.iter().all(|r| r.len() >= n / parts && r.len() <= n / parts + 1),
                        "{r:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn per_step_divides_by_the_steps() {
        let c = HostCost {
            steps: 4,
            encode_s: 0.002,
            submit_s: 0.008,
            wait_s: 0.4,
            dispatches: 1200,
            passes: 8,
            submissions: 8,
        };
        let p = c.per_step();
        assert!((p.encode_s - 0.0005).abs() < 1e-12);
        assert!((p.wait_s - 0.1).abs() < 1e-12);
        assert!((p.submit_s - 0.002).abs() < 1e-12);
        assert_eq!((p.dispatches, p.passes, p.submissions), (300.0, 2.0, 2.0));
        assert_eq!(HostCost::default().per_step(), HostCostPerStep::default());
    }
}

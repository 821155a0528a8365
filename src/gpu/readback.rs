//! Error scopes, waiting and readback: async at the core (a page cannot block), with blocking
//! wrappers for native programs.
//!
//! Natively a readback polls the device until the copy is done, so its future is ready when
//! first polled; in a browser the future waits for the page's event loop. Error scopes are
//! popped right after their step: natively by blocking on the pop, in a browser without
//! blocking, the result landing in [`Gpu::deferred`] and returned by the next readback or step.

use super::Gpu;
use crate::error::{Error, Result};

fn gpu_error(during: &str, msg: impl ToString) -> Error {
    Error::Gpu {
        during: during.to_string(),
        msg: msg.to_string(),
    }
}

impl Gpu {
    /// Runs `f` inside validation and out-of-memory error scopes; a captured error becomes
    /// `Err` naming `during`, and so does a device lost before or during `f`. In a browser
    /// the error is returned by the next readback or scoped step instead.
    pub fn scoped<T>(&self, during: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.alive(during)?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        // Popped innermost first; each pop takes effect now, its result arrives later.
        let (v, o) = (val.pop(), oom.pop());
        #[cfg(not(target_arch = "wasm32"))]
        {
            let (v, o) = (pollster::block_on(v), pollster::block_on(o));
            self.alive(during)?;
            if let Some(e) = o.or(v) {
                return Err(gpu_error(during, e));
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let (deferred, during) = (self.deferred.clone(), during.to_string());
            wasm_bindgen_futures::spawn_local(async move {
                let (v, o) = (v.await, o.await);
                if let (Some(e), Ok(mut slot)) = (o.or(v), deferred.lock()) {
                    slot.get_or_insert(gpu_error(&during, e));
                }
            });
        }
        out
    }

    /// An error when the device has been lost (it cannot be used again), or when an error
    /// scope reported an error after its step returned (taken: reported once).
    pub fn alive(&self, during: &str) -> Result<()> {
        if let Some(e) = self.deferred.lock().ok().and_then(|mut d| d.take()) {
            return Err(e);
        }
        match self.lost.lock().ok().and_then(|l| l.clone()) {
            None => Ok(()),
            Some(msg) => Err(Error::DeviceLost {
                during: during.to_string(),
                msg,
            }),
        }
    }

    /// Waits for all submitted work.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        self.poll_until(None)
    }

    /// Waits for submission `index` only (work queued after it may still run).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_for(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        self.poll_until(Some(index))
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn poll_until(&self, submission_index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index,
                timeout: None,
            })
            .map(|_| ())
            .map_err(|e| gpu_error("waiting for the device", e))
    }

    /// Maps `staging` (MAP_READ) for `size` bytes from 0, copies them out and unmaps; natively
    /// waits only for submission `after` (None: all), so the GPU can run ahead of the host.
    pub async fn read_staging_async(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        after: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<u8>> {
        let slice = staging.slice(..size);
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.poll_until(after)?;
        #[cfg(target_arch = "wasm32")]
        let _ = after; // the browser runs the queue in order by itself
        let mapped = rx
            .await
            .map_err(|_| gpu_error("reading back", "the map callback never ran"))?;
        self.alive("reading back")?;
        mapped.map_err(|e| gpu_error("mapping a readback buffer", e))?;
        let data = slice
            .get_mapped_range()
            .map_err(|e| gpu_error("reading a mapped buffer", e))?
            .to_vec();
        staging.unmap();
        Ok(data)
    }

    /// [`Self::read_staging_async`] after all submitted work, blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_staging(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        self.read_staging_after(staging, size, None)
    }

    /// [`Self::read_staging_async`], blocking (native programs).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_staging_after(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        after: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<u8>> {
        pollster::block_on(self.read_staging_async(staging, size, after))
    }

    /// Copies `size` bytes of `src` at `offset` back to the host (creates a staging buffer:
    /// for tests and one-off reads, not for the token loop).
    pub async fn read_async(&self, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        self.read_staging_async(&staging, size, None).await
    }

    pub async fn read_f32_async(&self, src: &wgpu::Buffer, offset: u64, count: usize) -> Result<Vec<f32>> {
        let bytes = self.read_async(src, offset, count as u64 * 4).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// [`Self::read_async`], blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        pollster::block_on(self.read_async(src, offset, size))
    }

    /// [`Self::read_f32_async`], blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32(&self, src: &wgpu::Buffer, offset: u64, count: usize) -> Result<Vec<f32>> {
        pollster::block_on(self.read_f32_async(src, offset, count))
    }
}

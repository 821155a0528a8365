//! The engine thread: one OS thread owns the model and one [`Session`] (they are not `Sync`)
//! and runs jobs one at a time from a bounded FIFO queue.
//!
//! Each job streams [`Event`]s back over a tokio channel: text deltas, then the outcome or an
//! error. A job whose client went away (its channel closed, or its cancel flag raised when
//! the response was dropped) stops within one decode step, or between prefill chunks; one
//! still waiting in the queue is skipped without running. A prompt that extends what the KV
//! cache holds prefills only the new tokens (as `lfm chat` does): chat clients resend the
//! whole conversation each turn.

use super::detok::Detok;
use super::error::ApiError;
use super::metrics::{Generation, Metrics};
use crate::constrain::Constraint;
use crate::model::session::Session;
use crate::sampling::SamplingParams;
use crate::tokenizer::Tokenizer;
use crate::Error;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// Loads the model on the engine thread (the session never leaves it).
pub type Loader = Box<dyn FnOnce() -> Result<Session, Box<dyn std::error::Error + Send + Sync>> + Send>;

/// One generation request, ready to run.
pub struct Job {
    /// The whole prompt (what is already in the KV cache is skipped).
    pub prompt: Vec<u32>,
    /// Most tokens to generate (≥ 1).
    pub max_new: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub events: mpsc::UnboundedSender<Event>,
    /// Raised when the client goes away.
    pub cancel: Arc<AtomicBool>,
    /// When the request arrived (time to first token is counted from here).
    pub arrived: Instant,
    /// Structured output: the compiled `response_format`, taken by the engine when it runs.
    pub constraint: Mutex<Option<Box<Constraint>>>,
}

impl Job {
    /// The client went away.
    fn abandoned(&self) -> bool {
        self.cancel.load(Ordering::SeqCst) || self.events.is_closed()
    }
}

/// What a job sends back, in order: `Text`*, then `Done` or `Error`.
#[derive(Debug)]
pub enum Event {
    Text(String),
    Done(Outcome),
    Error(ApiError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens`, or the context is full.
    Length,
}

/// How a generation ended, with its token counts.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub finish: Finish,
    pub prompt_tokens: usize,
    /// Prompt tokens reused from the KV cache (not prefilled).
    pub cached_tokens: usize,
    /// Tokens generated (the end-of-sequence token not counted).
    pub completion_tokens: usize,
}

/// Whether the engine can take requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Loading,
    Ready,
    /// The model did not load.
    Failed(String),
    /// The device is gone: nothing more can run.
    Unusable(String),
}

/// The FIFO of waiting jobs. When it is full, jobs whose clients went away are dropped
/// from it first, so an abandoned request never takes a live one's place.
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
    capacity: usize,
}

impl Queue {
    /// Queues `job`; false (the job dropped) when the queue is full.
    fn push(&self, job: Job) -> bool {
        let mut q = lock(&self.jobs);
        if q.len() >= self.capacity {
            q.retain(|j| !j.abandoned());
        }
        if q.len() >= self.capacity {
            return false;
        }
        q.push_back(job);
        self.ready.notify_one();
        true
    }

    /// The next job; None once `stop` is raised and the queue is empty.
    fn pop(&self, stop: &AtomicBool) -> Option<Job> {
        let mut q = lock(&self.jobs);
        loop {
            if let Some(job) = q.pop_front() {
                return Some(job);
            }
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn len(&self) -> usize {
        lock(&self.jobs).len()
    }
}

/// State shared by the handlers and the engine thread.
struct Shared {
    queue: Queue,
    busy: AtomicBool,
    shutdown: AtomicBool,
    /// The cancel flag of the running job (raised at shutdown).
    current: Mutex<Option<Arc<AtomicBool>>>,
    metrics: Arc<Metrics>,
}

/// The handlers' side of the engine.
pub struct Engine {
    shared: Arc<Shared>,
    health: watch::Receiver<Health>,
}

impl Engine {
    /// Starts the engine thread: it loads the model with `loader`, then serves jobs from a
    /// queue of `capacity` waiting jobs.
    pub fn start(
        loader: Loader,
        tok: Arc<Tokenizer>,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Engine, std::thread::JoinHandle<()>)> {
        let (health_tx, health) = watch::channel(Health::Loading);
        let shared = Arc::new(Shared {
            queue: Queue {
                jobs: Mutex::new(VecDeque::new()),
                ready: Condvar::new(),
                capacity: capacity.max(1),
            },
            busy: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            current: Mutex::new(None),
            metrics,
        });
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("lfm-engine".into())
            .spawn(move || engine_main(loader, &tok, &thread_shared, &health_tx))?;
        let engine = Engine { shared, health };
        Ok((engine, handle))
    }

    /// Queues a job; a full queue is a 503 with `Retry-After`.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        if self.shared.shutdown.load(Ordering::SeqCst) {
            return Err(ApiError::shutting_down());
        }
        match self.health() {
            Health::Failed(m) => return Err(ApiError::unavailable(format!("the model failed to load: {m}"))),
            Health::Unusable(m) => return Err(ApiError::internal(format!("the GPU device is unusable: {m}"))),
            Health::Loading | Health::Ready => {}
        }
        match self.shared.queue.push(job) {
            true => Ok(()),
            false => Err(ApiError::queue_full(self.shared.queue.capacity)),
        }
    }

    /// Jobs waiting (not the running one).
    pub fn queued(&self) -> usize {
        self.shared.queue.len()
    }

    pub fn busy(&self) -> bool {
        self.shared.busy.load(Ordering::SeqCst)
    }

    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    /// A receiver that sees every change of health (the server stops when loading fails).
    pub fn health_watch(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// Stops taking jobs; the running one ends at its next token with a shutdown error, and
    /// those waiting get the same error without running.
    pub fn shut_down(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.queue.ready.notify_all();
        if let Some(flag) = lock(&self.shared.current).as_ref() {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn engine_main(loader: Loader, tok: &Tokenizer, shared: &Shared, health: &watch::Sender<Health>) {
    let mut session = match loader() {
        Ok(s) => s,
        Err(e) => {
            let mut msg = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            health.send_replace(Health::Failed(msg.clone()));
            while let Some(job) = shared.queue.pop(&shared.shutdown) {
                let _ = job.events.send(Event::Error(ApiError::unavailable(format!(
                    "the model failed to load: {msg}"
                ))));
            }
            return;
        }
    };
    health.send_replace(Health::Ready);
    log::info!("engine ready");
    while let Some(job) = shared.queue.pop(&shared.shutdown) {
        if job.abandoned() {
            shared.metrics.cancelled();
            continue;
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            let _ = job.events.send(Event::Error(ApiError::shutting_down()));
            continue;
        }
        if let Health::Unusable(m) = &*health.borrow() {
            let e = ApiError::internal(format!("the GPU device is unusable: {m}"));
            let _ = job.events.send(Event::Error(e));
            continue;
        }
        shared.busy.store(true, Ordering::SeqCst);
        *lock(&shared.current) = Some(job.cancel.clone());
        if let Err(e) = run_job(&mut session, tok, &job, shared) {
            fail_job(&mut session, &job, shared, health, e);
        }
        *lock(&shared.current) = None;
        shared.busy.store(false, Ordering::SeqCst);
    }
    log::info!("engine stopped");
}

/// Reports a failed job and leaves the session usable: reset after any error (a step may
/// have stopped half-way), unhealthy when the device is lost.
fn fail_job(session: &mut Session, job: &Job, shared: &Shared, health: &watch::Sender<Health>, e: Error) {
    // A lost device can surface first as another GPU error (a readback whose mapping
    // fails): the device itself says whether it is gone.
    let e = match e {
        Error::Gpu { during, msg } => match session.model.gpu.alive(&during) {
            Err(lost) => {
                log::error!("GPU error during {during}: {msg}");
                lost
            }
            Ok(()) => Error::Gpu { during, msg },
        },
        e => e,
    };
    let api = match &e {
        Error::Cancelled if shared.shutdown.load(Ordering::SeqCst) => ApiError::shutting_down(),
        Error::Cancelled => {
            shared.metrics.cancelled();
            return;
        }
        Error::DeviceLost { .. } => {
            log::error!("{e}");
            health.send_replace(Health::Unusable(e.to_string()));
            ApiError::internal(e.to_string())
        }
        Error::ContextExceeded { .. } | Error::TokenOutOfRange { .. } | Error::Invalid(_) => {
            ApiError::invalid(e.to_string())
        }
        _ => {
            log::error!("generation failed: {e}");
            ApiError::internal(e.to_string())
        }
    };
    if !matches!(e, Error::DeviceLost { .. }) {
        session.reset();
    }
    let _ = job.events.send(Event::Error(api));
}

/// Runs one job to its end, sending text as it comes and the outcome last.
fn run_job(s: &mut Session, tok: &Tokenizer, job: &Job, shared: &Shared) -> crate::Result<()> {
    let reused = s.reuse_prefix(&job.prompt);
    s.set_sampling(job.sampling.clone())?;
    s.set_cancel_flag(job.cancel.clone());
    let eos = tok.eos_ids();
    let mut detok = Detok::new(tok, &job.stop);
    let (mut first, mut eos_hit, mut gone) = (true, false, false);
    let mut on_token = |id| {
        if first {
            first = false;
            let ttft = job.arrived.elapsed().as_secs_f64();
            shared.metrics.time_to_first_token(ttft);
        }
        if eos.contains(&id) {
            eos_hit = true;
            return false;
        }
        let delta = detok.push(id);
        if !delta.is_empty() && job.events.send(Event::Text(delta)).is_err() {
            gone = true;
            return false;
        }
        !detok.stopped() && !shared.shutdown.load(Ordering::SeqCst)
    };
    let prompt = &job.prompt[reused..];
    let constraint = job.constraint.lock().map(|mut c| c.take()).unwrap_or(None);
    let stats = match constraint {
        Some(mut c) => s.generate_constrained(prompt, job.max_new, true, c.as_mut(), &mut on_token)?,
        None => s.generate(prompt, job.max_new, true, &mut on_token)?,
    };
    if stats.dead_end {
        log::warn!("the response format allowed no further token: the answer ends there");
    }
    let completion_tokens = stats.new_tokens - usize::from(eos_hit);
    shared.metrics.generation(Generation {
        prompt_tokens: job.prompt.len(),
        prefilled: job.prompt.len() - reused,
        generated: stats.new_tokens,
        prefill_s: stats.prefill_s,
        decode_s: stats.decode_s,
    });
    // A complete (or stuck) format ends the answer as an end token would.
    let finished = eos_hit || detok.stopped() || stats.complete || stats.dead_end;
    if gone || (!finished && job.cancel.load(Ordering::SeqCst) && !shared.shutdown.load(Ordering::SeqCst)) {
        shared.metrics.cancelled();
        return Ok(());
    }
    if !finished && shared.shutdown.load(Ordering::SeqCst) && stats.new_tokens < job.max_new {
        return Err(Error::Cancelled);
    }
    let rest = detok.finish();
    if !rest.is_empty() {
        let _ = job.events.send(Event::Text(rest));
    }
    let outcome = Outcome {
        finish: if finished { Finish::Stop } else { Finish::Length },
        prompt_tokens: job.prompt.len(),
        cached_tokens: reused,
        completion_tokens,
    };
    let _ = job.events.send(Event::Done(outcome));
    Ok(())
}

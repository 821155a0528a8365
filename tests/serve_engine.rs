//! The `lfm serve` engine thread driven directly (no HTTP): requests wait in the queue while
//! the model loads, a failed load answers them with 503, a GPU error in a step is a 500
//! for that request only, and a lost device (destroyed here) makes the engine unusable.

mod common;

use common::*;
use lfm_wgpu::sampling::SamplingParams;
use lfm_wgpu::serve::engine::{Engine, Event, Health, Job, Loader};
use lfm_wgpu::serve::metrics::Metrics;
use lfm_wgpu::tokenizer::Tokenizer;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const FIXTURE: &str = "tiny_b";

fn tokenizer() -> Arc<Tokenizer> {
    Arc::new(Tokenizer::from_dir(&fixture_dir(FIXTURE)).unwrap())
}

/// A session on tiny_b (f32 weights, 64 positions); `fault` breaks its decode program.
fn tiny_session(fault: bool) -> lfm_wgpu::model::session::Session {
    let ckpt = lfm_wgpu::model::weights::Checkpoint::open(&fixture_dir(FIXTURE)).unwrap();
    let mut s = session(&ckpt, lfm_wgpu::gpu::DType::F32, 64);
    if fault {
        s.inject_bind_group_fault();
    }
    s
}

fn start(loader: Loader, tok: &Arc<Tokenizer>) -> Engine {
    Engine::start(loader, tok.clone(), 4, Arc::new(Metrics::default()))
        .unwrap()
        .0
}

/// Queues a greedy request for `max_new` tokens; returns its event channel.
fn submit(engine: &Engine, tok: &Tokenizer, max_new: usize) -> UnboundedReceiver<Event> {
    let (events, rx) = unbounded_channel();
    let job = Job {
        prompt: tok.encode("Hello there", true).unwrap(),
        max_new,
        sampling: SamplingParams::greedy(),
        stop: Vec::new(),
        events,
        cancel: Arc::new(AtomicBool::new(false)),
        arrived: Instant::now(),
        constraint: Default::default(),
    };
    engine.submit(job).unwrap();
    rx
}

/// The event that ends a request.
fn end(mut rx: UnboundedReceiver<Event>) -> Event {
    loop {
        match rx.blocking_recv().expect("the engine dropped the request") {
            Event::Text(_) => continue,
            end => return end,
        }
    }
}

fn wait_while_loading(engine: &Engine) {
    let t = Instant::now();
    while engine.health() == Health::Loading {
        assert!(t.elapsed() < Duration::from_secs(120), "still loading");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn requests_wait_in_the_queue_while_the_model_loads() {
    let tok = tokenizer();
    let (go, wait) = mpsc::channel::<()>();
    let engine = start(
        Box::new(move || {
            let _ = wait.recv();
            Ok(tiny_session(false))
        }),
        &tok,
    );
    assert_eq!(engine.health(), Health::Loading);
    let rx = submit(&engine, &tok, 3);
    assert_eq!(engine.queued(), 1);
    go.send(()).unwrap();
    match end(rx) {
        Event::Done(o) => assert!(o.completion_tokens <= 3 && o.prompt_tokens > 0, "{o:?}"),
        other => panic!("expected an answer, got {other:?}"),
    }
    assert_eq!(engine.health(), Health::Ready);
}

#[test]
fn a_failed_load_answers_503_and_reports_why() {
    let tok = tokenizer();
    let (go, wait) = mpsc::channel::<()>();
    let engine = start(
        Box::new(move || {
            let _ = wait.recv();
            Err("not enough GPU memory (test)".into())
        }),
        &tok,
    );
    let queued = submit(&engine, &tok, 3);
    go.send(()).unwrap();
    match end(queued) {
        Event::Error(e) => {
            assert_eq!(e.status.as_u16(), 503, "{e:?}");
            assert!(e.message.contains("not enough GPU memory (test)"), "{e:?}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    wait_while_loading(&engine);
    assert!(matches!(engine.health(), Health::Failed(m) if m.contains("(test)")));
}

/// A GPU error in a step is a 500 for that request only: the device is still usable, so the
/// engine stays healthy and answers the next request.
#[test]
fn a_device_error_is_a_500_and_the_engine_goes_on() {
    let tok = tokenizer();
    let engine = start(Box::new(|| Ok(tiny_session(true))), &tok);
    // Decoding runs the broken program: a 500 naming the step.
    match end(submit(&engine, &tok, 8)) {
        Event::Error(e) => {
            assert_eq!(e.status.as_u16(), 500, "{e:?}");
            assert!(e.message.contains("Decode step"), "{e:?}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(engine.health(), Health::Ready);
    // One token needs only the prefill, which still works: the engine serves on.
    match end(submit(&engine, &tok, 1)) {
        Event::Done(o) => assert_eq!((o.completion_tokens, o.cached_tokens), (1, 0)),
        other => panic!("expected an answer, got {other:?}"),
    }
}

/// A lost device cannot be used again: the request that meets it is a 500, the engine turns
/// unusable (`/health` answers 503 "unhealthy"), and later requests are refused with a 500
/// at once instead of running.
#[test]
fn a_lost_device_is_a_500_and_makes_the_engine_unusable() {
    let tok = tokenizer();
    let (gpu_tx, gpu_rx) = mpsc::channel();
    let engine = start(
        Box::new(move || {
            let s = tiny_session(false);
            let _ = gpu_tx.send(s.model.gpu.clone());
            Ok(s)
        }),
        &tok,
    );
    match end(submit(&engine, &tok, 2)) {
        Event::Done(o) => assert!(o.completion_tokens >= 1, "{o:?}"),
        other => panic!("expected an answer, got {other:?}"),
    }
    let gpu = gpu_rx.recv_timeout(Duration::from_secs(120)).unwrap();
    gpu.device.destroy();
    match end(submit(&engine, &tok, 2)) {
        Event::Error(e) => {
            assert_eq!(e.status.as_u16(), 500, "{e:?}");
            assert!(e.message.to_lowercase().contains("lost"), "{e:?}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(matches!(engine.health(), Health::Unusable(_)), "{:?}", engine.health());
    let (events, _rx) = unbounded_channel();
    let job = Job {
        prompt: tok.encode("Hello again", true).unwrap(),
        max_new: 2,
        sampling: SamplingParams::greedy(),
        stop: Vec::new(),
        events,
        cancel: Arc::new(AtomicBool::new(false)),
        arrived: Instant::now(),
        constraint: Default::default(),
    };
    let refused = engine.submit(job).expect_err("an unusable engine takes no job");
    assert_eq!(refused.status.as_u16(), 500, "{refused:?}");
}

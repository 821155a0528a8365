//! `lfm serve`: an OpenAI-compatible HTTP server over one engine session.
//!
//! axum + tokio serve the HTTP side (`routes`); one OS thread owns the model and runs
//! generations one at a time from a bounded FIFO queue (`engine`). The server binds first
//! and prints `listening on http://ADDR`, then the model loads on the engine thread
//! (`/health` says `loading` until it is ready; requests wait in the queue). SIGINT or
//! SIGTERM stops accepting connections, ends the running answer and the queued ones with an
//! error event, and exits once the responses are out (at most [`SHUTDOWN_GRACE`] later).
//!
//! - `api`: request bodies and their checks; `prompt`: requests to tokens (chat template,
//!   tool calls written back as the model writes them, `tool_choice`)
//! - `engine`: the engine thread, KV-cache prefix reuse, cancellation; `detok`: ids to
//!   UTF-8-safe text deltas cut at stop strings
//! - `toolcall`: the LFM2 tool-call parser; `output`: content / reasoning / tool-call split
//! - `respond`: response bodies and stream chunks; `error`: OpenAI-shaped errors;
//!   `metrics`: Prometheus text

pub mod api;
pub mod detok;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod output;
pub mod prompt;
pub mod respond;
pub mod routes;
pub mod toolcall;

use crate::chat::ChatTemplate;
use crate::tokenizer::Tokenizer;
use engine::{Engine, Health, Loader};
use metrics::Metrics;
use routes::AppState;
use std::future::IntoFuture;
use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// How long in-flight responses may take to end after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    /// 0: an ephemeral port (the bound address is printed).
    pub port: u16,
    pub api_key: Option<String>,
    /// Context length of the session.
    pub ctx: usize,
    /// Requests that may wait for the engine.
    pub queue: usize,
    /// Allowed CORS origin (`*` for any); none: no CORS headers.
    pub cors: Option<String>,
    /// The model name clients use.
    pub model_id: String,
    pub vocab: usize,
    /// SSE keep-alive comment interval ([`routes::KEEP_ALIVE`] unless a test shortens it).
    pub keep_alive: Duration,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("loading the model failed: {0}")]
    Load(String),
}

/// Runs the server until SIGINT / SIGTERM (or until the model fails to load).
pub fn serve(opts: ServeOptions, tok: Tokenizer, template: ChatTemplate, loader: Loader) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ServeError::Io {
            what: "starting the async runtime",
            source,
        })?;
    rt.block_on(run(opts, tok, template, loader))
}

async fn run(opts: ServeOptions, tok: Tokenizer, template: ChatTemplate, loader: Loader) -> Result<(), ServeError> {
    let addr = format!("{}:{}", opts.host, opts.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Io {
        what: "reading the bound address",
        source,
    })?;
    if !bound.ip().is_loopback() && opts.api_key.is_none() {
        log::warn!("serving on {bound}, reachable from other machines, without an API key (--api-key)");
    }
    let metrics = Arc::new(Metrics::default());
    let tok = Arc::new(tok);
    let (engine, _thread) =
        Engine::start(loader, tok.clone(), opts.queue, metrics.clone()).map_err(|source| ServeError::Io {
            what: "starting the engine thread",
            source,
        })?;
    let mut health = engine.health_watch();
    let structured = crate::constrain::Vocabulary::new(&tok, opts.vocab)
        .map(Arc::new)
        .map_err(|e| e.to_string());
    if let Err(why) = &structured {
        log::warn!("response_format will be refused: {why}");
    }
    let state = Arc::new(AppState {
        engine,
        tok,
        template,
        metrics,
        model_id: opts.model_id.clone(),
        ctx: opts.ctx,
        vocab: opts.vocab,
        structured,
        api_key: opts.api_key.clone(),
        keep_alive: opts.keep_alive,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        counter: AtomicU64::new(0),
    });
    let app = routes::router(state.clone(), opts.cors.as_deref()).map_err(|e| ServeError::Setup(e.message))?;
    println!("listening on http://{bound}");
    let _ = std::io::stdout().flush();

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown_state = state.clone();
    let shutdown = async move {
        tokio::select! {
            _ = signal() => eprintln!("[shutting down: ending the answers in flight]"),
            _ = health.wait_for(|h| matches!(h, Health::Failed(_))) => {}
        }
        shutdown_state.engine.shut_down();
        let _ = stopping_tx.send(());
    };
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .into_future();
    let grace = async {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = server => r.map_err(|source| ServeError::Io { what: "serving", source })?,
        _ = grace => log::warn!("responses still in flight {} s after the shutdown signal; exiting", SHUTDOWN_GRACE.as_secs()),
    }
    match state.engine.health() {
        Health::Failed(m) => Err(ServeError::Load(m)),
        _ => Ok(()),
    }
}

/// Resolves at SIGINT (Ctrl-C) or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                log::warn!("cannot listen for SIGTERM ({e}); only SIGINT stops the server");
                ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await;
}

/// Resolves at SIGINT; never when it cannot be listened for (the server then runs on).
async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        log::warn!("cannot listen for Ctrl-C ({e})");
        std::future::pending::<()>().await;
    }
}

//! The HTTP side: routes, handlers, authentication, request counting, and OpenAI-shaped
//! errors for every failure (including the router's own 404 / 405 / 413).

use super::api::{self, ChatRequest, CompletionRequest, GenFields};
use super::engine::{Engine, Event, Health, Job, Outcome};
use super::error::ApiError;
use super::metrics::Metrics;
use super::prompt;
use super::respond::{self, ChatChunks, Chunker, Meta, TextChunks};
use crate::chat::ChatTemplate;
use crate::constrain::{Constraint, Format, ToolChoice, Vocabulary};
use crate::tokenizer::Tokenizer;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value as JsonValue};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

/// Largest request body.
pub const BODY_LIMIT: usize = 8 << 20;
/// Default SSE comment interval while a streamed request waits or prefills (issue #12: at
/// least every 15 s, so that proxies with idle timeouts keep the connection).
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// What every handler shares.
pub struct AppState {
    pub engine: Engine,
    pub tok: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub metrics: Arc<Metrics>,
    /// The name clients use (`--model` as given).
    pub model_id: String,
    pub ctx: usize,
    pub vocab: usize,
    /// Structured output over the tokenizer (None when it cannot be built: the reason).
    pub structured: Result<Arc<Vocabulary>, String>,
    pub api_key: Option<String>,
    /// SSE comment interval while a stream has nothing to send.
    pub keep_alive: Duration,
    /// Unix time the server started.
    pub created: u64,
    pub counter: AtomicU64,
}

type St = Arc<AppState>;

/// The router. `cors`: the allowed origin (`*` for any).
pub fn router(state: St, cors: Option<&str>) -> Result<Router, ApiError> {
    let api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let app = Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(middleware::map_response(openai_errors))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state);
    let Some(origin) = cors else { return Ok(app) };
    let allow = match origin {
        "*" => AllowOrigin::any(),
        o => AllowOrigin::exact(
            HeaderValue::from_str(o).map_err(|_| ApiError::invalid(format!("--cors {o:?} is not a valid origin")))?,
        ),
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]);
    Ok(app.layer(layer))
}

/// Bearer-key check (when a key is set), in constant time.
async fn authenticate(State(s): State<St>, req: Request, next: Next) -> Response {
    if let Some(key) = &s.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = given.is_some_and(|g| {
            g.len() == key.len() && g.bytes().zip(key.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        });
        if !ok {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// Counts every response by route and status.
async fn count(State(s): State<St>, req: Request, next: Next) -> Response {
    let route = match req.uri().path() {
        p @ ("/v1/models" | "/v1/chat/completions" | "/v1/completions" | "/health" | "/metrics") => p,
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        _ => "other",
    };
    let route = route.to_string();
    let res = next.run(req).await;
    s.metrics.request(&route, res.status().as_u16());
    res
}

/// Replaces an error answer that is not JSON (from the router or a middleware: unknown
/// method, body too large, …) with the OpenAI error shape.
async fn openai_errors(res: Response) -> Response {
    let status = res.status();
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return res;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("The request body is larger than the limit of {} MiB.", BODY_LIMIT >> 20)
        }
        StatusCode::METHOD_NOT_ALLOWED => "This method is not allowed on this route.".to_string(),
        s => s.canonical_reason().unwrap_or("error").to_string(),
    };
    ApiError::from_status(status, message).into_response()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("No route {method} {}.", uri.path()))
}

async fn health(State(s): State<St>) -> Response {
    match s.engine.health() {
        Health::Ready => Json(json!({"status": "ok"})).into_response(),
        Health::Loading => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "loading"}))).into_response(),
        Health::Failed(m) | Health::Unusable(m) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "error": m})),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<St>) -> Response {
    let text = s.metrics.render(s.engine.queued(), s.engine.busy());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn model_object(s: &AppState) -> JsonValue {
    json!({"id": s.model_id, "object": "model", "created": s.created, "owned_by": "lfm-wgpu"})
}

async fn models(State(s): State<St>) -> Json<JsonValue> {
    Json(json!({"object": "list", "data": [model_object(&s)]}))
}

async fn model(State(s): State<St>, Path(id): Path<String>) -> Result<Json<JsonValue>, ApiError> {
    check_model(&s, Some(&id))?;
    Ok(Json(model_object(&s)))
}

/// The model a request names must be this one (by its id or the id's last path part).
fn check_model(s: &AppState, asked: Option<&str>) -> Result<(), ApiError> {
    let served = s.model_id.trim_end_matches('/');
    let short = served.rsplit(['/', '\\']).next().unwrap_or(served);
    match asked {
        None | Some("") => Ok(()),
        Some(m) if m == served || m == short || m == s.model_id => Ok(()),
        Some(m) => Err(ApiError::unknown_model(m, &s.model_id)),
    }
}

/// Raises a job's cancel flag when the response that waits for it is dropped (the client
/// went away, or the answer is complete).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Checks the shared fields, fits the request into the context and queues it.
fn start(
    s: &AppState,
    gen: &GenFields,
    ids: Vec<u32>,
    constraint: Option<Box<Constraint>>,
    arrived: Instant,
) -> Result<(mpsc::UnboundedReceiver<Event>, CancelOnDrop), ApiError> {
    gen.check_n()?;
    let sampling = gen.sampling()?;
    let stop = gen.stops()?;
    let max_new = match gen.max_tokens()? {
        Some(n) if ids.len().saturating_add(n) > s.ctx => return Err(ApiError::context_length(s.ctx, ids.len(), n)),
        Some(n) => n,
        None if ids.len() >= s.ctx => return Err(ApiError::context_length(s.ctx, ids.len(), 1)),
        None => s.ctx - ids.len(),
    };
    let (events, rx) = mpsc::unbounded_channel();
    let cancel = Arc::new(AtomicBool::new(false));
    s.engine.submit(Job {
        prompt: ids,
        max_new,
        sampling,
        stop,
        events,
        cancel: cancel.clone(),
        arrived,
        constraint: std::sync::Mutex::new(constraint),
    })?;
    Ok((rx, CancelOnDrop(cancel)))
}

/// Compiles what the answer is constrained to: the tool calls (with the `response_format`
/// as the text answer of `auto`), or the `response_format` alone.
fn constraint(
    s: &AppState,
    format: Option<Format>,
    calls: Option<&(Vec<JsonValue>, ToolChoice)>,
    parallel: bool,
) -> Result<Option<Box<Constraint>>, ApiError> {
    if format.is_none() && calls.is_none() {
        return Ok(None);
    }
    let field = if calls.is_some() { "tools" } else { "response_format" };
    let vocab = s
        .structured
        .as_ref()
        .map_err(|why| ApiError::field(field, format!("structured output is unavailable: {why}")))?;
    let c = match (calls, format) {
        (Some((tools, choice)), format) => vocab.tool_constraint(tools, choice, parallel, format.as_ref()),
        (None, Some(f)) => vocab.constraint(&f, "response_format"),
        (None, None) => return Ok(None),
    };
    c.map(|c| Some(Box::new(c))).map_err(|e| {
        let param = match &e {
            crate::Error::Constraint { origin, .. } if origin.starts_with("tools") => "tools",
            _ => "response_format",
        };
        ApiError::field(param, e.to_string())
    })
}

fn meta(s: &AppState, prefix: &str) -> Meta {
    let n = s.counter.fetch_add(1, Ordering::Relaxed);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Meta {
        id: format!("{prefix}-{:x}{n:x}", s.created),
        created,
        model: s.model_id.clone(),
    }
}

async fn chat_completions(State(s): State<St>, body: Bytes) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let req: ChatRequest = api::parse(&body)?;
    check_model(&s, req.gen.model.as_deref())?;
    let p = prompt::chat(&req, &s.template, &s.tok, s.structured.is_ok())?;
    let think = req.reasoning_format.as_deref() != Some("none");
    let parallel = req.parallel_tool_calls.unwrap_or(true);
    let constraint = constraint(&s, req.format()?, p.calls.as_ref(), parallel)?;
    let (rx, guard) = start(&s, &req.gen, p.ids, constraint, arrived)?;
    let meta = meta(&s, "chatcmpl");
    if req.gen.stream() {
        let chunks = ChatChunks::new(meta, p.tools, think, p.forced, req.gen.include_usage());
        return Ok(sse(rx, guard, chunks, s.keep_alive));
    }
    let (text, outcome) = collect(rx, guard).await?;
    Ok(Json(respond::chat_completion(
        &meta, &text, &p.forced, p.tools, think, &outcome,
    ))
    .into_response())
}

async fn completions(State(s): State<St>, body: Bytes) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let req: CompletionRequest = api::parse(&body)?;
    check_model(&s, req.gen.model.as_deref())?;
    let ids = prompt::completion(&req.prompt, &s.tok, s.vocab)?;
    let (rx, guard) = start(&s, &req.gen, ids, None, arrived)?;
    let meta = meta(&s, "cmpl");
    if req.gen.stream() {
        let chunks = TextChunks {
            meta,
            include_usage: req.gen.include_usage(),
        };
        return Ok(sse(rx, guard, chunks, s.keep_alive));
    }
    let (text, outcome) = collect(rx, guard).await?;
    Ok(Json(respond::text_completion(&meta, &text, &outcome)).into_response())
}

/// Waits for the whole answer.
async fn collect(mut rx: mpsc::UnboundedReceiver<Event>, _guard: CancelOnDrop) -> Result<(String, Outcome), ApiError> {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(t) => text.push_str(&t),
            Event::Done(o) => return Ok((text, o)),
            Event::Error(e) => return Err(e),
        }
    }
    Err(ApiError::internal("the engine stopped before the answer ended"))
}

fn data(v: &JsonValue) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

/// The answer as server-sent events: the chunker's chunks as engine events arrive, then
/// `[DONE]`; an engine error becomes one `data: {"error": …}` event that ends the stream.
/// A `: keep-alive` comment goes out after every `keep_alive` without an event (while the
/// request waits in the queue or prefills).
fn sse<C: Chunker>(
    rx: mpsc::UnboundedReceiver<Event>,
    guard: CancelOnDrop,
    mut chunker: C,
    keep_alive: Duration,
) -> Response {
    let queue: VecDeque<SseEvent> = chunker.start().iter().map(data).collect();
    let state = (rx, queue, false, guard, chunker);
    let stream = futures_util::stream::unfold(state, |(mut rx, mut queue, mut done, guard, mut c)| async move {
        loop {
            if let Some(e) = queue.pop_front() {
                return Some((Ok::<_, Infallible>(e), (rx, queue, done, guard, c)));
            }
            if done {
                return None;
            }
            match rx.recv().await {
                Some(Event::Text(t)) => queue.extend(c.text(&t).iter().map(data)),
                Some(Event::Done(o)) => {
                    queue.extend(c.done(&o).iter().map(data));
                    queue.push_back(SseEvent::default().data("[DONE]"));
                    done = true;
                }
                Some(Event::Error(e)) => {
                    queue.push_back(data(&e.body()));
                    done = true;
                }
                None => {
                    queue.push_back(data(
                        &ApiError::internal("the engine stopped before the answer ended").body(),
                    ));
                    done = true;
                }
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
        .into_response()
}

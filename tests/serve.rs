//! `lfm serve` end to end: the built binary on an ephemeral loopback port with the tiny_b
//! fixture (it has a tokenizer and the LFM2 chat template), driven by a blocking HTTP client.
//! Every wait is bounded; the server is killed when a test ends.

mod common;

use common::*;
use lfm_wgpu::chat::{ChatTemplate, Message};
use lfm_wgpu::tokenizer::Tokenizer;
use serde_json::{json, Value as Json};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FIXTURE: &str = "tiny_b";
const CTX: &str = "256";
/// Longest any single wait may take (lavapipe is slow; two tests may run at once).
const WAIT: Duration = Duration::from_secs(120);

struct Server {
    child: Child,
    base: String,
    key: Option<String>,
    agent: ureq::Agent,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `lfm serve --port 0` on tiny_b and waits until it is bound and the model is
    /// loaded.
    fn start(extra: &[&str]) -> Server {
        Server::start_on(FIXTURE, extra)
    }

    /// [`Server::start`] on another fixture.
    fn start_on(fixture: &str, extra: &[&str]) -> Server {
        let model = fixture_dir(fixture);
        let mut child = Command::new(env!("CARGO_BIN_EXE_lfm"))
            .args(["serve", "--model", model.to_str().unwrap(), "--port", "0"])
            .args(if extra.contains(&"--ctx") {
                &[][..]
            } else {
                &["--ctx", CTX][..]
            })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(WAIT).expect("no 'listening on' line");
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{line}"));
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        let key = extra.windows(2).find(|w| w[0] == "--api-key").map(|w| w[1].to_string());
        let agent = ureq::AgentBuilder::new().timeout(WAIT).build();
        let s = Server {
            child,
            base: format!("http://{addr}"),
            key,
            agent,
        };
        let t = Instant::now();
        while s.get("/health").0 != 200 {
            assert!(t.elapsed() < WAIT, "the model did not load");
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let r = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.set("Authorization", &format!("Bearer {k}")),
            None => r,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        answer(self.request("GET", path).call())
    }

    fn post(&self, path: &str, body: &Json) -> (u16, Json) {
        let (status, text) = answer(self.request("POST", path).send_string(&body.to_string()));
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
        )
    }

    /// A 200 answer's JSON.
    fn ok(&self, path: &str, body: &Json) -> Json {
        let (status, j) = self.post(path, body);
        assert_eq!(status, 200, "{j}");
        j
    }

    /// Opens a stream; returns its `data:` events one by one.
    fn stream(&self, path: &str, body: &Json) -> Events {
        let r = self.request("POST", path).send_string(&body.to_string()).unwrap();
        assert_eq!(r.content_type(), "text/event-stream");
        Events {
            lines: BufReader::new(r.into_reader()),
        }
    }

    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    }
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match r {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    }
}

struct Events {
    lines: BufReader<Box<dyn Read + Send + Sync>>,
}

impl Events {
    /// The next `data:` payload (keep-alive comments skipped); None at the end.
    fn next(&mut self) -> Option<String> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.lines.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            if let Some(d) = line.trim_end().strip_prefix("data: ") {
                return Some(d.to_string());
            }
        }
    }

    /// Every remaining payload.
    fn all(mut self) -> Vec<String> {
        std::iter::from_fn(|| self.next()).collect()
    }
}

fn chat_body(messages: &Json, max_tokens: usize) -> Json {
    json!({"model": "tiny_b", "messages": messages, "max_tokens": max_tokens, "temperature": 0})
}

fn content(j: &Json) -> String {
    j["choices"][0]["message"]["content"].as_str().unwrap_or("").to_string()
}

/// The concatenated content deltas of a streamed chat answer, its finish reason and the
/// usage chunk; checks the chunk order (role first, `[DONE]` last).
fn read_chat_stream(events: Vec<String>) -> (String, String, Option<Json>) {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    let chunks: Vec<Json> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let (mut text, mut finish, mut usage) = (String::new(), String::new(), None);
    for c in &chunks {
        assert!(usage.is_none(), "the usage chunk comes last: {events:?}");
        assert!(
            finish.is_empty() || c["choices"] == json!([]),
            "nothing after finish_reason but usage"
        );
        if c["choices"] == json!([]) {
            usage = Some(c["usage"].clone());
            continue;
        }
        text.push_str(c["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
        if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    (text, finish, usage)
}

#[test]
fn streamed_deltas_join_to_the_whole_answer_with_usage() {
    let s = Server::start(&[]);
    let msgs = json!([{"role": "user", "content": "Hello there, how are you?"}]);
    let whole = s.ok("/v1/chat/completions", &chat_body(&msgs, 24));
    assert_eq!(whole["object"], "chat.completion");
    let mut body = chat_body(&msgs, 24);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (text, finish, usage) = read_chat_stream(s.stream("/v1/chat/completions", &body).all());
    assert_eq!(text, content(&whole));
    assert!(!text.is_empty());
    assert_eq!(finish, whole["choices"][0]["finish_reason"].as_str().unwrap());
    let usage = usage.expect("include_usage sends a usage chunk");
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage[k], whole["usage"][k], "{k}");
    }
    // Without include_usage there is no usage chunk.
    body["stream_options"] = json!(null);
    let (again, _, usage) = read_chat_stream(s.stream("/v1/chat/completions", &body).all());
    assert_eq!((again, usage), (text, None));
}

/// The greedy answer of `lfm generate` to `ids`, decoded up to the first end-of-sequence id.
fn one_shot(ids: &[u32], max_new: usize, tok: &Tokenizer) -> String {
    let list: Vec<String> = ids.iter().map(|t| t.to_string()).collect();
    let model = fixture_dir(FIXTURE);
    let out = Command::new(env!("CARGO_BIN_EXE_lfm"))
        .args([
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--greedy",
            "--print-ids",
            "--ctx",
            CTX,
        ])
        .args(["--tokens", &list.join(","), "--max-new-tokens", &max_new.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<u32> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    let end = got.iter().position(|t| tok.eos_ids().contains(t)).unwrap_or(got.len());
    tok.decode(&got[..end], true)
}

#[test]
fn greedy_answers_equal_lfm_generate() {
    let dir = fixture_dir(FIXTURE);
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let template = ChatTemplate::from_dir(&dir).unwrap();
    let s = Server::start(&[]);
    let msgs = [
        Message::system("You are terse."),
        Message::user("What is a mixture of experts?"),
    ];
    let ids = template.apply(&tok, &msgs, None, true).unwrap();
    let expected = one_shot(&ids, 20, &tok);
    let body = chat_body(
        &json!([{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is a mixture of experts?"}]),
        20,
    );
    let j = s.ok("/v1/chat/completions", &body);
    assert_eq!(content(&j), expected);
    assert_eq!(j["usage"]["prompt_tokens"], ids.len());

    // Text completions: BOS + text, as `lfm run --raw`.
    let prompt = "Once upon a time";
    let raw = tok.encode(prompt, true).unwrap();
    let j = s.ok(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(j["choices"][0]["text"].as_str().unwrap(), one_shot(&raw, 12, &tok));
}

#[test]
fn second_turn_prefills_only_the_new_tokens() {
    let s = Server::start(&[]);
    let turn1 = json!([{"role": "system", "content": "You are terse."},
                       {"role": "user", "content": "Hello there, how are you?"}]);
    let a1 = s.ok("/v1/chat/completions", &chat_body(&turn1, 8));
    let p1 = a1["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(a1["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let mut turn2 = turn1.clone();
    let list = turn2.as_array_mut().unwrap();
    list.push(json!({"role": "assistant", "content": content(&a1)}));
    list.push(json!({"role": "user", "content": "Tell me more about it."}));
    let a2 = s.ok("/v1/chat/completions", &chat_body(&turn2, 8));
    let p2 = a2["usage"]["prompt_tokens"].as_u64().unwrap();
    let cached = a2["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    assert!(
        cached >= p1 && cached < p2,
        "turn 2 reused {cached} of {p2} tokens (turn 1 had {p1})"
    );
    // What was prefilled in all: turn 1's prompt, then only what turn 2 added.
    assert_eq!(s.metric("lfm_prefilled_tokens_total") as u64, p1 + (p2 - cached));

    // Another conversation empties the cache; turn 2 from scratch answers the same.
    s.ok(
        "/v1/chat/completions",
        &chat_body(&json!([{"role": "user", "content": "Unrelated."}]), 2),
    );
    let fresh = s.ok("/v1/chat/completions", &chat_body(&turn2, 8));
    assert_eq!(fresh["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(content(&fresh), content(&a2));
}

fn error_of(s: &Server, path: &str, body: &Json) -> (u16, Json) {
    let (status, j) = s.post(path, body);
    let e = &j["error"];
    assert!(e["message"].is_string() && e["type"].is_string(), "{j}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{j}");
    (status, j)
}

#[test]
fn errors_have_their_status_and_the_openai_shape() {
    let s = Server::start(&["--api-key", "sekret", "--cors", "http://localhost:3000"]);
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let chat = "/v1/chat/completions";

    // 400: malformed JSON, a field of the wrong type, n ≠ 1, too long for the context.
    let (status, text) = answer(s.request("POST", chat).send_string("{\"messages\": ["));
    assert_eq!(status, 400, "{text}");
    let (status, j) = error_of(&s, chat, &json!({"messages": msgs, "temperature": "warm"}));
    assert_eq!(status, 400, "{j}");
    let (status, j) = error_of(&s, chat, &json!({"messages": msgs, "n": 3}));
    assert_eq!((status, j["error"]["param"].as_str()), (400, Some("n")), "{j}");
    let (status, j) = error_of(&s, chat, &json!({"messages": msgs, "max_tokens": 1000}));
    assert_eq!(status, 400, "{j}");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum context length"),
        "{j}"
    );
    let (status, j) = error_of(&s, chat, &json!({"messages": msgs, "max_tokens": i64::MAX}));
    assert_eq!(status, 400, "{j}");
    let (status, j) = error_of(&s, "/v1/completions", &json!({"prompt": "x", "max_tokens": 256}));
    assert_eq!(status, 400, "{j}");

    // 404: an unknown model, an unknown route.
    let (status, j) = error_of(&s, chat, &json!({"model": "gpt-4o", "messages": msgs}));
    assert_eq!(
        (status, j["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{j}"
    );
    let (status, text) = s.get("/v2/nothing");
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<Json>(&text).unwrap()["error"]["message"].is_string());

    // 413: a body over 8 MiB is refused from its Content-Length, before it is sent.
    let head = format!(
        "POST {chat} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer sekret\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{",
        9 << 20
    );
    let mut conn = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    conn.write_all(head.as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        serde_json::from_str::<Json>(body).unwrap()["error"]["message"].is_string(),
        "{reply}"
    );

    let (_, metrics) = s.get("/metrics");
    for line in [
        "lfm_requests_total{route=\"/v1/chat/completions\",status=\"404\"} 1",
        "lfm_requests_total{route=\"/v1/chat/completions\",status=\"413\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}

#[test]
fn a_key_guards_every_route_but_health_and_cors_answers_preflight() {
    let s = Server::start(&["--api-key", "sekret", "--cors", "http://localhost:3000"]);
    let chat = "/v1/chat/completions";
    // 401: no key, a wrong key; /health needs none.
    let (status, text) = answer(s.agent.post(&format!("{}{chat}", s.base)).send_string("{}"));
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("invalid_api_key"), "{text}");
    let wrong = s
        .agent
        .get(&format!("{}/v1/models", s.base))
        .set("Authorization", "Bearer sekreT");
    assert_eq!(answer(wrong.call()).0, 401);
    assert_eq!(answer(s.agent.get(&format!("{}/health", s.base)).call()).0, 200);
    let (status, models) = s.get("/v1/models");
    assert_eq!(status, 200);
    assert!(
        models.contains(&format!("\"id\":\"{}\"", fixture_dir(FIXTURE).display())),
        "{models}"
    );

    // CORS preflight for the allowed origin.
    let pre = s
        .agent
        .request("OPTIONS", &format!("{}{chat}", s.base))
        .set("Origin", "http://localhost:3000")
        .set("Access-Control-Request-Method", "POST")
        .call()
        .unwrap();
    assert_eq!(pre.header("access-control-allow-origin"), Some("http://localhost:3000"));

    let (_, metrics) = s.get("/metrics");
    let line = "lfm_requests_total{route=\"/v1/chat/completions\",status=\"401\"} 1";
    assert!(metrics.contains(line), "{line}\n{metrics}");
}

/// A long greedy stream (the tiny model does not stop on its own within it).
fn long_stream(s: &Server, max_tokens: usize) -> Events {
    let mut body = chat_body(
        &json!([{"role": "user", "content": "Count to a thousand."}]),
        max_tokens,
    );
    body["stream"] = json!(true);
    let mut ev = s.stream("/v1/chat/completions", &body);
    // Role chunk, then the first text: the engine is running it.
    for _ in 0..2 {
        let e = ev.next().expect("stream ended early");
        assert!(!e.contains("finish_reason\":\"") && !e.contains("\"error\""), "{e}");
    }
    ev
}

#[test]
fn full_queue_is_503_and_a_gone_client_frees_the_engine() {
    let s = Server::start(&["--queue", "1"]);
    let running = long_stream(&s, 200);
    // One waits in the queue; the next is turned away.
    let mut body = chat_body(&json!([{"role": "user", "content": "hi"}]), 4);
    body["stream"] = json!(true);
    let waiting = s
        .request("POST", "/v1/chat/completions")
        .send_string(&body.to_string())
        .unwrap();
    let r = match s.request("POST", "/v1/chat/completions").send_string(&body.to_string()) {
        Err(ureq::Error::Status(503, r)) => r,
        other => panic!("expected 503: {other:?}"),
    };
    assert!(r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok()));
    let j: Json = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(j["error"]["code"], "queue_full");
    assert_eq!(s.metric("lfm_queue_depth"), 1.0);

    // Both clients leave: the running answer stops within a step, the queued one never runs,
    // and the next request is answered at once.
    drop(running);
    drop(waiting);
    // The server learns of the closed connections as the sockets report them: a client that
    // honours Retry-After may meet the full queue for a moment.
    let t = Instant::now();
    let next = chat_body(&json!([{"role": "user", "content": "Next!"}]), 4);
    let j = loop {
        match s.post("/v1/chat/completions", &next) {
            (200, j) => break j,
            (503, _) if t.elapsed() < Duration::from_secs(5) => std::thread::sleep(Duration::from_millis(50)),
            (status, j) => panic!("{status}: {j}"),
        }
    };
    assert!(j["usage"]["completion_tokens"].as_u64().unwrap() <= 4, "{j}");
    let generated = s.metric("lfm_generated_tokens_total");
    assert!(
        generated < 100.0,
        "the abandoned answer went on: {generated} tokens generated"
    );
    assert!(s.metric("lfm_cancelled_total") >= 1.0);
    eprintln!("next answer after the cancellation: {:.2} s", t.elapsed().as_secs_f64());
}

/// A streamed request waiting in the queue behind a long answer gets `: keep-alive` comments
/// before its first token (every 0.2 s here; `routes::KEEP_ALIVE`, at most 15 s, by default),
/// then its answer as usual.
#[test]
fn a_queued_stream_gets_keep_alive_comments_while_it_waits() {
    assert!(lfm_wgpu::serve::routes::KEEP_ALIVE <= Duration::from_secs(15));
    let s = Server::start(&["--keep-alive", "0.2"]);
    let running = long_stream(&s, 200);
    let mut body = chat_body(&json!([{"role": "user", "content": "hi"}]), 4);
    body["stream"] = json!(true);
    let r = s
        .request("POST", "/v1/chat/completions")
        .send_string(&body.to_string())
        .unwrap();
    let mut lines = BufReader::new(r.into_reader());
    let t = Instant::now();
    let (mut line, mut data) = (String::new(), Vec::new());
    loop {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "the stream ended: {data:?}");
        match line.trim_end() {
            ": keep-alive" => break,
            "" => {}
            l => {
                // Only the role chunk comes before the engine takes the request.
                let d = l.strip_prefix("data: ").unwrap_or_else(|| panic!("{l}"));
                data.push(d.to_string());
                assert!(
                    d.contains("\"role\":\"assistant\""),
                    "a token came before any keep-alive: {d}"
                );
            }
        }
    }
    let waited = t.elapsed();
    assert_eq!(s.metric("lfm_queue_depth"), 1.0, "the request was no longer waiting");
    eprintln!("first keep-alive comment after {waited:?} in the queue");
    // Still a normal answer once the long one is gone.
    drop(running);
    let rest = Events { lines }.all();
    let (text, finish, _) = read_chat_stream(data.into_iter().chain(rest).collect());
    assert!(!finish.is_empty(), "{text:?}");
}

/// `required` and a named `tool_choice` force a call through a grammar built from the tools'
/// schemas: even the tiny random model answers with a call that parses, names an offered tool
/// and has arguments valid against its schema (`jsonschema`), streamed and whole alike.
#[test]
fn forced_tool_calls_parse_and_validate() {
    // The tools' schemas take about 530 tokens of tiny_b's 384-id vocabulary.
    let s = Server::start(&["--ctx", "768"]);
    let weather = json!({"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 8}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city"], "additionalProperties": false});
    let alarm = json!({"type": "object", "properties": {"time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}},
        "required": ["time"], "additionalProperties": false});
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": weather}},
        {"type": "function", "function": {"name": "set_alarm", "description": "Alarm", "parameters": alarm}}]);
    let named = json!({"type": "function", "function": {"name": "set_alarm"}});
    for (choice, seed) in [(json!("required"), 1), (json!("required"), 2), (named, 3)] {
        let mut body = chat_body(&json!([{"role": "user", "content": "Weather in Paris?"}]), 80);
        body["tools"] = tools.clone();
        body["tool_choice"] = choice.clone();
        body["parallel_tool_calls"] = json!(false);
        body["temperature"] = json!(1.0);
        body["seed"] = json!(seed);
        let whole = s.ok("/v1/chat/completions", &body);
        let case = format!("{choice} seed {seed}: {whole}");
        assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls", "{case}");
        let m = &whole["choices"][0]["message"];
        assert!(m["content"].is_null(), "{case}");
        let calls = m["tool_calls"].as_array().unwrap_or_else(|| panic!("{case}"));
        assert_eq!(calls.len(), 1, "{case}");
        let f = &calls[0]["function"];
        let name = f["name"].as_str().unwrap();
        if choice.is_object() {
            assert_eq!(name, "set_alarm", "{case}");
        }
        let schema = if name == "get_weather" { &weather } else { &alarm };
        let args: Json = serde_json::from_str(f["arguments"].as_str().unwrap()).unwrap();
        let validator = jsonschema::validator_for(schema).unwrap();
        assert!(validator.is_valid(&args), "{case}");
        body["stream"] = json!(true);
        let (streamed, text, finish) = accumulate_tool_calls(s.stream("/v1/chat/completions", &body).all());
        assert_eq!((text.as_str(), finish.as_str()), ("", "tool_calls"), "{case}");
        assert_eq!(streamed.len(), 1, "{case}");
        assert_eq!(streamed[0]["function"], *f, "{case}");
    }
    // A tool schema the grammar cannot honour is a 400 naming the tool.
    let mut body = chat_body(&json!([{"role": "user", "content": "Hi"}]), 4);
    body["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {"anyOf": [{}]}}}]);
    let (status, e) = s.post("/v1/chat/completions", &body);
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("tools")), "{e}");
    let msg = e["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("tools[0].function.parameters"), "{msg}");
}

/// What the `openai` client's stream accumulation makes of a chat stream's `tool_calls`
/// deltas: per `index`, the id and type as first given, the name and arguments concatenated.
/// Also returns the content deltas joined and the finish reason.
fn accumulate_tool_calls(events: Vec<String>) -> (Vec<Json>, String, String) {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    let (mut calls, mut content, mut finish) = (Vec::<Json>::new(), String::new(), String::new());
    for e in &events[..events.len() - 1] {
        let c: Json = serde_json::from_str(e).unwrap();
        let choice = &c["choices"][0];
        content.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
        for t in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = t["index"].as_u64().unwrap() as usize;
            if calls.len() <= i {
                assert_eq!(calls.len(), i, "tool call indices come in order: {events:?}");
                calls.push(json!({"id": t["id"], "type": t["type"], "function": {"name": "", "arguments": ""}}));
            }
            for k in ["name", "arguments"] {
                let acc = format!(
                    "{}{}",
                    calls[i]["function"][k].as_str().unwrap(),
                    t["function"][k].as_str().unwrap_or("")
                );
                calls[i]["function"][k] = json!(acc);
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    (calls, content, finish)
}

/// The tool_call fixture (tools/make_tool_call_fixture.py) is a bigram model whose greedy and
/// sampled answer is `<|tool_call_start|>[forecast(day=3)]<|tool_call_end|>`: the text comes
/// from the engine's forward pass and sampler token by token, and passes through the stream's
/// tool-call parser. Without tools the markers stay in `content` (the raw text, parsed here
/// with `toolcall::parse_calls`); with tools, auto / required / named choices (each under
/// the tools' grammar) give that call, streamed and whole alike.
#[test]
fn a_generated_tool_call_streams_as_the_client_accumulates_it() {
    use lfm_wgpu::serve::toolcall::{parse_calls, TOOL_CALL_END, TOOL_CALL_START};
    let s = Server::start_on("tool_call", &[]);
    let msgs = json!([{"role": "user", "content": "Will it rain in Oslo in three days?"}]);
    let tools = json!([{"type": "function", "function": {"name": "forecast", "description": "Weather forecast",
        "parameters": {"type": "object", "properties": {"day": {"type": "integer"}}}}}]);

    let ask = |max_tokens| {
        let mut b = chat_body(&msgs, max_tokens);
        b["model"] = json!("tool_call");
        b
    };

    // No tools: the raw text, markers and all.
    let raw = content(&s.ok("/v1/chat/completions", &ask(24)));
    let body = raw
        .strip_prefix(TOOL_CALL_START)
        .and_then(|r| r.strip_suffix(TOOL_CALL_END))
        .unwrap_or_else(|| panic!("not one tool-call span: {raw:?}"));
    let parsed = parse_calls(body).unwrap();
    assert_eq!(parsed.len(), 1);
    assert_eq!(
        (parsed[0].name.as_str(), parsed[0].arguments.as_str()),
        ("forecast", r#"{"day":3}"#)
    );

    let named = json!({"type": "function", "function": {"name": "forecast"}});
    // Every choice gives the same 17 tokens: the tools' grammar forces the start of a
    // required or named call as generated tokens, and allows the model's own call.
    for choice in [json!("auto"), json!("required"), named] {
        let tokens = 17;
        for temperature in [json!(0), json!(1.0)] {
            let mut req = ask(24);
            req["tools"] = tools.clone();
            req["tool_choice"] = choice.clone();
            req["temperature"] = temperature.clone();
            req["seed"] = json!(7);
            let whole = s.ok("/v1/chat/completions", &req);
            let m = &whole["choices"][0]["message"];
            let case = format!("tool_choice {choice}, temperature {temperature}: {whole}");
            assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls", "{case}");
            assert_eq!(whole["usage"]["completion_tokens"], tokens, "{case}");
            assert!(m["content"].is_null(), "{case}");
            let calls = m["tool_calls"].as_array().unwrap_or_else(|| panic!("{case}"));
            let got: Vec<(&str, &str)> = calls
                .iter()
                .map(|c| {
                    (
                        c["function"]["name"].as_str().unwrap(),
                        c["function"]["arguments"].as_str().unwrap(),
                    )
                })
                .collect();
            let want: Vec<(&str, &str)> = parsed.iter().map(|c| (c.name.as_str(), c.arguments.as_str())).collect();
            assert_eq!(got, want, "{case}");

            req["stream"] = json!(true);
            let (streamed, text, finish) = accumulate_tool_calls(s.stream("/v1/chat/completions", &req).all());
            assert_eq!(text, "", "{case}");
            assert_eq!(finish, "tool_calls", "{case}");
            assert_eq!(streamed.len(), calls.len(), "{case}");
            for (a, b) in streamed.iter().zip(calls) {
                assert_eq!(a["function"], b["function"], "{case}");
                assert_eq!(a["type"], "function");
                assert!(a["id"].as_str().is_some_and(|id| id.starts_with("call_")), "{case}");
            }
        }
    }

    // Cut before the call closes: the span does not parse and stays content, as written.
    let mut req = ask(12);
    req["tools"] = tools;
    let whole = s.ok("/v1/chat/completions", &req);
    assert_eq!(whole["choices"][0]["finish_reason"], "length");
    assert!(whole["choices"][0]["message"].get("tool_calls").is_none(), "{whole}");
    assert_eq!(content(&whole), format!("{TOOL_CALL_START}[forecast(day"), "{whole}");
}

#[cfg(unix)]
#[test]
fn sigterm_ends_streams_cleanly_and_exits() {
    let mut s = Server::start(&[]);
    let mut ev = long_stream(&s, 200);
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut last = String::new();
    while let Some(e) = ev.next() {
        last = e;
    }
    let j: Json = serde_json::from_str(&last).unwrap_or_else(|_| panic!("last event {last:?}"));
    assert_eq!(j["error"]["code"], "shutting_down", "{j}");
    let t = Instant::now();
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(40), "the server did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The server's resident memory in KiB (Linux), or None.
fn rss_kib(s: &Server) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One round of `clients` concurrent greedy streams over `prompts`; returns (answered,
/// refused). Each answer must be exactly the solo answer to its prompt; each refusal a 503
/// in OpenAI's shape.
fn load_round(s: &Server, prompts: &[Json], solo: &[String], clients: usize) -> (usize, usize) {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                scope.spawn(move || {
                    let mut body = chat_body(&prompts[i % prompts.len()], 6);
                    body["stream"] = json!(true);
                    match s.request("POST", "/v1/chat/completions").send_string(&body.to_string()) {
                        Ok(r) => {
                            let events = Events {
                                lines: BufReader::new(r.into_reader()),
                            };
                            let (text, _, _) = read_chat_stream(events.all());
                            assert_eq!(text, solo[i % prompts.len()], "client {i}");
                            true
                        }
                        Err(ureq::Error::Status(503, r)) => {
                            assert!(r.header("retry-after").is_some());
                            let j: Json = serde_json::from_str(&r.into_string().unwrap()).unwrap();
                            assert_eq!(j["error"]["code"], "queue_full", "{j}");
                            false
                        }
                        Err(e) => panic!("client {i}: {e}"),
                    }
                })
            })
            .collect();
        let answered = handles.into_iter().map(|h| h.join().unwrap()).filter(|&ok| ok).count();
        (answered, clients - answered)
    })
}

/// Four prompts and their solo greedy answers (6 tokens).
fn solo_answers(s: &Server) -> (Vec<Json>, Vec<String>) {
    let prompts: Vec<Json> = (0..4)
        .map(|i| json!([{"role": "user", "content": format!("Question number {i}: why?")}]))
        .collect();
    let solo = prompts
        .iter()
        .map(|m| content(&s.ok("/v1/chat/completions", &chat_body(m, 6))))
        .collect();
    (prompts, solo)
}

#[test]
fn concurrent_streams_get_their_solo_answer_or_a_clean_503() {
    let s = Server::start(&["--queue", "16"]);
    let (prompts, solo) = solo_answers(&s);
    let (answered, refused) = load_round(&s, &prompts, &solo, 64);
    eprintln!("64 clients, --queue 16: answered {answered}, refused {refused}");
    assert!(
        answered >= 17,
        "the running request and a full queue are answered: {answered}"
    );
    assert_eq!(s.metric("lfm_queue_depth"), 0.0);
}

/// The server's memory after a second round of 64 clients is what it was after the first.
/// It was not until the router's loop bounds stopped being uniform-only (shaders/router.wgsl):
/// lavapipe (Mesa 22.3) inlines such uniforms and compiled, and kept, a new router shader at
/// every dispatch (1.5 MB of host memory per decode step on tiny_b).
#[test]
fn server_memory_stays_flat_under_load() {
    let s = Server::start(&["--queue", "16"]);
    let (prompts, solo) = solo_answers(&s);
    load_round(&s, &prompts, &solo, 64);
    let (Some(a), _, Some(b)) = (rss_kib(&s), load_round(&s, &prompts, &solo, 64), rss_kib(&s)) else {
        return;
    };
    eprintln!("server RSS after round 1: {a} KiB, after round 2: {b} KiB");
    assert!(
        b < a + 16 * 1024,
        "memory grew from {a} to {b} KiB over a round of 64 clients"
    );
}

#[test]
fn cancelled_streams_do_not_delay_the_next_request() {
    let s = Server::start(&["--queue", "128"]);
    let next = json!([{"role": "user", "content": "Next!"}]);
    let t = Instant::now();
    s.ok("/v1/chat/completions", &chat_body(&next, 1));
    let solo = t.elapsed();
    // 100 long streams in batches of 25, each left after its first event.
    for _ in 0..4 {
        std::thread::scope(|scope| {
            for _ in 0..25 {
                scope.spawn(|| {
                    let mut body = chat_body(&json!([{"role": "user", "content": "Count to a thousand."}]), 200);
                    body["stream"] = json!(true);
                    let mut ev = s.stream("/v1/chat/completions", &body);
                    assert!(ev.next().is_some());
                });
            }
        });
    }
    let t = Instant::now();
    let j = s.ok("/v1/chat/completions", &chat_body(&next, 1));
    let after = t.elapsed();
    eprintln!("one-token answer: {solo:?} alone, {after:?} after 100 cancelled streams");
    assert!(j["usage"]["completion_tokens"].as_u64().unwrap() <= 1, "{j}");
    assert!(after < solo * 3 + Duration::from_secs(2), "{after:?} vs {solo:?}");
    let generated = s.metric("lfm_generated_tokens_total");
    assert!(
        generated < 500.0,
        "the abandoned streams went on generating: {generated} tokens"
    );
    assert!(s.metric("lfm_cancelled_total") >= 95.0);
}

/// Weights that do not fit: the server was listening (the load runs behind it), then it
/// stops with the reason and a failure status.
#[test]
fn a_model_that_does_not_load_stops_the_server_with_the_reason() {
    let model = fixture_dir(FIXTURE);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lfm"))
        .args(["serve", "--model", model.to_str().unwrap(), "--port", "0", "--ctx", CTX])
        .env("LFM_GPU_MEMORY", "1MiB")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t.elapsed() > WAIT {
            let _ = child.kill();
            panic!("the server did not stop");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!status.success());
    assert!(out.starts_with("listening on http://127.0.0.1:"), "{out}");
    assert!(
        err.contains("loading the model failed") && err.contains("not enough GPU memory"),
        "{err}"
    );
}

/// A client that gives up on a non-streaming answer stops its generation too. The client
/// closes its connection once the engine is busy with its answer (not after a set time, which
/// a fast machine could outlast), and the answer must stop well short of its `max_tokens`.
#[test]
fn a_non_streaming_client_that_leaves_cancels_its_answer() {
    const MAX_TOKENS: usize = 400;
    let s = Server::start(&["--ctx", "512"]);
    let body = chat_body(
        &json!([{"role": "user", "content": "Count to a thousand."}]),
        MAX_TOKENS,
    )
    .to_string();
    let mut conn = std::net::TcpStream::connect(s.base.strip_prefix("http://").unwrap()).unwrap();
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !done() {
            assert!(t.elapsed() < WAIT, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    until("the answer never started", &|| s.metric("lfm_busy") == 1.0);
    drop(conn);
    until("the abandoned answer did not stop", &|| s.metric("lfm_busy") == 0.0);
    assert_eq!(s.metric("lfm_cancelled_total"), 1.0);
    let t = Instant::now();
    s.ok(
        "/v1/chat/completions",
        &chat_body(&json!([{"role": "user", "content": "Next!"}]), 1),
    );
    eprintln!("next answer: {:.2} s", t.elapsed().as_secs_f64());
    let generated = s.metric("lfm_generated_tokens_total");
    assert!(
        generated < (MAX_TOKENS / 2) as f64,
        "the abandoned answer went on: {generated} tokens generated"
    );
}

/// `response_format` (issue #13): `json_schema` answers validate against the schema, whole
/// and streamed (the streamed deltas join to the whole answer, and finish with "stop" when
/// the format is complete); `json_object` answers are objects; a schema the engine cannot
/// enforce, or a malformed `response_format`, is a 400 naming `response_format`.
#[test]
fn response_format_constrains_the_answer() {
    let s = Server::start(&[]);
    let chat = "/v1/chat/completions";
    let msgs = json!([{"role": "user", "content": "Give me the forecast as JSON."}]);
    let schema = json!({"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 10},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "rain": {"type": "boolean"}},
        "required": ["city", "days"], "additionalProperties": false});
    let validator = jsonschema::validator_for(&schema).unwrap();
    let rf = json!({"type": "json_schema", "json_schema": {"name": "forecast", "schema": schema, "strict": true}});
    for seed in 0..4 {
        let mut body = chat_body(&msgs, 200);
        body["response_format"] = rf.clone();
        body["temperature"] = json!(1.0);
        body["seed"] = json!(seed);
        let whole = s.ok(chat, &body);
        let text = content(&whole);
        let v: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("seed {seed}: {text:?}: {e}"));
        assert!(validator.is_valid(&v), "seed {seed}: {text}");
        assert_eq!(whole["choices"][0]["finish_reason"], "stop", "{whole}");
        body["stream"] = json!(true);
        let (streamed, finish, _) = read_chat_stream(s.stream(chat, &body).all());
        assert_eq!(
            (streamed.as_str(), finish.as_str()),
            (text.as_str(), "stop"),
            "seed {seed}"
        );
    }
    let mut body = chat_body(&msgs, 200);
    body["response_format"] = json!({"type": "json_object"});
    let text = content(&s.ok(chat, &body));
    if let Ok(v) = serde_json::from_str::<Json>(&text) {
        assert!(v.is_object(), "{text}");
    } else {
        assert!(text.starts_with('{'), "json_object output starts an object: {text:?}");
    }
    for (rf, needle) in [
        (
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "if": {}}}}),
            "if",
        ),
        (
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}),
            "strin",
        ),
        (json!({"type": "yaml"}), "json_schema"),
        (json!({"type": "json_schema"}), "json_schema"),
    ] {
        let mut body = chat_body(&msgs, 8);
        body["response_format"] = rf;
        let (status, j) = error_of(&s, chat, &body);
        assert_eq!(
            (status, j["error"]["param"].as_str()),
            (400, Some("response_format")),
            "{j}"
        );
        let msg = j["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} names {needle:?}");
    }
}

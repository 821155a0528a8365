//! Response bodies: chat and text completions, whole or as streamed chunks.
//!
//! A streamed chat answer goes: a chunk with the role, content / reasoning / tool-call
//! deltas, a last chunk with `finish_reason`, optionally a `choices: []` chunk with `usage`,
//! then `[DONE]` (added by the router). The whole answer goes through the same
//! [`Splitter`] as the chunks, so the two always agree.

use super::engine::{Finish, Outcome};
use super::output::{merge, Part, Splitter};
use super::toolcall::ToolCall;
use serde_json::{json, Value as Json};

/// What every body of one response repeats.
#[derive(Clone, Debug)]
pub struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

/// Turns engine output into response chunks (chat or text completion).
pub trait Chunker: Send + 'static {
    /// Chunks sent before any text (the role).
    fn start(&mut self) -> Vec<Json>;
    fn text(&mut self, delta: &str) -> Vec<Json>;
    /// The last chunks, after the end of the answer.
    fn done(&mut self, outcome: &Outcome) -> Vec<Json>;
}

pub fn usage(o: &Outcome) -> Json {
    json!({
        "prompt_tokens": o.prompt_tokens,
        "completion_tokens": o.completion_tokens,
        "total_tokens": o.prompt_tokens + o.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": o.cached_tokens},
    })
}

fn finish_reason(o: &Outcome, tool_calls: bool) -> &'static str {
    match (tool_calls, o.finish) {
        (true, _) => "tool_calls",
        (false, Finish::Stop) => "stop",
        (false, Finish::Length) => "length",
    }
}

/// Streamed chat completion chunks.
pub struct ChatChunks {
    meta: Meta,
    splitter: Splitter,
    /// Text the prompt forced the answer to start with (fed before the generated text).
    forced: String,
    include_usage: bool,
    calls: usize,
}

impl ChatChunks {
    pub fn new(meta: Meta, tools: bool, think: bool, forced: String, include_usage: bool) -> Self {
        ChatChunks {
            meta,
            splitter: Splitter::new(tools, think),
            forced,
            include_usage,
            calls: 0,
        }
    }

    fn chunk(&self, delta: Json, finish: Option<&str>) -> Json {
        json!({
            "id": self.meta.id,
            "object": "chat.completion.chunk",
            "created": self.meta.created,
            "model": self.meta.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    fn parts(&mut self, parts: Vec<Part>) -> Vec<Json> {
        let mut out = Vec::new();
        for p in parts {
            match p {
                Part::Content(s) => out.push(self.chunk(json!({"content": s}), None)),
                Part::Reasoning(s) => out.push(self.chunk(json!({"reasoning_content": s}), None)),
                Part::ToolCalls(calls) => {
                    for c in calls {
                        let i = self.calls;
                        self.calls += 1;
                        // The name first, the arguments as a second fragment of the same index.
                        let head = json!({"index": i, "id": call_id(&self.meta, i), "type": "function",
                                          "function": {"name": c.name, "arguments": ""}});
                        out.push(self.chunk(json!({"tool_calls": [head]}), None));
                        let args = json!({"index": i, "function": {"arguments": c.arguments}});
                        out.push(self.chunk(json!({"tool_calls": [args]}), None));
                    }
                }
            }
        }
        out
    }
}

impl Chunker for ChatChunks {
    fn start(&mut self) -> Vec<Json> {
        let forced = std::mem::take(&mut self.forced);
        let first = self.chunk(json!({"role": "assistant", "content": ""}), None);
        let parts = self.splitter.push(&forced);
        let mut out = vec![first];
        out.extend(self.parts(parts));
        out
    }

    fn text(&mut self, delta: &str) -> Vec<Json> {
        let parts = self.splitter.push(delta);
        self.parts(parts)
    }

    fn done(&mut self, o: &Outcome) -> Vec<Json> {
        let parts = self.splitter.finish();
        let mut out = self.parts(parts);
        out.push(self.chunk(json!({}), Some(finish_reason(o, self.calls > 0))));
        if self.include_usage {
            out.push(json!({
                "id": self.meta.id,
                "object": "chat.completion.chunk",
                "created": self.meta.created,
                "model": self.meta.model,
                "choices": [],
                "usage": usage(o),
            }));
        }
        out
    }
}

fn call_id(meta: &Meta, i: usize) -> String {
    format!("call_{}_{i}", meta.id.rsplit('-').next().unwrap_or("0"))
}

/// The whole chat completion.
pub fn chat_completion(meta: &Meta, text: &str, forced: &str, tools: bool, think: bool, o: &Outcome) -> Json {
    let mut s = Splitter::new(tools, think);
    let mut parts = s.push(forced);
    parts.extend(s.push(text));
    parts.extend(s.finish());
    let (mut content, mut reasoning, mut calls) = (String::new(), String::new(), Vec::<ToolCall>::new());
    for p in merge(parts) {
        match p {
            Part::Content(c) => content.push_str(&c),
            Part::Reasoning(r) => reasoning.push_str(&r),
            Part::ToolCalls(c) => calls.extend(c),
        }
    }
    let mut message = json!({"role": "assistant", "content": (!content.is_empty()).then_some(content)});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    if !calls.is_empty() {
        let list: Vec<Json> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({"id": call_id(meta, i), "type": "function",
                                 "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
        message["tool_calls"] = Json::Array(list);
    }
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason(o, !calls.is_empty())}],
        "usage": usage(o),
    })
}

/// Streamed text completion chunks.
pub struct TextChunks {
    pub meta: Meta,
    pub include_usage: bool,
}

impl TextChunks {
    fn chunk(&self, text: &str, finish: Option<&str>) -> Json {
        json!({
            "id": self.meta.id,
            "object": "text_completion",
            "created": self.meta.created,
            "model": self.meta.model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
        })
    }
}

impl Chunker for TextChunks {
    fn start(&mut self) -> Vec<Json> {
        Vec::new()
    }

    fn text(&mut self, delta: &str) -> Vec<Json> {
        vec![self.chunk(delta, None)]
    }

    fn done(&mut self, o: &Outcome) -> Vec<Json> {
        let mut out = vec![self.chunk("", Some(finish_reason(o, false)))];
        if self.include_usage {
            out.push(json!({
                "id": self.meta.id,
                "object": "text_completion",
                "created": self.meta.created,
                "model": self.meta.model,
                "choices": [],
                "usage": usage(o),
            }));
        }
        out
    }
}

/// The whole text completion.
pub fn text_completion(meta: &Meta, text: &str, o: &Outcome) -> Json {
    json!({
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason(o, false)}],
        "usage": usage(o),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            id: "chatcmpl-7".into(),
            created: 1,
            model: "m".into(),
        }
    }

    const OUTCOME: Outcome = Outcome {
        finish: Finish::Stop,
        prompt_tokens: 10,
        cached_tokens: 4,
        completion_tokens: 5,
    };

    /// What a client accumulating the deltas ends with, as the whole response.
    fn accumulate(chunks: &[Json]) -> (String, String, Vec<(String, String)>, String) {
        let (mut content, mut reasoning, mut calls, mut finish) =
            (String::new(), String::new(), Vec::new(), String::new());
        for c in chunks {
            let ch = &c["choices"][0];
            let d = &ch["delta"];
            content.push_str(d["content"].as_str().unwrap_or(""));
            reasoning.push_str(d["reasoning_content"].as_str().unwrap_or(""));
            for t in d["tool_calls"].as_array().into_iter().flatten() {
                let i = t["index"].as_u64().unwrap() as usize;
                if calls.len() <= i {
                    calls.push((String::new(), String::new()));
                }
                calls[i].0.push_str(t["function"]["name"].as_str().unwrap_or(""));
                calls[i].1.push_str(t["function"]["arguments"].as_str().unwrap_or(""));
            }
            if let Some(f) = ch["finish_reason"].as_str() {
                finish = f.to_string();
            }
        }
        (content, reasoning, calls, finish)
    }

    #[test]
    fn streamed_chat_accumulates_to_the_whole_answer() {
        let text = "<think>plan</think>Sure.<|tool_call_start|>[a(x=1), b(y=\"é\")]<|tool_call_end|>";
        for forced in ["", "<|tool_call_start|>["] {
            let generated = text;
            let mut c = ChatChunks::new(meta(), true, true, forced.to_string(), true);
            let mut chunks = c.start();
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            for ch in generated.chars() {
                chunks.extend(c.text(&ch.to_string()));
            }
            chunks.extend(c.done(&OUTCOME));
            let usage = chunks.pop().unwrap();
            assert_eq!(usage["choices"], json!([]));
            assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
            let (content, reasoning, calls, finish) = accumulate(&chunks);
            let whole = chat_completion(&meta(), generated, forced, true, true, &OUTCOME);
            let m = &whole["choices"][0]["message"];
            assert_eq!(m["content"].as_str().unwrap_or(""), content, "{forced:?}");
            assert_eq!(m["reasoning_content"].as_str().unwrap_or(""), reasoning);
            let whole_calls: Vec<(String, String)> = m["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    (
                        t["function"]["name"].as_str().unwrap().into(),
                        t["function"]["arguments"].as_str().unwrap().into(),
                    )
                })
                .collect();
            assert_eq!(whole_calls, calls);
            assert_eq!(whole["choices"][0]["finish_reason"], finish);
            if forced.is_empty() {
                assert_eq!(finish, "tool_calls");
                assert_eq!(calls[1], ("b".to_string(), r#"{"y":"é"}"#.to_string()));
                assert_eq!((content.as_str(), reasoning.as_str()), ("Sure.", "plan"));
            }
        }
    }

    #[test]
    fn plain_answers_and_length() {
        let o = Outcome {
            finish: Finish::Length,
            ..OUTCOME
        };
        let whole = chat_completion(&meta(), "hi", "", false, true, &o);
        assert_eq!(whole["choices"][0]["finish_reason"], "length");
        assert_eq!(whole["choices"][0]["message"]["content"], "hi");
        assert!(whole["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(whole["usage"]["total_tokens"], 15);
        let t = text_completion(&meta(), "abc", &OUTCOME);
        assert_eq!(t["choices"][0]["text"], "abc");
        assert_eq!(t["choices"][0]["finish_reason"], "stop");
    }
}

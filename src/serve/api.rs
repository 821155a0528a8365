//! The OpenAI request bodies this server reads, and their checks.
//!
//! Only the fields that change the answer are read; others (`user`, `logit_bias`,
//! `presence_penalty`, …) are ignored, as the issue asks. Sampling extensions are named as
//! llama-server names them: `top_k`, `min_p`, `repetition_penalty`. Absent sampling fields
//! take the model card's values (temperature 0.3, min-p 0.15, repetition penalty 1.05), as
//! `lfm run` does.

use super::error::ApiError;
use crate::sampling::SamplingParams;
use serde::Deserialize;
use serde_json::Value as Json;

/// Most stop strings per request.
pub const MAX_STOPS: usize = 16;

/// `stop`: one string or a list.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The fields chat and text completions share.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct GenFields {
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<StopField>,
    pub n: Option<i64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(flatten)]
    pub gen: GenFields,
    pub messages: Vec<MessageIn>,
    pub tools: Option<Vec<Json>>,
    pub tool_choice: Option<Json>,
    /// `"none"` keeps `<think>…</think>` in `content` (llama-server's switch); otherwise it
    /// goes to `reasoning_content`.
    pub reasoning_format: Option<String>,
    /// `{"type": "text" | "json_object"}` or `{"type": "json_schema", "json_schema":
    /// {"name", "schema", "strict"}}`: the answer is constrained to it.
    pub response_format: Option<Json>,
    /// `false`: a tool-call answer holds one call (default: several may).
    pub parallel_tool_calls: Option<bool>,
}

/// One message as a client sends it.
#[derive(Clone, Debug, Deserialize)]
pub struct MessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Option<Json>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallIn>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ToolCallIn {
    pub function: FunctionIn,
}

#[derive(Clone, Debug, Deserialize)]
pub struct FunctionIn {
    pub name: String,
    /// A JSON object as a string (OpenAI), or the object itself (lenient).
    #[serde(default)]
    pub arguments: Option<Json>,
}

/// `POST /v1/completions`: `prompt` is a string, a list of one string, a list of ids or a
/// list of one list of ids.
#[derive(Clone, Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(flatten)]
    pub gen: GenFields,
    pub prompt: Json,
}

/// Parses a request body; malformed JSON or a field of the wrong type is a 400 saying where.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

impl GenFields {
    /// `n` must be 1 (one choice per request).
    pub fn check_n(&self) -> Result<(), ApiError> {
        match self.n {
            None | Some(1) => Ok(()),
            Some(n) => Err(ApiError::field(
                "n",
                format!("n = {n} is not supported: this server returns exactly one choice (n = 1)"),
            )),
        }
    }

    /// `max_completion_tokens`, else `max_tokens`; None when neither is given.
    pub fn max_tokens(&self) -> Result<Option<usize>, ApiError> {
        let (name, v) = match (self.max_completion_tokens, self.max_tokens) {
            (Some(v), _) => ("max_completion_tokens", v),
            (None, Some(v)) => ("max_tokens", v),
            (None, None) => return Ok(None),
        };
        match usize::try_from(v) {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(ApiError::field(name, format!("{name} must be at least 1, not {v}"))),
        }
    }

    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The stop strings, checked: none empty, at most [`MAX_STOPS`].
    pub fn stops(&self) -> Result<Vec<String>, ApiError> {
        let list = match &self.stop {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s.clone()],
            Some(StopField::Many(v)) => v.clone(),
        };
        if list.len() > MAX_STOPS {
            return Err(ApiError::field("stop", format!("at most {MAX_STOPS} stop strings")));
        }
        if list.iter().any(String::is_empty) {
            return Err(ApiError::field("stop", "a stop string must not be empty"));
        }
        Ok(list)
    }

    /// The sampling settings, each field range-checked with its name in the error. Without
    /// a seed, one is taken from the clock.
    pub fn sampling(&self) -> Result<SamplingParams, ApiError> {
        let card = SamplingParams::model_card(0);
        let t = self.temperature.unwrap_or(card.temperature);
        check(
            "temperature",
            t,
            t.is_finite() && (0.0..=100.0).contains(&t),
            "0 (greedy) to 100",
        )?;
        let top_p = self.top_p.unwrap_or(1.0);
        check("top_p", top_p, top_p > 0.0 && top_p <= 1.0, "above 0, at most 1")?;
        let min_p = self.min_p.unwrap_or(card.min_p);
        check("min_p", min_p, (0.0..1.0).contains(&min_p), "at least 0, below 1")?;
        let rp = self.repetition_penalty.unwrap_or(card.repetition_penalty);
        check(
            "repetition_penalty",
            rp,
            rp > 0.0 && rp <= 100.0,
            "above 0, at most 100",
        )?;
        let top_k = match self.top_k.unwrap_or(0) {
            k if k <= 0 => 0,
            k if k > 1 << 24 => return Err(ApiError::field("top_k", "top_k must be at most 16777216")),
            k => k as usize,
        };
        let seed = match self.seed {
            Some(s) => s as u64,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        };
        let p = SamplingParams {
            temperature: t,
            top_k,
            top_p,
            min_p,
            repetition_penalty: rp,
            seed,
        };
        p.validate().map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok(p)
    }
}

fn check(name: &str, v: f32, ok: bool, range: &str) -> Result<(), ApiError> {
    match ok {
        true => Ok(()),
        false => Err(ApiError::field(name, format!("{name} = {v} is out of range ({range})"))),
    }
}

impl ChatRequest {
    /// The format `response_format` asks for, if any. A schema is always enforced (as with
    /// `strict: true`): the engine constrains decoding, so there is no weaker mode.
    pub fn format(&self) -> Result<Option<crate::constrain::Format>, ApiError> {
        use crate::constrain::Format;
        let Some(rf) = self.response_format.as_ref().filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let bad = |msg: &str| ApiError::field("response_format", msg.to_string());
        match rf.get("type").and_then(Json::as_str) {
            Some("text") => Ok(None),
            Some("json_object") => Ok(Some(Format::JsonObject)),
            Some("json_schema") => {
                let spec = rf
                    .get("json_schema")
                    .ok_or_else(|| bad("response_format json_schema needs a json_schema object"))?;
                match spec.get("schema") {
                    Some(schema @ Json::Object(_)) => Ok(Some(Format::JsonSchema(schema.clone()))),
                    // OpenAI: an absent schema allows any JSON.
                    None => Ok(Some(Format::JsonSchema(serde_json::json!({})))),
                    Some(_) => Err(bad("response_format.json_schema.schema must be an object")),
                }
            }
            _ => Err(bad(
                "response_format.type must be \"text\", \"json_object\" or \"json_schema\"",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_and_defaults_are_the_model_card() {
        let r: ChatRequest = parse(
            br#"{"model": "m", "messages": [{"role": "user", "content": "hi", "name": "x"}],
                 "user": "u", "logit_bias": {"1": 2}, "presence_penalty": 0.5}"#,
        )
        .unwrap();
        let p = r.gen.sampling().unwrap();
        assert_eq!((p.temperature, p.min_p, p.repetition_penalty), (0.3, 0.15, 1.05));
        assert_eq!(r.gen.max_tokens().unwrap(), None);
        assert!(!r.gen.stream());
    }

    #[test]
    fn field_checks_name_the_field() {
        let bad = |body: &str, param: &str| {
            let r: ChatRequest = parse(body.as_bytes()).unwrap();
            let e = r
                .gen
                .check_n()
                .and(r.gen.max_tokens().map(|_| ()))
                .and(r.gen.sampling().map(|_| ()))
                .and(r.gen.stops().map(|_| ()))
                .unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e:?}");
            assert_eq!(e.status.as_u16(), 400);
        };
        bad(r#"{"messages": [], "n": 2}"#, "n");
        bad(r#"{"messages": [], "max_tokens": 0}"#, "max_tokens");
        bad(
            r#"{"messages": [], "max_completion_tokens": -3}"#,
            "max_completion_tokens",
        );
        bad(r#"{"messages": [], "temperature": -1}"#, "temperature");
        bad(r#"{"messages": [], "top_p": 0}"#, "top_p");
        bad(r#"{"messages": [], "min_p": 1}"#, "min_p");
        bad(r#"{"messages": [], "repetition_penalty": 0}"#, "repetition_penalty");
        bad(r#"{"messages": [], "stop": ["a", ""]}"#, "stop");
    }

    #[test]
    fn stop_string_or_list_and_max_completion_tokens_first() {
        let r: ChatRequest =
            parse(br#"{"messages": [], "stop": "x", "max_tokens": 5, "max_completion_tokens": 7}"#).unwrap();
        assert_eq!(r.gen.stops().unwrap(), ["x"]);
        assert_eq!(r.gen.max_tokens().unwrap(), Some(7));
        let r: ChatRequest = parse(br#"{"messages": [], "stop": ["a", "b"], "seed": 5, "top_k": 3, "n": 1}"#).unwrap();
        assert_eq!(r.gen.stops().unwrap(), ["a", "b"]);
        let p = r.gen.sampling().unwrap();
        assert_eq!((p.seed, p.top_k), (5, 3));
        r.gen.check_n().unwrap();
    }

    #[test]
    fn malformed_bodies_are_400() {
        for body in [
            &b"{"[..],
            b"[]",
            br#"{"messages": "hi"}"#,
            br#"{"messages": [], "temperature": "hot"}"#,
        ] {
            let e = parse::<ChatRequest>(body).unwrap_err();
            assert_eq!(e.status.as_u16(), 400);
            assert!(e.message.starts_with("invalid request body"), "{e:?}");
        }
    }
}

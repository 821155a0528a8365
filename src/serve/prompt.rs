//! Requests to prompt tokens: chat messages rendered through the model's own chat template,
//! text completions tokenized as `lfm run --raw` does (BOS + text).
//!
//! The LFM2 template reads only `role` and `content`, and LFM2 saw its own tool calls as text
//! in the assistant turn, so an assistant message's `tool_calls` are written back the way the
//! model writes them: `<|tool_call_start|>[name(arg=value, …)]<|tool_call_end|>`, values as
//! Python literals. `tool_choice` `"none"` leaves the tools out. Otherwise the answer is
//! constrained by a grammar built from the tools' schemas ([`ChatPrompt::calls`]): `"auto"`
//! allows text and calls, `"required"` and a named function force a call. Without structured
//! output (a tokenizer llguidance cannot read), `"required"` and a named function instead
//! start the answer with `<|tool_call_start|>[` (and the name) in the prompt, so the model can
//! only continue a call; that forced start is part of the answer the client gets.

use super::api::{ChatRequest, MessageIn};
use super::error::ApiError;
use super::toolcall::{TOOL_CALL_END, TOOL_CALL_START};
use crate::chat::{ChatTemplate, Message, Role};
use crate::constrain::ToolChoice;
use crate::tokenizer::Tokenizer;
use serde_json::Value as Json;

/// A chat request made ready for the engine.
#[derive(Debug)]
pub struct ChatPrompt {
    pub ids: Vec<u32>,
    /// Parse tool-call spans in the answer (tools were offered).
    pub tools: bool,
    /// Text the prompt already starts the answer with (a forced tool call, without a grammar).
    pub forced: String,
    /// The tools the answer's calls are constrained to, and the choice (with a grammar).
    pub calls: Option<(Vec<Json>, ToolChoice)>,
}

/// Renders and tokenizes the conversation of `req`. `grammar`: tool calls will be constrained
/// by a grammar (else a forced call is started in the prompt).
pub fn chat(
    req: &ChatRequest,
    template: &ChatTemplate,
    tok: &Tokenizer,
    grammar: bool,
) -> Result<ChatPrompt, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::field("messages", "messages must not be empty"));
    }
    let messages = req
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let (tools, choice) = tool_choice(req)?;
    let forced = match (&choice, grammar) {
        (Some(ToolChoice::Required), false) => format!("{TOOL_CALL_START}["),
        (Some(ToolChoice::Function(name)), false) => format!("{TOOL_CALL_START}[{name}("),
        _ => String::new(),
    };
    let mut text = template
        .render(&messages, tools.as_deref(), true)
        .map_err(|e| ApiError::field("messages", e.to_string()))?;
    text.push_str(&forced);
    let ids = tok
        .encode(&text, false)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ChatPrompt {
        ids,
        tools: tools.is_some(),
        forced,
        calls: tools.zip(choice).filter(|_| grammar),
    })
}

/// The tools the template sees and what the answer may call, from `tools` and `tool_choice`
/// (no choice without tools).
fn tool_choice(req: &ChatRequest) -> Result<(Option<Vec<Json>>, Option<ToolChoice>), ApiError> {
    let tools = req.tools.clone().filter(|t| !t.is_empty());
    let name_of = |t: &Json| {
        t.get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| t.get("name"))
            .and_then(Json::as_str)
            .map(str::to_owned)
    };
    let auto = |tools: Option<Vec<Json>>| {
        let choice = tools.as_ref().map(|_| ToolChoice::Auto);
        (tools, choice)
    };
    let choice = req.tool_choice.as_ref().unwrap_or(&Json::Null);
    match (choice, tools) {
        (Json::Null, tools) => Ok(auto(tools)),
        (Json::String(s), tools) if s == "auto" => Ok(auto(tools)),
        (Json::String(s), _) if s == "none" => Ok((None, None)),
        (Json::String(s), Some(tools)) if s == "required" => Ok((Some(tools), Some(ToolChoice::Required))),
        (Json::Object(o), Some(tools)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Json::as_str)
                .ok_or_else(|| ApiError::field("tool_choice", "tool_choice needs function.name"))?;
            let chosen: Vec<Json> = tools
                .into_iter()
                .filter(|t| name_of(t).as_deref() == Some(name))
                .collect();
            if chosen.is_empty() {
                return Err(ApiError::field(
                    "tool_choice",
                    format!("no tool named {name:?} in tools"),
                ));
            }
            Ok((Some(chosen), Some(ToolChoice::Function(name.to_owned()))))
        }
        (Json::String(s), None) if s == "required" => {
            Err(ApiError::field("tool_choice", "tool_choice \"required\" needs tools"))
        }
        (Json::Object(_), None) => Err(ApiError::field("tool_choice", "a named tool_choice needs tools")),
        (other, _) => Err(ApiError::field(
            "tool_choice",
            format!("tool_choice must be \"auto\", \"none\", \"required\" or a function, not {other}"),
        )),
    }
}

/// One message for the template.
fn message(i: usize, m: &MessageIn) -> Result<Message, ApiError> {
    let role = match m.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(ApiError::field(
                &format!("messages[{i}].role"),
                format!("unknown role {other:?} (system, user, assistant or tool)"),
            ))
        }
    };
    let mut content = match &m.content {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s.clone(),
        Some(Json::Array(parts)) => text_parts(i, parts)?,
        Some(_) => {
            return Err(ApiError::field(
                &format!("messages[{i}].content"),
                "content must be a string or a list of text parts",
            ))
        }
    };
    if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
        if role != Role::Assistant {
            return Err(ApiError::field(
                &format!("messages[{i}].tool_calls"),
                "only assistant messages carry tool_calls",
            ));
        }
        let written = calls
            .iter()
            .enumerate()
            .map(|(j, c)| {
                pythonic_call(&c.function.name, c.function.arguments.as_ref())
                    .map_err(|msg| ApiError::field(&format!("messages[{i}].tool_calls[{j}].function.arguments"), msg))
            })
            .collect::<Result<Vec<_>, _>>()?;
        content.push_str(&format!("{TOOL_CALL_START}[{}]{TOOL_CALL_END}", written.join(", ")));
    }
    Ok(Message::new(role, content))
}

/// The text of `[{"type": "text", "text": …}, …]`.
fn text_parts(i: usize, parts: &[Json]) -> Result<String, ApiError> {
    let mut s = String::new();
    for (j, p) in parts.iter().enumerate() {
        match (
            p.get("type").and_then(Json::as_str),
            p.get("text").and_then(Json::as_str),
        ) {
            (Some("text"), Some(t)) => s.push_str(t),
            (kind, _) => {
                return Err(ApiError::field(
                    &format!("messages[{i}].content[{j}]"),
                    format!(
                        "only text content parts are supported, not {}",
                        kind.unwrap_or("this part")
                    ),
                ))
            }
        }
    }
    Ok(s)
}

/// `name(key=value, …)` from JSON arguments (a string holding an object, or the object).
pub fn pythonic_call(name: &str, arguments: Option<&Json>) -> Result<String, String> {
    let parsed;
    let args = match arguments {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if s.trim().is_empty() => None,
        Some(Json::String(s)) => {
            parsed = serde_json::from_str::<Json>(s).map_err(|e| format!("arguments are not JSON: {e}"))?;
            Some(&parsed)
        }
        Some(other) => Some(other),
    };
    let pairs = match args {
        None => Vec::new(),
        Some(Json::Object(o)) => o.iter().map(|(k, v)| format!("{k}={}", python_literal(v))).collect(),
        Some(_) => return Err("arguments must be a JSON object".into()),
    };
    Ok(format!("{name}({})", pairs.join(", ")))
}

/// A JSON value as a Python literal (strings in double quotes with JSON's escapes, which
/// Python reads the same way).
pub fn python_literal(v: &Json) -> String {
    match v {
        Json::Null => "None".into(),
        Json::Bool(true) => "True".into(),
        Json::Bool(false) => "False".into(),
        Json::Number(n) => n.to_string(),
        Json::String(_) => v.to_string(),
        Json::Array(a) => format!("[{}]", a.iter().map(python_literal).collect::<Vec<_>>().join(", ")),
        Json::Object(o) => {
            let items: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{}: {}", Json::String(k.clone()), python_literal(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// The ids of a text-completion prompt: a string (BOS added as the tokenizer does), or ids.
pub fn completion(prompt: &Json, tok: &Tokenizer, vocab: usize) -> Result<Vec<u32>, ApiError> {
    let one = match prompt {
        Json::Array(a) if a.len() == 1 && (a[0].is_string() || a[0].is_array()) => &a[0],
        Json::Array(a) if a.len() > 1 && a.iter().all(|x| x.is_string() || x.is_array()) => {
            return Err(ApiError::field("prompt", "only one prompt per request is supported"));
        }
        other => other,
    };
    let ids = match one {
        Json::String(s) => tok.encode(s, true).map_err(|e| ApiError::internal(e.to_string()))?,
        Json::Array(a) => a
            .iter()
            .map(|x| x.as_u64().filter(|&t| (t as usize) < vocab).map(|t| t as u32))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| ApiError::field("prompt", format!("token ids must be integers below {vocab}")))?,
        _ => {
            return Err(ApiError::field(
                "prompt",
                "prompt must be a string or a list of token ids",
            ))
        }
    };
    if ids.is_empty() {
        return Err(ApiError::field("prompt", "the prompt is empty"));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::super::api::parse;
    use super::super::toolcall::parse_calls;
    use super::*;

    #[test]
    fn tool_calls_are_written_as_the_model_writes_them_and_read_back() {
        let args = r#"{"city": "Paris \"centre\"", "days": 3, "ok": true, "x": null, "l": [1.5, {"k": "é"}]}"#;
        let call = pythonic_call("get_weather", Some(&Json::String(args.into()))).unwrap();
        assert_eq!(
            call,
            r#"get_weather(city="Paris \"centre\"", days=3, ok=True, x=None, l=[1.5, {"k": "é"}])"#
        );
        let back = parse_calls(&format!("[{call}]")).unwrap();
        let a: Json = serde_json::from_str(&back[0].arguments).unwrap();
        assert_eq!(a, serde_json::from_str::<Json>(args).unwrap());
        assert_eq!(
            pythonic_call("now", Some(&Json::String(String::new()))).unwrap(),
            "now()"
        );
        assert!(pythonic_call("f", Some(&Json::String("[1]".into()))).is_err());
    }

    #[test]
    fn messages_and_tool_choice() {
        let tok =
            Tokenizer::from_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_b")).unwrap();
        let t = ChatTemplate::builtin();
        let req: ChatRequest = parse(
            br#"{"messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "in Paris?"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "22 C"}],
              "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}},
                        {"type": "function", "function": {"name": "other", "parameters": {}}}],
              "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}"#,
        )
        .unwrap();
        let p = chat(&req, &t, &tok, false).unwrap();
        let text = tok.decode(&p.ids, false);
        assert!(text.contains("<|im_start|>user\nWeather in Paris?<|im_end|>"), "{text}");
        assert!(
            text.contains(
                "<|im_start|>assistant\n<|tool_call_start|>[get_weather(city=\"Paris\")]<|tool_call_end|><|im_end|>"
            ),
            "{text}"
        );
        assert!(
            text.contains("<|tool_response_start|>22 C<|tool_response_end|>"),
            "{text}"
        );
        assert!(!text.contains("\"other\""), "only the chosen tool is listed: {text}");
        assert!(
            text.ends_with("<|im_start|>assistant\n<|tool_call_start|>[get_weather("),
            "{text}"
        );
        assert!(p.tools && p.calls.is_none());
        assert_eq!(p.forced, "<|tool_call_start|>[get_weather(");
        // With a grammar the call is left to it: the prompt ends with the generation prompt.
        let g = chat(&req, &t, &tok, true).unwrap();
        assert!(g.forced.is_empty());
        assert!(tok.decode(&g.ids, false).ends_with("<|im_start|>assistant\n"));
        let (tools, choice) = g.calls.expect("calls constrained");
        assert_eq!(tools.len(), 1, "only the chosen tool");
        assert_eq!(choice, ToolChoice::Function("get_weather".into()));

        let mut none = req.clone();
        none.tool_choice = Some(Json::String("none".into()));
        let p = chat(&none, &t, &tok, true).unwrap();
        assert!(!p.tools && p.forced.is_empty() && p.calls.is_none());
        assert!(!tok.decode(&p.ids, false).contains("List of tools"));

        for (choice, tools) in [
            (r#""required""#, false),
            (r#""sometimes""#, true),
            (r#"{"function": {"name": "nope"}}"#, true),
        ] {
            let mut r = req.clone();
            r.tool_choice = Some(serde_json::from_str(choice).unwrap());
            if !tools {
                r.tools = None;
            }
            assert_eq!(
                chat(&r, &t, &tok, true).unwrap_err().param.as_deref(),
                Some("tool_choice"),
                "{choice}"
            );
        }
        let mut r = req.clone();
        r.messages[0].role = "robot".into();
        assert_eq!(
            chat(&r, &t, &tok, true).unwrap_err().param.as_deref(),
            Some("messages[0].role")
        );
    }

    #[test]
    fn completion_prompts() {
        let tok =
            Tokenizer::from_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_b")).unwrap();
        let ids = completion(&Json::String("hello".into()), &tok, 384).unwrap();
        assert_eq!(ids, tok.encode("hello", true).unwrap());
        assert_eq!(completion(&serde_json::json!(["hello"]), &tok, 384).unwrap(), ids);
        assert_eq!(completion(&serde_json::json!([1, 2, 3]), &tok, 384).unwrap(), [1, 2, 3]);
        assert_eq!(completion(&serde_json::json!([[5]]), &tok, 384).unwrap(), [5]);
        for bad in [
            serde_json::json!(["a", "b"]),
            serde_json::json!([1, 999]),
            serde_json::json!(3),
            serde_json::json!([]),
        ] {
            assert_eq!(
                completion(&bad, &tok, 384).unwrap_err().param.as_deref(),
                Some("prompt"),
                "{bad}"
            );
        }
    }
}

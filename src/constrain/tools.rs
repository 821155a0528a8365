//! Tool calls as a grammar: LFM2's call list, built from the tools' JSON Schemas, so that a
//! call the model starts is well formed and its arguments valid.
//!
//! LFM2 writes `<|tool_call_start|>[name(key=value, …), …]<|tool_call_end|>`. Here a function
//! name and its keys are fixed strings, and each value is a JSON value valid against its
//! property's schema (`%json`; `true` / `false` / `null` are read by the tool-call parser as
//! Python's literals are). Keys come in a fixed order: the required ones as declared, then the
//! optional ones as declared, each of them optional. Calls and arguments are separated by
//! `", "`.
//!
//! [`ToolChoice`] says what may be written:
//! - `Required`: one call list (one call when calls may not run in parallel), then the end;
//! - `Function(name)`: one call of that function, then the end;
//! - `Auto`: free text with call lists anywhere in it (or, when the answer has a format of
//!   its own, that answer or a call list).
//!
//! A tool's `parameters` must be an object schema (or absent: no arguments). A schema with no
//! `properties` that allows other keys accepts any keyword arguments with JSON values.
//! Keywords that cannot be written as keyword arguments (`anyOf` at the top, say) are errors
//! naming the tool.

use super::{guided_schema, Format};
use crate::error::{Error, Result};
use crate::tokenizer::{TOOL_CALL_END, TOOL_CALL_START};
use serde_json::{json, Map, Value};
use std::fmt::Write;

/// Which tool calls the answer must (or may) hold (OpenAI's `tool_choice`, less `none`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// Text, tool calls, or both.
    Auto,
    /// At least one call, and nothing else.
    Required,
    /// One call of this function, and nothing else.
    Function(String),
}

/// Top-level keywords of a tool's `parameters` that keyword arguments can honour.
const OBJECT_KEYS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "description",
    "title",
    "$defs",
    "definitions",
    "$schema",
    "$id",
    "strict",
];

/// One tool as the grammar needs it.
struct Tool {
    /// `tools[i].function`, for errors.
    origin: String,
    name: String,
    /// (key, value schema) in grammar order: required first.
    args: Vec<(String, Value)>,
    required: usize,
    /// Any keyword arguments (no `properties`, other keys allowed).
    open: bool,
}

/// Each argument's value schema as the grammar uses it (with the parameters' definitions),
/// named `tools[i].function.parameters.properties.KEY`: what to compile alone to find the one
/// llguidance refuses when the whole grammar does not compile.
pub fn argument_schemas(tools: &[Value]) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let t = tool(i, t)?;
        for (k, schema) in t.args {
            out.push((format!("{}.parameters.properties.{k}", t.origin), schema));
        }
    }
    Ok(out)
}

/// The grammar of `choice` over `tools` (OpenAI tool objects, `{"type": "function",
/// "function": {"name", "parameters"}}`, or the bare function objects). `parallel`: a call
/// list may hold several calls. `answer`: in `Auto`, the format a text answer must have.
pub fn tool_call_format(
    tools: &[Value],
    choice: &ToolChoice,
    parallel: bool,
    answer: Option<&Format>,
) -> Result<Format> {
    let all = tools
        .iter()
        .enumerate()
        .map(|(i, t)| tool(i, t))
        .collect::<Result<Vec<_>>>()?;
    let chosen: Vec<&Tool> = match choice {
        ToolChoice::Function(name) => all.iter().filter(|t| &t.name == name).collect(),
        _ => all.iter().collect(),
    };
    if chosen.is_empty() {
        let msg = match choice {
            ToolChoice::Function(name) => format!("no tool named {name:?}"),
            _ => "no tools to call".to_string(),
        };
        return Err(bad("tools", msg));
    }
    let mut g = String::new();
    let several = parallel && !matches!(choice, ToolChoice::Function(_));
    let list = if several { "call (\", \" call)*" } else { "call" };
    let _ = writeln!(g, "block: {TOOL_CALL_START} \"[\" {list} \"]\" {TOOL_CALL_END}");
    let alternatives: Vec<String> = (0..chosen.len()).map(|i| format!("t{i}")).collect();
    let _ = writeln!(g, "call: {}", alternatives.join(" | "));
    for (i, t) in chosen.iter().enumerate() {
        write_tool(&mut g, i, t);
    }
    if chosen.iter().any(|t| t.open) {
        let _ = writeln!(g, "KEY: /[A-Za-z_][A-Za-z0-9_]*/");
    }
    let start = match (choice, answer) {
        (ToolChoice::Auto, None) => "start: TEXT? (block TEXT?)*\nTEXT: /(?s:.+)/\n".to_string(),
        (ToolChoice::Auto, Some(f)) => format!("start: answer | block\nanswer: {}\n", fragment(f)),
        _ => "start: block\n".to_string(),
    };
    Ok(Format::Lark(start + &g))
}

fn bad(origin: &str, msg: impl Into<String>) -> Error {
    Error::Constraint {
        origin: origin.to_owned(),
        msg: msg.into(),
    }
}

/// A name the tool-call parser reads back: a letter or `_`, then letters, digits, `_` or `-`
/// (dotted parts for a function).
fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_alphabetic() || c == '_') && c.all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

fn tool(i: usize, t: &Value) -> Result<Tool> {
    let (f, origin) = match t.get("function") {
        Some(f) => (f, format!("tools[{i}].function")),
        None => (t, format!("tools[{i}]")),
    };
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&origin, "a tool needs a \"name\" string"))?;
    if !name.split('.').all(is_ident) {
        return Err(bad(
            &format!("{origin}.name"),
            format!("{name:?} cannot be written as an LFM2 call (letters, digits, '_', '-', dots)"),
        ));
    }
    let at = format!("{origin}.parameters");
    let empty = Map::new();
    let params = match f.get("parameters") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return Err(bad(&at, "parameters must be a JSON Schema object")),
    };
    if let Some(k) = params.keys().find(|k| !OBJECT_KEYS.contains(&k.as_str())) {
        return Err(bad(&at, format!("{k:?} cannot be written as keyword arguments")));
    }
    if params.get("type").is_some_and(|t| t != "object") {
        return Err(bad(&at, "the parameters' type must be \"object\""));
    }
    let props = match params.get("properties") {
        None => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return Err(bad(&at, "properties must be an object")),
    };
    let required: Vec<&str> = match params.get("required") {
        None => Vec::new(),
        Some(Value::Array(r)) => r
            .iter()
            .map(|k| k.as_str().ok_or_else(|| bad(&at, "required must list property names")))
            .collect::<Result<_>>()?,
        Some(_) => return Err(bad(&at, "required must be an array")),
    };
    if let Some(k) = required.iter().find(|k| !props.contains_key(**k)) {
        return Err(bad(&at, format!("required key {k:?} is not among the properties")));
    }
    if let Some(k) = props.keys().find(|k| !is_ident(k)) {
        return Err(bad(
            &format!("{at}.properties"),
            format!("{k:?} cannot be written as a keyword argument"),
        ));
    }
    // A value's schema sees the definitions its references may point to.
    let defs: Map<String, Value> = ["$defs", "definitions"]
        .iter()
        .filter_map(|k| params.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    let value_schema = |s: &Value| match s {
        Value::Object(o) => {
            let mut o = o.clone();
            for (k, v) in &defs {
                o.entry(k.clone()).or_insert_with(|| v.clone());
            }
            Value::Object(o)
        }
        other => other.clone(),
    };
    let mut args: Vec<(String, Value)> = Vec::with_capacity(props.len());
    for (k, s) in props.iter().filter(|(k, _)| required.contains(&k.as_str())) {
        args.push((k.clone(), value_schema(s)));
    }
    for (k, s) in props.iter().filter(|(k, _)| !required.contains(&k.as_str())) {
        args.push((k.clone(), value_schema(s)));
    }
    Ok(Tool {
        origin,
        name: name.to_owned(),
        required: required.len(),
        // Absent parameters: no arguments (OpenAI's reading); an object schema without
        // properties that does not close itself: any keyword arguments.
        open: f.get("parameters").is_some_and(Value::is_object)
            && props.is_empty()
            && params.get("additionalProperties") != Some(&Value::Bool(false)),
        args,
    })
}

/// Rules `t{i}` (the call), `t{i}_args`, `a{i}_{j}` (one argument) and `v{i}_{j}` (its value).
fn write_tool(g: &mut String, i: usize, t: &Tool) {
    let _ = writeln!(g, "// {}: {}", t.origin, t.name);
    let open = lit(&format!("{}(", t.name));
    if t.open {
        let _ = writeln!(g, "t{i}: {open} (kw{i} (\", \" kw{i})*)? \")\"");
        let _ = writeln!(g, "kw{i}: KEY \"=\" %json {}", guided_schema(json!({})));
        return;
    }
    if t.args.is_empty() {
        let _ = writeln!(g, "t{i}: {open} \")\"");
        return;
    }
    let _ = writeln!(g, "t{i}: {open} t{i}_args \")\"");
    for (j, (k, schema)) in t.args.iter().enumerate() {
        let _ = writeln!(g, "a{i}_{j}: {} v{i}_{j}", lit(&format!("{k}=")));
        let _ = writeln!(g, "v{i}_{j}: %json {}", guided_schema(schema.clone()));
    }
    // Required keys in order; then each optional key may follow. With none required, the
    // list starts at any optional key (or is empty).
    let n = t.args.len();
    let tail = |from: usize| -> String { (from..n).map(|j| format!(" (\", \" a{i}_{j})?")).collect::<String>() };
    let body = if t.required > 0 {
        let req: Vec<String> = (0..t.required).map(|j| format!("a{i}_{j}")).collect();
        format!("{}{}", req.join(" \", \" "), tail(t.required))
    } else {
        let starts: Vec<String> = (0..n).map(|j| format!("a{i}_{j}{}", tail(j + 1))).collect();
        format!("({})?", starts.join(" | "))
    };
    let _ = writeln!(g, "t{i}_args: {body}");
}

/// A Lark string literal.
fn lit(s: &str) -> String {
    // JSON's string escapes are Lark's.
    Value::String(s.to_owned()).to_string()
}

/// `format` as the body of a Lark rule.
fn fragment(format: &Format) -> String {
    match format {
        Format::JsonObject => format!("%json {}", guided_schema(json!({"type": "object"}))),
        Format::JsonSchema(s) => format!("%json {}", guided_schema(s.clone())),
        Format::Regex(rx) => format!("/{}/", llguidance::regex_to_lark(rx, "")),
        Format::Lark(text) => format!("%lark {{\n{text}\n}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {"unit": {"enum": ["c", "f"]}, "city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"]}}},
            {"type": "function", "function": {"name": "now"}}])
    }

    fn lark(tools: &Value, choice: ToolChoice) -> String {
        match tool_call_format(tools.as_array().unwrap(), &choice, true, None).unwrap() {
            Format::Lark(g) => g,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn required_keys_first_then_each_optional() {
        let g = lark(&weather(), ToolChoice::Required);
        assert!(g.contains("t0_args: a0_0 (\", \" a0_1)? (\", \" a0_2)?"), "{g}");
        assert!(g.contains("a0_0: \"city=\" v0_0"), "{g}");
        assert!(g.contains("t1: \"now(\" \")\""), "{g}");
        assert!(g.starts_with("start: block\n"), "{g}");
        assert!(g.contains("call (\", \" call)*"), "{g}");
    }

    #[test]
    fn a_named_function_is_the_only_call() {
        let g = lark(&weather(), ToolChoice::Function("now".into()));
        assert!(g.contains("call: t0\n") && g.contains("t0: \"now(\" \")\""), "{g}");
        assert!(!g.contains("get_weather"), "{g}");
    }

    #[test]
    fn open_parameters_take_any_keywords() {
        let tools = json!([{"name": "a", "parameters": {"type": "object"}}, {"name": "b", "parameters": {}},
            {"name": "c", "parameters": {"type": "object", "additionalProperties": false}}]);
        let g = lark(&tools, ToolChoice::Auto);
        assert!(g.contains("t0: \"a(\" (kw0 (\", \" kw0)*)? \")\""), "{g}");
        assert!(g.contains("t1: \"b(\" (kw1"), "{g}");
        assert!(g.contains("t2: \"c(\" \")\""), "{g}");
        assert_eq!(g.matches("KEY:").count(), 1, "{g}");
        assert!(g.starts_with("start: TEXT? (block TEXT?)*\n"), "{g}");
    }

    #[test]
    fn bad_tools_name_themselves() {
        let cases = [
            (json!([{"function": {"name": "2fa"}}]), "tools[0].function.name"),
            (
                json!([{"function": {"name": "f", "parameters": {"anyOf": []}}}]),
                "\"anyOf\"",
            ),
            (
                json!([{"function": {"name": "f", "parameters": {"properties": {"a b": {}}}}}]),
                "\"a b\" cannot be written",
            ),
            (
                json!([{"function": {"name": "f", "parameters": {"properties": {}, "required": ["x"]}}}]),
                "required key \"x\"",
            ),
            (json!([{"name": "f", "parameters": 3}]), "tools[0].parameters"),
            (json!([{"function": {}}]), "needs a \"name\""),
        ];
        for (tools, want) in cases {
            let e = tool_call_format(tools.as_array().unwrap(), &ToolChoice::Auto, true, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
        let e = tool_call_format(
            weather().as_array().unwrap(),
            &ToolChoice::Function("nope".into()),
            true,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no tool named \"nope\""), "{e}");
    }
}

//! Chat templates: turning a conversation into the prompt text the model was trained on.
//!
//! Hugging Face models ship a Jinja2 template (`chat_template.jinja`, or `chat_template` in
//! `tokenizer_config.json`); this renders it with `minijinja` set up the way transformers 5.23
//! sets up its sandbox: `trim_blocks` + `lstrip_blocks`, loop controls, `raise_exception`,
//! `strftime_now`, Python string/dict methods (`.strip()`, `.startswith()`, `.items()` … via
//! `minijinja-contrib`'s pycompat), and a `tojson` filter that writes exactly what Python's
//! `json.dumps(x, ensure_ascii=False)` writes (`", "` and `": "` separators, key order kept, no
//! HTML escaping). The variables are those of `apply_chat_template`: `messages`, `tools`,
//! `add_generation_prompt` and the special tokens (`bos_token`, `eos_token`, `pad_token`, …).
//!
//! A model without a template gets the built-in LFM2 ChatML template (docs §13, file
//! `src/chat/lfm2.jinja`), with a warning.

use crate::error::{Error, Result};
use crate::tokenizer::{read_optional_json, special_token, Tokenizer};
use minijinja::value::{Kwargs, Serde, Value};
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::path::Path;

/// The LFM2 template (docs §13): BOS, an optional system turn carrying the tool list, ChatML turns,
/// tool results wrapped in `<|tool_response_start|>…<|tool_response_end|>`.
pub const LFM2_TEMPLATE: &str = include_str!("chat/lfm2.jinja");

/// Who speaks in a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// The result of a tool call, sent back to the model.
    Tool,
}

/// One message of a conversation. `content` is usually a string; other JSON values are passed
/// to the template as they are (the LFM2 template serialises them with `tojson`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Json,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: Json::String(content.into()),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    pub fn tool(content: impl Into<String>) -> Self {
        Self::new(Role::Tool, content)
    }
    /// A message whose content is any JSON value (e.g. a tool result object).
    pub fn json(role: Role, content: Json) -> Self {
        Message { role, content }
    }
}

/// The special-token variables a template sees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub unk_token: Option<String>,
}

impl SpecialTokens {
    /// LFM2's: `<|startoftext|>`, `<|im_end|>`, `<|pad|>`.
    pub fn lfm2() -> Self {
        SpecialTokens {
            bos_token: Some("<|startoftext|>".into()),
            eos_token: Some("<|im_end|>".into()),
            pad_token: Some("<|pad|>".into()),
            unk_token: None,
        }
    }

    fn from_config(config: &Json) -> Self {
        SpecialTokens {
            bos_token: special_token(config, "bos_token"),
            eos_token: special_token(config, "eos_token"),
            pad_token: special_token(config, "pad_token"),
            unk_token: special_token(config, "unk_token"),
        }
    }
}

/// A compiled chat template with the special tokens it is rendered with.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Where the template came from (a file path, or "built-in LFM2 template"), named in errors.
    origin: String,
    /// A separate template used when tools are given (`tool_use` in a named template list).
    has_tool_use: bool,
    special: SpecialTokens,
}

/// Most template instructions one render may run: templates come with the model, and a
/// runaway loop must end in an error, not a hang (a 2000-message conversation through the
/// LFM2 template stays well within it, see the tests).
pub const TEMPLATE_FUEL: u64 = 10_000_000;

const DEFAULT: &str = "default";
const TOOL_USE: &str = "tool_use";
/// The origin of the built-in template (what `origin()` says when no file had one).
const BUILTIN: &str = "built-in LFM2 template";

impl ChatTemplate {
    /// Finds the template of a model directory the way transformers does: `chat_template.jinja`
    /// first, else `chat_template` of `tokenizer_config.json` (a string, or a list of
    /// `{name, template}` of which `default` and `tool_use` are used), else the built-in LFM2
    /// template with a warning. Special tokens come from `tokenizer_config.json` (LFM2's when the
    /// file is missing).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let config_path = dir.join("tokenizer_config.json");
        let config = read_optional_json(&config_path)?;
        let jinja_path = dir.join("chat_template.jinja");
        let jinja = match std::fs::read_to_string(&jinja_path) {
            Ok(source) => Some((source, jinja_path.display().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(jinja_path, e)),
        };
        let template = Self::from_files(
            jinja.as_ref().map(|(s, origin)| (s.as_str(), origin.as_str())),
            config.as_ref(),
            &config_path.display().to_string(),
        )?;
        if template.origin == BUILTIN {
            log::warn!(
                "{} has no chat template (no chat_template.jinja, no chat_template in \
                 tokenizer_config.json): using the built-in LFM2 template",
                dir.display()
            );
        }
        Ok(template)
    }

    /// As [`Self::from_dir`], from the files' contents (a page has no directory): `jinja` is a
    /// `chat_template.jinja` with its name, `config` the `tokenizer_config.json` named
    /// `config_origin` in errors.
    pub fn from_files(jinja: Option<(&str, &str)>, config: Option<&Json>, config_origin: &str) -> Result<Self> {
        let special = config
            .map(SpecialTokens::from_config)
            .unwrap_or_else(SpecialTokens::lfm2);
        if let Some((source, origin)) = jinja {
            return Self::new(source, None, origin, special);
        }
        let origin = config_origin.to_string();
        match config.and_then(|c| c.get("chat_template")) {
            Some(Json::String(source)) => Self::new(source, None, &origin, special),
            Some(Json::Array(list)) => {
                let named = |name: &str| {
                    list.iter().find_map(|t| {
                        (t.get("name")?.as_str()? == name)
                            .then(|| t.get("template")?.as_str())
                            .flatten()
                    })
                };
                let default = named(DEFAULT).ok_or_else(|| Error::Template {
                    origin: origin.clone(),
                    msg: "the chat_template list has no template named \"default\"".into(),
                })?;
                Self::new(default, named(TOOL_USE), &origin, special)
            }
            Some(_) => Err(Error::Template {
                origin,
                msg: "chat_template is neither a string nor a list of {name, template}".into(),
            }),
            None => Ok(Self::builtin_with(special)),
        }
    }

    /// The built-in LFM2 template with LFM2's special tokens.
    pub fn builtin() -> Self {
        Self::builtin_with(SpecialTokens::lfm2())
    }

    fn builtin_with(special: SpecialTokens) -> Self {
        Self::new(LFM2_TEMPLATE, None, BUILTIN, special).expect("the built-in template compiles")
    }

    /// Compiles `source` (and an optional separate template for tool use). `origin` names the
    /// template in errors.
    pub fn new(source: &str, tool_use: Option<&str>, origin: &str, special: SpecialTokens) -> Result<Self> {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("default delimiters are valid"),
        );
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        let compile_err = |e: minijinja::Error| Error::Template {
            origin: origin.to_string(),
            msg: describe(&e),
        };
        env.add_template_owned(DEFAULT, source.to_string())
            .map_err(compile_err)?;
        if let Some(t) = tool_use {
            env.add_template_owned(TOOL_USE, t.to_string()).map_err(compile_err)?;
        }
        Ok(ChatTemplate {
            env,
            origin: origin.to_string(),
            has_tool_use: tool_use.is_some(),
            special,
        })
    }

    /// Renders a conversation as `apply_chat_template(messages, tools=tools,
    /// add_generation_prompt=..., tokenize=False)` does. Tools are JSON schemas
    /// (`{"type": "function", "function": {...}}` or bare `{name, description, parameters}`).
    pub fn render(&self, messages: &[Message], tools: Option<&[Json]>, add_generation_prompt: bool) -> Result<String> {
        // transformers drops message keys whose value is None before rendering.
        let messages: Vec<Json> = messages
            .iter()
            .map(|m| {
                let mut o = serde_json::Map::new();
                o.insert("role".into(), serde_json::to_value(m.role).expect("role"));
                if !m.content.is_null() {
                    o.insert("content".into(), m.content.clone());
                }
                Json::Object(o)
            })
            .collect();
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), Json::Array(messages));
        ctx.insert("tools".into(), tools.map_or(Json::Null, |t| Json::Array(t.to_vec())));
        ctx.insert("add_generation_prompt".into(), Json::Bool(add_generation_prompt));
        let s = &self.special;
        for (k, v) in [
            ("bos_token", &s.bos_token),
            ("eos_token", &s.eos_token),
            ("pad_token", &s.pad_token),
            ("unk_token", &s.unk_token),
        ] {
            if let Some(v) = v {
                ctx.insert(k.into(), Json::String(v.clone()));
            }
        }
        let name = if tools.is_some() && self.has_tool_use {
            TOOL_USE
        } else {
            DEFAULT
        };
        let err = |e: minijinja::Error| Error::Template {
            origin: self.origin.clone(),
            msg: describe(&e),
        };
        let template = self.env.get_template(name).map_err(err)?;
        template.render(Value::from(Serde(&Json::Object(ctx)))).map_err(err)
    }

    /// Renders and tokenizes, as `apply_chat_template(..., tokenize=True)`: the text is encoded
    /// without adding special tokens, so BOS appears once, from the template.
    pub fn apply(
        &self,
        tokenizer: &Tokenizer,
        messages: &[Message],
        tools: Option<&[Json]>,
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let text = self.render(messages, tools, add_generation_prompt)?;
        tokenizer.encode(&text, false)
    }

    /// Where the template came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The special tokens the template is rendered with.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }
}

/// A minijinja error with its line and cause, on one line.
fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    if e.kind() == ErrorKind::OutOfFuel {
        msg.push_str(&format!(
            " (the render ran more than {TEMPLATE_FUEL} template instructions)"
        ));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, keyword arguments accepted.
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<String, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|e| minijinja::Error::new(ErrorKind::BadSerialization, "tojson").with_source(e))?;
    // Python's defaults: (", ", ": "), or (",", ": ") when indenting.
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([i, k]) => (i.clone(), k.clone()),
        Some(_) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let mut out = String::new();
    let py = PyJson {
        indent,
        ensure_ascii: ensure_ascii.unwrap_or(false),
        sort_keys: sort_keys.unwrap_or(false),
        item_sep,
        key_sep,
    };
    py.write(&mut out, &json, 0);
    Ok(out)
}

/// Python `json.dumps` formatting.
struct PyJson {
    indent: Option<usize>,
    ensure_ascii: bool,
    sort_keys: bool,
    item_sep: String,
    key_sep: String,
}

impl PyJson {
    fn write(&self, out: &mut String, v: &Json, depth: usize) {
        match v {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => out.push_str(&i.to_string()),
                (_, Some(u), _) => out.push_str(&u.to_string()),
                (_, _, Some(f)) => out.push_str(&py_float(f)),
                _ => out.push_str(&n.to_string()),
            },
            Json::String(s) => self.string(out, s),
            Json::Array(a) => {
                if a.is_empty() {
                    return out.push_str("[]");
                }
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    self.separate(out, i, depth + 1);
                    self.write(out, x, depth + 1);
                }
                self.close(out, depth);
                out.push(']');
            }
            Json::Object(o) => {
                if o.is_empty() {
                    return out.push_str("{}");
                }
                let mut entries: Vec<_> = o.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, x)) in entries.into_iter().enumerate() {
                    self.separate(out, i, depth + 1);
                    self.string(out, k);
                    out.push_str(&self.key_sep);
                    self.write(out, x, depth + 1);
                }
                self.close(out, depth);
                out.push('}');
            }
        }
    }

    /// Before item `i` of a container at nesting `depth`.
    fn separate(&self, out: &mut String, i: usize, depth: usize) {
        if i > 0 {
            out.push_str(&self.item_sep);
        }
        if let Some(n) = self.indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    }

    fn close(&self, out: &mut String, depth: usize) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    }

    fn string(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{f:e}"); // e.g. "-1.5e-7", "2.5e0", "1e16"
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let s = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}

/// `strftime_now(format)`: the current UTC time, with the common directives
/// (`%Y %m %d %H %M %S %b %B %a %A %j %y %%`); others are copied as written.
fn strftime_now(format: String) -> String {
    let secs = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime(&format, secs)
}

fn strftime(format: &str, unix_secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = unix_secs.div_euclid(86_400);
    let tod = unix_secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_mar = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_mar + 2) / 153;
    let day = doy_mar - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cum[(month - 1) as usize] + day + i64::from(leap && month > 2);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday

    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('H') => out.push_str(&format!("{:02}", tod / 3600)),
            Some('M') => out.push_str(&format!("{:02}", tod / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", tod % 60)),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr() {
        for (f, s) in [
            (2.5, "2.5"),
            (1.0, "1.0"),
            (-0.5, "-0.5"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (123456789.0, "123456789.0"),
            (1.5e300, "1.5e+300"),
            (0.1, "0.1"),
        ] {
            assert_eq!(py_float(f), s, "{f}");
        }
    }

    #[test]
    fn strftime_known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        assert_eq!(
            strftime("%Y-%m-%d %H:%M:%S %a %A %b %B %j %y %%", 1_709_211_909),
            "2024-02-29 13:05:09 Thu Thursday Feb February 060 24 %"
        );
        assert_eq!(strftime("%d %b %Y", 0), "01 Jan 1970");
    }

    #[test]
    fn runaway_template_runs_out_of_fuel() {
        let t = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            None,
            "test",
            SpecialTokens::default(),
        )
        .unwrap();
        let e = t.render(&[], None, false).unwrap_err().to_string();
        assert!(e.contains("fuel"), "{e}");
        let long: Vec<Message> = (0..2000).map(|i| Message::user(format!("message {i}"))).collect();
        ChatTemplate::builtin().render(&long, None, true).unwrap();
    }

    #[test]
    fn tojson_matches_python() {
        let t = ChatTemplate::new(
            "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ s | tojson(ensure_ascii=True) }}",
            None,
            "test",
            SpecialTokens::default(),
        )
        .unwrap();
        let env = &t.env;
        let tpl = env.get_template(DEFAULT).unwrap();
        let x: Json = serde_json::from_str(r#"{"b": [1, 2.5, null], "a": {}, "c": "<&>"}"#).unwrap();
        let out = tpl
            .render(Value::from(Serde(&serde_json::json!({"x": x, "s": "é😀\u{1}"}))))
            .unwrap();
        assert_eq!(
            out,
            "{\"b\": [1, 2.5, null], \"a\": {}, \"c\": \"<&>\"}|{\n  \"b\": [\n    1,\n    2.5,\n    null\n  ],\n  \"a\": {},\n  \"c\": \"<&>\"\n}|\"\\u00e9\\ud83d\\ude00\\u0001\""
        );
    }
}

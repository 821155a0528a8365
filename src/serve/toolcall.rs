//! LFM2 tool calls: the text between `<|tool_call_start|>` and `<|tool_call_end|>` turned
//! into OpenAI `tool_calls` (a function name and its arguments as a JSON object string).
//!
//! LFM2 writes a Pythonic list of calls, `[get_weather(city="Paris", days=3), now()]`, with
//! Python literals: `True` / `False` / `None`, single-, double- or triple-quoted strings with
//! Python's escapes, ints and floats, lists, tuples and dicts nested to any (bounded) depth,
//! and dotted function names (`db.users.find(...)`). It can also write JSON:
//! `{"name": "f", "arguments": {...}}` or a list of such objects. Anything else is an error
//! with its byte offset: the caller then keeps the text as content (never dropped).
//!
//! This is a parser for literals only: nothing is evaluated, and nesting is bounded so that
//! hostile output cannot exhaust the stack.

use serde_json::{Map, Number, Value as Json};

pub use crate::tokenizer::{TOOL_CALL_END, TOOL_CALL_START};

/// Deepest nesting of lists / dicts / calls accepted.
const MAX_DEPTH: usize = 64;

/// One parsed call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// The function name as written (dots kept).
    pub name: String,
    /// The arguments as a JSON object, serialised (key order as written).
    pub arguments: String,
}

/// Why a tool-call body did not parse: what was expected, at which byte.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tool call does not parse at byte {at}: {msg}")]
pub struct ParseError {
    pub at: usize,
    pub msg: String,
}

/// Parses the body of one `<|tool_call_start|>…<|tool_call_end|>` span: a Pythonic list of
/// calls (or a single call without brackets), or JSON call objects.
pub fn parse_calls(body: &str) -> Result<Vec<ToolCall>, ParseError> {
    let trimmed = body.trim();
    if trimmed.starts_with('{') {
        return parse_json_calls(trimmed);
    }
    let python = Py::new(body).calls();
    match python {
        Ok(calls) => Ok(calls),
        // `[{"name": …}]` is a list, but of JSON objects.
        Err(e) if trimmed.starts_with('[') => parse_json_calls(trimmed).map_err(|_| e),
        Err(e) => Err(e),
    }
}

/// JSON-style calls: one object or a list of objects with `name` and `arguments` (or
/// `parameters`), the arguments an object or a string holding one.
fn parse_json_calls(text: &str) -> Result<Vec<ToolCall>, ParseError> {
    let v: Json = serde_json::from_str(text).map_err(|e| ParseError {
        at: 0,
        msg: format!("not JSON either: {e}"),
    })?;
    let items = match v {
        Json::Array(a) => a,
        o @ Json::Object(_) => vec![o],
        _ => return Err(err(0, "a JSON tool call is an object or a list of objects")),
    };
    if items.is_empty() {
        return Err(err(0, "an empty list of calls"));
    }
    items.iter().map(json_call).collect()
}

fn json_call(item: &Json) -> Result<ToolCall, ParseError> {
    let name = item
        .get("name")
        .and_then(Json::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| err(0, "a JSON tool call needs a \"name\" string"))?;
    let args = item.get("arguments").or_else(|| item.get("parameters"));
    let arguments = match args {
        None | Some(Json::Null) => "{}".to_string(),
        Some(o @ Json::Object(_)) => o.to_string(),
        Some(Json::String(s)) => match serde_json::from_str::<Json>(s) {
            Ok(o @ Json::Object(_)) => o.to_string(),
            _ => return Err(err(0, "\"arguments\" is a string that does not hold a JSON object")),
        },
        Some(_) => return Err(err(0, "\"arguments\" must be an object")),
    };
    Ok(ToolCall {
        name: name.to_string(),
        arguments,
    })
}

fn err(at: usize, msg: impl Into<String>) -> ParseError {
    ParseError { at, msg: msg.into() }
}

/// A cursor over Python source holding literals and calls.
struct Py<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Py<'a> {
    fn new(s: &'a str) -> Self {
        Py { s, i: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        Some(c)
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// Skips whitespace, then consumes `c` if it is next.
    fn eat(&mut self, c: char) -> bool {
        self.ws();
        match self.peek() == Some(c) {
            true => {
                self.i += c.len_utf8();
                true
            }
            false => false,
        }
    }

    fn expect(&mut self, c: char, what: &str) -> Result<(), ParseError> {
        match self.eat(c) {
            true => Ok(()),
            false => Err(self.fail(&format!("expected {what}"))),
        }
    }

    fn fail(&self, msg: &str) -> ParseError {
        let found = match self.peek() {
            Some(c) => format!("{c:?}"),
            None => "the end".into(),
        };
        err(self.i, format!("{msg}, found {found}"))
    }

    /// `[call, call, …]` or a single `call`, then nothing but whitespace.
    fn calls(mut self) -> Result<Vec<ToolCall>, ParseError> {
        let mut calls = Vec::new();
        match self.eat('[') {
            true => {
                if self.eat(']') {
                    return Err(err(self.i, "an empty list of calls"));
                }
                loop {
                    calls.push(self.call()?);
                    if self.eat(']') {
                        break;
                    }
                    self.expect(',', "',' or ']' after a call")?;
                    if self.eat(']') {
                        break; // trailing comma
                    }
                }
            }
            false => calls.push(self.call()?),
        }
        self.ws();
        match self.peek() {
            None => Ok(calls),
            Some(_) => Err(self.fail("expected the end of the tool calls")),
        }
    }

    /// `name(arg=value, …)`; positional arguments have no name to give them, so they are
    /// an error.
    fn call(&mut self) -> Result<ToolCall, ParseError> {
        self.ws();
        let mut name = self.ident().ok_or_else(|| self.fail("expected a function name"))?;
        while self.peek() == Some('.') {
            self.bump();
            let part = self.ident().ok_or_else(|| self.fail("expected a name after '.'"))?;
            name = format!("{name}.{part}");
        }
        self.expect('(', "'(' after the function name")?;
        let mut args = Map::new();
        if !self.eat(')') {
            loop {
                self.ws();
                let at = self.i;
                let key = self
                    .ident()
                    .ok_or_else(|| self.fail("expected a keyword argument name"))?;
                if !self.eat('=') {
                    return Err(err(at, "positional arguments cannot be named: expected name=value"));
                }
                let value = self.value(1)?;
                if args.insert(key.clone(), value).is_some() {
                    return Err(err(at, format!("argument {key:?} given twice")));
                }
                if self.eat(')') {
                    break;
                }
                self.expect(',', "',' or ')' after an argument")?;
                if self.eat(')') {
                    break;
                }
            }
        }
        Ok(ToolCall {
            name,
            arguments: Json::Object(args).to_string(),
        })
    }

    /// A name: a letter or `_`, then letters, digits, `_` or `-` (tool names from JSON
    /// schemas often hold a hyphen, which the model copies).
    fn ident(&mut self) -> Option<String> {
        let start = self.i;
        match self.peek() {
            Some(c) if c.is_alphabetic() || c == '_' => self.bump(),
            _ => return None,
        };
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-') {
            self.bump();
        }
        Some(self.s[start..self.i].to_string())
    }

    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return Err(err(self.i, format!("nested deeper than {MAX_DEPTH}")));
        }
        self.ws();
        match self.peek() {
            Some('"' | '\'') => Ok(Json::String(self.string()?)),
            Some('[') => {
                self.bump();
                self.seq(']', depth)
            }
            Some('(') => {
                self.bump();
                self.seq(')', depth)
            }
            Some('{') => {
                self.bump();
                self.dict(depth)
            }
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => {
                let at = self.i;
                let word = self.ident().unwrap_or_default();
                match word.as_str() {
                    "True" | "true" => Ok(Json::Bool(true)),
                    "False" | "false" => Ok(Json::Bool(false)),
                    "None" | "null" => Ok(Json::Null),
                    // Adjacent string prefixes (r"…", b"…") and names are not literals.
                    _ => Err(err(at, format!("{word:?} is not a literal"))),
                }
            }
            _ => Err(self.fail("expected a value")),
        }
    }

    /// The items of a list or tuple, after its opening bracket.
    fn seq(&mut self, close: char, depth: usize) -> Result<Json, ParseError> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            if self.eat(close) {
                return Ok(Json::Array(items));
            }
            self.expect(',', &format!("',' or '{close}'"))?;
            if self.eat(close) {
                return Ok(Json::Array(items));
            }
        }
    }

    /// The entries of a dict, after `{`. Keys that are not strings are written as JSON text
    /// (`{1: "a"}` → `{"1": "a"}`).
    fn dict(&mut self, depth: usize) -> Result<Json, ParseError> {
        let mut map = Map::new();
        if self.eat('}') {
            return Ok(Json::Object(map));
        }
        loop {
            let key = match self.value(depth + 1)? {
                Json::String(s) => s,
                Json::Array(_) | Json::Object(_) => return Err(err(self.i, "a dict key must be a scalar")),
                other => other.to_string(),
            };
            self.expect(':', "':' after a dict key")?;
            let value = self.value(depth + 1)?;
            map.insert(key, value);
            if self.eat('}') {
                return Ok(Json::Object(map));
            }
            self.expect(',', "',' or '}'")?;
            if self.eat('}') {
                return Ok(Json::Object(map));
            }
        }
    }

    /// An int or float literal (`-3`, `2.5`, `1e-3`, `.5`, `1_000`); ints beyond 64 bits
    /// become floats.
    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.i;
        if matches!(self.peek(), Some('-' | '+')) {
            self.bump();
        }
        let mut float = false;
        while let Some(c) = self.peek() {
            match c {
                '0'..='9' | '_' => {}
                '.' => float = true,
                'e' | 'E' => {
                    float = true;
                    self.bump();
                    if matches!(self.peek(), Some('-' | '+')) {
                        self.bump();
                    }
                    continue;
                }
                _ => break,
            }
            self.bump();
        }
        let text: String = self.s[start..self.i].chars().filter(|&c| c != '_').collect();
        let text = text.strip_prefix('+').unwrap_or(&text);
        if !text.chars().any(|c| c.is_ascii_digit()) {
            return Err(err(start, "expected a number"));
        }
        if !float {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Json::Number(i.into()));
            }
            if let Ok(u) = text.parse::<u64>() {
                return Ok(Json::Number(u.into()));
            }
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Json::Number)
            .ok_or_else(|| err(start, format!("{text:?} is not a finite number")))
    }

    /// A quoted string, single or triple quotes of either kind, with Python's escapes.
    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.i;
        let q = self.bump().expect("called on a quote");
        let triple: String = [q; 3].iter().collect();
        let long = self.s[start..].starts_with(&triple);
        if long {
            self.i = start + 3;
        }
        let mut out = String::new();
        loop {
            if long && self.s[self.i..].starts_with(&triple) {
                self.i += 3;
                return Ok(out);
            }
            match self.bump() {
                None => return Err(err(start, "a string is not closed")),
                Some(c) if c == q && !long => return Ok(out),
                Some('\n') if !long => return Err(err(start, "a newline inside a one-line string")),
                Some('\\') => self.escape(&mut out)?,
                Some(c) => out.push(c),
            }
        }
    }

    /// One escape after a backslash. Unknown escapes keep the backslash, as Python does.
    fn escape(&mut self, out: &mut String) -> Result<(), ParseError> {
        let at = self.i - 1;
        let c = self.bump().ok_or_else(|| err(at, "a string ends in a backslash"))?;
        let simple = match c {
            '\n' => Some(None), // line continuation
            '\\' => Some(Some('\\')),
            '\'' => Some(Some('\'')),
            '"' => Some(Some('"')),
            '/' => Some(Some('/')), // JSON's escape (values forced by a schema are JSON)
            'n' => Some(Some('\n')),
            't' => Some(Some('\t')),
            'r' => Some(Some('\r')),
            'b' => Some(Some('\u{8}')),
            'f' => Some(Some('\u{c}')),
            'v' => Some(Some('\u{b}')),
            'a' => Some(Some('\u{7}')),
            _ => None,
        };
        if let Some(ch) = simple {
            out.extend(ch);
            return Ok(());
        }
        let code = match c {
            'x' => self.hex(2, at)?,
            'u' => self.hex(4, at)?,
            'U' => self.hex(8, at)?,
            '0'..='7' => {
                let mut v = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            self.bump();
                        }
                        None => break,
                    }
                }
                v
            }
            other => {
                out.push('\\');
                out.push(other);
                return Ok(());
            }
        };
        // A UTF-16 surrogate pair written as two \u escapes (JSON habit) is one character.
        if (0xD800..0xDC00).contains(&code) && self.s[self.i..].starts_with("\\u") {
            let save = self.i;
            self.i += 2;
            let low = self.hex(4, at)?;
            if (0xDC00..0xE000).contains(&low) {
                let joined = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                out.extend(char::from_u32(joined));
                return Ok(());
            }
            self.i = save;
        }
        let ch = char::from_u32(code).ok_or_else(|| err(at, format!("escape \\{c} gives no character ({code:#x})")))?;
        out.push(ch);
        Ok(())
    }

    fn hex(&mut self, digits: usize, at: usize) -> Result<u32, ParseError> {
        let text = self.s.get(self.i..self.i + digits).unwrap_or("");
        if text.len() != digits || !text.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(err(at, format!("expected {digits} hex digits in an escape")));
        }
        self.i += digits;
        u32::from_str_radix(text, 16).map_err(|e| err(at, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> (String, Json) {
        let calls = parse_calls(body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        assert_eq!(calls.len(), 1, "{body:?}");
        let args = serde_json::from_str(&calls[0].arguments).unwrap();
        (calls[0].name.clone(), args)
    }

    #[test]
    fn model_card_example() {
        // The LFM2 model card's example output.
        let (name, args) = one(r#"[get_candidate_status(candidate_id="12345")]"#);
        assert_eq!(name, "get_candidate_status");
        assert_eq!(args, serde_json::json!({"candidate_id": "12345"}));
    }

    #[test]
    fn several_calls_keep_their_order() {
        let calls = parse_calls(r#"[get_weather(city="Paris", days=3), get_time(tz='Europe/Paris'), now()]"#).unwrap();
        let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["get_weather", "get_time", "now"]);
        assert_eq!(calls[0].arguments, r#"{"city":"Paris","days":3}"#);
        assert_eq!(calls[1].arguments, r#"{"tz":"Europe/Paris"}"#);
        assert_eq!(calls[2].arguments, "{}");
    }

    #[test]
    fn python_literals_become_json() {
        let (_, args) = one("[f(a=True, b=False, c=None, d=-2, e=2.5, g=1e-3, h=[1, 'x', [None]], \
             i={'k': {\"n\": (1, 2)}, 3: 'three'}, j=1_000, k=.5, l=+7, m=())]");
        assert_eq!(
            args,
            serde_json::json!({
                "a": true, "b": false, "c": null, "d": -2, "e": 2.5, "g": 0.001,
                "h": [1, "x", [null]], "i": {"k": {"n": [1, 2]}, "3": "three"},
                "j": 1000, "k": 0.5, "l": 7, "m": []
            })
        );
    }

    #[test]
    fn keyword_order_is_kept() {
        let calls = parse_calls("[f(z=1, a=2, m=3)]").unwrap();
        assert_eq!(calls[0].arguments, r#"{"z":1,"a":2,"m":3}"#);
    }

    #[test]
    fn escapes_and_unicode() {
        let (_, args) = one(
            r#"[say(a="line\nnext\ttab \"q\" \\ back", b='it\'s', c="\u00e9\x41\101\U0001F600", d="日本語 😀", e="\ud83d\ude00", f="a\qb")]"#,
        );
        assert_eq!(args["a"], "line\nnext\ttab \"q\" \\ back");
        assert_eq!(args["b"], "it's");
        assert_eq!(args["c"], "éAA😀");
        assert_eq!(args["d"], "日本語 😀");
        assert_eq!(args["e"], "😀");
        assert_eq!(args["f"], "a\\qb");
    }

    #[test]
    fn triple_quotes_and_multiline_strings() {
        let (_, args) = one("[write(text=\"\"\"two\nlines with \"quotes\" \"\"\", t='''x''')]");
        assert_eq!(args["text"], "two\nlines with \"quotes\" ");
        assert_eq!(args["t"], "x");
    }

    #[test]
    fn dotted_and_hyphenated_names() {
        assert_eq!(one("[db.users.find(id=1)]").0, "db.users.find");
        assert_eq!(one("[get-weather(city=\"Oslo\")]").0, "get-weather");
        assert_eq!(one("[ü_tool(x=1)]").0, "ü_tool");
    }

    #[test]
    fn whitespace_trailing_commas_and_no_brackets() {
        let calls = parse_calls("\n [ f( a = 1 , ) ,\n g() , ] \n").unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].arguments, r#"{"a":1}"#);
        assert_eq!(one("f(a=[1,2,],)").1, serde_json::json!({"a": [1, 2]}));
    }

    #[test]
    fn json_style_calls() {
        let (name, args) = one(r#"{"name": "get_weather", "arguments": {"city": "Paris"}}"#);
        assert_eq!(name, "get_weather");
        assert_eq!(args, serde_json::json!({"city": "Paris"}));
        let calls = parse_calls(
            r#"[{"name": "a", "arguments": "{\"x\": 1}"}, {"name": "b", "parameters": {"y": [true]}}, {"name": "c"}]"#,
        )
        .unwrap();
        assert_eq!(calls[0].arguments, r#"{"x":1}"#);
        assert_eq!(calls[1].arguments, r#"{"y":[true]}"#);
        assert_eq!(calls[2].arguments, "{}");
    }

    #[test]
    fn big_ints_stay_exact_or_become_floats() {
        assert_eq!(one("[f(a=18446744073709551615)]").1["a"], serde_json::json!(u64::MAX));
        assert_eq!(one("[f(a=-9223372036854775808)]").1["a"], serde_json::json!(i64::MIN));
        assert!(one("[f(a=123456789012345678901234567890)]").1["a"].is_f64());
    }

    #[test]
    fn malformed_calls_are_errors_not_guesses() {
        for bad in [
            "",
            "[]",
            "[f(1, 2)]",           // positional
            "[f(a=1]",             // unclosed call
            "[f(a=1)",             // unclosed list
            "[f(a='x)]",           // unclosed string
            "[f(a=x)]",            // a name, not a literal
            "[f(a=1, a=2)]",       // repeated keyword
            "[f(a=1)] trailing",   // text after the list
            "[f(a=\"\\x4\")]",     // short escape
            "[f(a=\"\\ud800\")]",  // lone surrogate
            "[f(a=1e999)]",        // infinite
            "[f(a=-)]",            // sign alone
            "[f(a={[1]: 2})]",     // unhashable key
            "{\"arguments\": {}}", // JSON without a name
            "{\"name\": \"f\", \"arguments\": [1]}",
            "[f(a='one\ntwo')]", // newline in a one-line string
            "[1, 2]",
        ] {
            assert!(parse_calls(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn errors_say_where() {
        let e = parse_calls("[f(a=1, b=)]").unwrap_err();
        assert_eq!(e.at, 10, "{e}");
        assert!(e.msg.contains("expected a value"), "{e}");
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = format!("[f(a={}{})]", "[".repeat(10_000), "]".repeat(10_000));
        let e = parse_calls(&deep).unwrap_err();
        assert!(e.msg.contains("nested deeper"), "{e}");
        let ok = format!("[f(a={}{})]", "[".repeat(60), "]".repeat(60));
        parse_calls(&ok).unwrap();
    }
}

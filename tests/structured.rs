//! Structured output (issue #13) on the fixture models: sampled answers under JSON Schemas
//! always validate (checked by the `jsonschema` crate, not by the engine's own grammar),
//! greedy constrained decoding equals the CPU reference with the same masks applied to its
//! logits, and bad schemas and grammars fail before generation with their message.

mod common;

use common::{default_gpu, fixture_dir};
use lfm_wgpu::constrain::{Constraint, Format, ToolChoice, Vocabulary};
use lfm_wgpu::gpu::DType;
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::session::{Session, SessionOptions};
use lfm_wgpu::model::weights::{Checkpoint, Source};
use lfm_wgpu::reference::Reference;
use lfm_wgpu::sampling::{Next, SamplingParams, TokenConstraint};
use lfm_wgpu::tokenizer::Tokenizer;
use serde_json::{json, Value};
use std::sync::Arc;

/// The schemas the issue lists: nested objects, arrays with min/max items, enums, bounded
/// numbers, strings with patterns, anyOf, required and optional keys.
fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "nested",
            json!({"type": "object", "properties": {
                "user": {"type": "object", "properties": {
                    "name": {"type": "string", "maxLength": 6},
                    "age": {"type": "integer", "minimum": 0, "maximum": 120}},
                    "required": ["name", "age"], "additionalProperties": false}},
                "required": ["user"], "additionalProperties": false}),
        ),
        (
            "array",
            json!({"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 99},
                   "minItems": 2, "maxItems": 4}),
        ),
        (
            "enum",
            json!({"type": "object", "properties": {
                "color": {"enum": ["red", "green", "blue"]},
                "size": {"enum": [1, 2, "xl", null]}},
                "required": ["color", "size"], "additionalProperties": false}),
        ),
        (
            "bounded numbers",
            json!({"type": "object", "properties": {
                "ratio": {"type": "number", "minimum": 0.5, "maximum": 2.5},
                "count": {"type": "integer", "exclusiveMinimum": 3, "maximum": 7}},
                "required": ["ratio", "count"], "additionalProperties": false}),
        ),
        (
            "pattern",
            json!({"type": "object", "properties": {
                "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
                "tag": {"type": "string", "pattern": "^(ok|no)+$", "maxLength": 6}},
                "required": ["code", "tag"], "additionalProperties": false}),
        ),
        (
            "anyOf",
            json!({"anyOf": [
                {"type": "object", "properties": {"kind": {"const": "a"}, "n": {"type": "integer", "minimum": 0, "maximum": 9}},
                 "required": ["kind", "n"], "additionalProperties": false},
                {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
                {"type": "string", "maxLength": 4}]}),
        ),
        (
            "optional keys",
            json!({"type": "object", "properties": {
                "id": {"type": "integer", "minimum": 1, "maximum": 50},
                "note": {"type": "string", "maxLength": 5},
                "flag": {"type": "boolean"}},
                "required": ["id"], "additionalProperties": false}),
        ),
    ]
}

fn load(name: &str) -> (Session, Tokenizer, Vocabulary) {
    let dir = fixture_dir(name);
    let ckpt = Checkpoint::open(&dir).unwrap();
    let vocab = ckpt.config().vocab_size;
    let model = Arc::new(GpuModel::load(default_gpu(), &ckpt, DType::F32).unwrap());
    let opts = SessionOptions {
        ctx: 1024,
        kv_dtype: Some(DType::F32),
        ..Default::default()
    };
    let s = Session::new(model, &opts).unwrap();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let v = Vocabulary::new(&tok, vocab).unwrap();
    (s, tok, v)
}

/// Generates under `c`; returns the ids before the end token and whether the output ended
/// (an end token, or the constraint complete).
fn generate(s: &mut Session, tok: &Tokenizer, prompt: &[u32], c: &mut Constraint, max_new: usize) -> (Vec<u32>, bool) {
    let eos = tok.eos_ids().to_vec();
    let mut ids = Vec::new();
    let mut ended = false;
    s.reset();
    let st = s
        .generate_constrained(prompt, max_new, false, c, &mut |id| {
            ended = eos.contains(&id);
            if !ended {
                ids.push(id);
            }
            !ended
        })
        .unwrap();
    assert!(!st.dead_end, "the constraint never gets stuck on a schema");
    (ids, ended || st.complete)
}

#[test]
fn sampled_json_always_validates() {
    let mut closed_total = 0;
    for name in ["tiny_b", "tiny_c"] {
        let (mut s, tok, vocab) = load(name);
        let prompt = tok.encode("Answer in JSON:", true).unwrap();
        for (what, schema) in schemas() {
            let validator = jsonschema::validator_for(&schema).unwrap();
            for seed in 0..6u64 {
                s.set_sampling(SamplingParams {
                    temperature: 1.0,
                    top_k: [0, 40][seed as usize % 2],
                    min_p: 0.02,
                    repetition_penalty: 1.1,
                    seed,
                    ..SamplingParams::greedy()
                })
                .unwrap();
                let mut c = vocab.constraint(&Format::JsonSchema(schema.clone()), what).unwrap();
                let (ids, ended) = generate(&mut s, &tok, &prompt, &mut c, 400);
                let text = tok.decode(&ids, false);
                assert!(
                    ended,
                    "{name} {what} seed {seed}: no end token within 400 tokens: {text:?}"
                );
                let value: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{name} {what} seed {seed}: not JSON ({e}): {text:?}"));
                if let Err(e) = validator.validate(&value) {
                    panic!("{name} {what} seed {seed}: {text} does not validate: {e}");
                }
            }
            eprintln!("{name} {what}: 6 sampled answers validate");
        }
        // JSON mode: any object (unbounded, so a random model may not close it in time).
        let mut closed = 0;
        for seed in 0..4u64 {
            s.set_sampling(SamplingParams::model_card(seed)).unwrap();
            let mut c = vocab.constraint(&Format::JsonObject, "--json").unwrap();
            let (ids, ended) = generate(&mut s, &tok, &prompt, &mut c, 400);
            let text = tok.decode(&ids, false);
            if ended {
                let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                assert!(v.is_object(), "{text}");
                closed += 1;
            } else {
                assert!(text.starts_with('{'), "{text:?}");
            }
        }
        eprintln!("{name} JSON mode: {closed} of 4 sampled objects closed (and parse) within 400 tokens");
        closed_total += closed;
    }
    assert!(closed_total > 0, "no JSON-mode answer was complete");
}

/// A regex and a Lark grammar constrain sampled text too.
#[test]
fn regex_and_grammar() {
    let (mut s, tok, vocab) = load("tiny_b");
    let prompt = tok.encode("Pick:", true).unwrap();
    let rx = regex::Regex::new("^(yes|no) [0-9]{1,3}!$").unwrap();
    let lark = r#"start: "(" item ("," item)* ")"
item: /[a-c]{1,2}/ | NUMBER
NUMBER: /[0-9]/
"#;
    let lark_rx = regex::Regex::new(r"^\(([a-c]{1,2}|[0-9])(,([a-c]{1,2}|[0-9]))*\)$").unwrap();
    for seed in 0..6u64 {
        s.set_sampling(SamplingParams {
            temperature: 1.0,
            seed,
            ..SamplingParams::greedy()
        })
        .unwrap();
        let mut c = vocab
            .constraint(&Format::Regex("(yes|no) [0-9]{1,3}!".into()), "--regex")
            .unwrap();
        let (ids, ended) = generate(&mut s, &tok, &prompt, &mut c, 100);
        let text = tok.decode(&ids, false);
        assert!(ended && rx.is_match(&text), "regex seed {seed}: {text:?}");
        let mut c = vocab.constraint(&Format::Lark(lark.into()), "g.lark").unwrap();
        let (ids, ended) = generate(&mut s, &tok, &prompt, &mut c, 200);
        let text = tok.decode(&ids, false);
        assert!(ended && lark_rx.is_match(&text), "lark seed {seed}: {text:?}");
    }
}

fn argmax_allowed(logits: &[f32], mask: &[u32]) -> (u32, f32) {
    let allowed = |i: usize| mask[i / 32] >> (i % 32) & 1 == 1;
    let mut best: Option<usize> = None;
    for i in (0..logits.len()).filter(|&i| allowed(i)) {
        if best.is_none_or(|b| logits[i] > logits[b]) {
            best = Some(i);
        }
    }
    let b = best.unwrap();
    // The margin to the runner-up, to tell a real mismatch from a near tie.
    let second = (0..logits.len())
        .filter(|&i| allowed(i) && i != b)
        .map(|i| logits[i])
        .fold(f32::NEG_INFINITY, f32::max);
    (b as u32, logits[b] - second)
}

/// Greedy constrained decoding on the GPU equals the CPU reference forward with the same
/// constraint's masks applied to its logits (forced tokens fed as the GPU feeds them).
#[test]
fn greedy_constrained_equals_cpu_reference() {
    for name in ["tiny_b", "tiny_c"] {
        let dir = fixture_dir(name);
        let ckpt = Checkpoint::open(&dir).unwrap();
        let cpu = Reference::load(&ckpt, DType::F32).unwrap();
        let (mut s, tok, vocab) = load(name);
        let prompt = tok.encode("Give JSON:", true).unwrap();
        for (what, schema) in schemas() {
            let format = Format::JsonSchema(schema);
            s.set_sampling(SamplingParams::greedy()).unwrap();
            let mut c = vocab.constraint(&format, what).unwrap();
            let (gpu_ids, _) = generate(&mut s, &tok, &prompt, &mut c, 120);

            let mut c = vocab.constraint(&format, what).unwrap();
            let mut st = cpu.new_state();
            let v = cpu.cfg.vocab_size;
            let mut logits = cpu.forward(&mut st, &prompt, None)[(prompt.len() - 1) * v..].to_vec();
            let mut mask = vec![0u32; v.div_ceil(32)];
            let mut want = Vec::new();
            let mut near_tie = false;
            while want.len() < gpu_ids.len() + 1 {
                let tokens = match c.next(&mut mask).unwrap() {
                    Next::Done | Next::DeadEnd => break,
                    Next::Forced(t) => t,
                    Next::Sample => {
                        let (id, margin) = argmax_allowed(&logits, &mask);
                        c.accept(id).unwrap();
                        near_tie |= margin < 1e-4;
                        vec![id]
                    }
                };
                want.extend(&tokens);
                if tokens.iter().any(|t| tok.eos_ids().contains(t)) || near_tie {
                    break;
                }
                logits = cpu.forward(&mut st, &tokens, None)[(tokens.len() - 1) * v..].to_vec();
            }
            want.retain(|t| !tok.eos_ids().contains(t));
            let n = match near_tie {
                true => want.len() - 1, // the last pick was a near tie: compare up to it
                false => want.len(),
            };
            assert!(gpu_ids.len() >= n, "{name} {what}: {gpu_ids:?} vs {want:?}");
            assert_eq!(gpu_ids[..n], want[..n], "{name} {what}");
            eprintln!(
                "{name} {what}: greedy constrained = CPU reference over {n} tokens: {}",
                tok.decode(&gpu_ids, false)
            );
        }
    }
}

/// Invalid or unsupported schemas and grammars fail when compiled, naming the problem.
#[test]
fn bad_schemas_and_grammars_are_errors() {
    let dir = fixture_dir("tiny_b");
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let vocab = Vocabulary::new(&tok, 384).unwrap();
    let cases: Vec<(Format, &str)> = vec![
        (
            Format::JsonSchema(json!({"type": "object", "properties": {"a": {"type": "strin"}}})),
            "strin",
        ),
        (
            Format::JsonSchema(json!({"type": "string", "format": "no-such-format"})),
            "no-such-format",
        ),
        (
            Format::JsonSchema(
                json!({"type": "object", "x-unknown-keyword": 3, "patternProperties": {"^a": {"type": "integer"}}, "if": {}}),
            ),
            "if",
        ),
        (
            Format::JsonSchema(json!({"type": "integer", "minimum": 5, "maximum": 1})),
            "minimum",
        ),
        (Format::Lark("start: foo\n".into()), "foo"),
        (Format::Lark("start: \"a\" (\n".into()), "start"),
        (Format::Regex("(unclosed".into()), "unclosed"),
    ];
    for (format, needle) in cases {
        match vocab.constraint(&format, "test.json") {
            Ok(_) => panic!("{format:?} compiled"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("test.json: "), "{msg}");
                assert!(msg.contains(needle), "{format:?}: {msg:?} does not name {needle:?}");
                eprintln!("{msg}");
            }
        }
    }
}

/// Tools whose every argument is bounded, so that a random model's forced call ends.
fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {
            "type": "object", "properties": {
                "city": {"type": "string", "maxLength": 8},
                "unit": {"enum": ["c", "f"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 14}},
            "required": ["city"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "set_alarm", "parameters": {
            "type": "object", "properties": {
                "time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
                "label": {"type": "string", "maxLength": 6},
                "repeat": {"type": "boolean"}},
            "required": ["time"]}}},
        {"type": "function", "function": {"name": "db.lookup", "parameters": {
            "type": "object", "properties": {
                "ids": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "maxItems": 3},
                "filter": {"$ref": "#/$defs/filter"}},
            "required": ["ids", "filter"],
            "$defs": {"filter": {"type": "object", "properties": {"kind": {"enum": ["a", "b", null]}},
                                 "required": ["kind"], "additionalProperties": false}}}}},
        {"type": "function", "function": {"name": "now"}},
    ])
}

/// Feeds `text`'s tokens to `c`; the error names the text accepted before the refused token.
fn feed_text(c: &mut Constraint, tok: &Tokenizer, text: &str) -> Result<(), String> {
    let ids = tok.encode(text, false).unwrap();
    for (i, &id) in ids.iter().enumerate() {
        if c.accept(id).is_err() {
            return Err(format!("refused after {:?}", tok.decode(&ids[..i], false)));
        }
    }
    Ok(())
}

/// The tool-call grammars accept well-formed calls (text around them under `auto`) and
/// refuse calls that break the schemas, the key order or the choice.
#[test]
fn tool_call_grammars_accept_calls_and_refuse_bad_ones() {
    let tok = Tokenizer::from_dir(&fixture_dir("tiny_b")).unwrap();
    let vocab = Vocabulary::new(&tok, 384).unwrap();
    let tools = tools();
    let tools = tools.as_array().unwrap();
    let call = r#"<|tool_call_start|>[get_weather(city="Oslo", days=3), now()]<|tool_call_end|>"#;
    let named = ToolChoice::Function("set_alarm".into());
    let cases: Vec<(ToolChoice, bool, String, bool)> = vec![
        (ToolChoice::Auto, true, format!("Let me check. {call} Done."), true),
        (ToolChoice::Auto, true, "Just text, no call.".into(), true),
        (
            ToolChoice::Auto,
            true,
            r#"x <|tool_call_start|>[get_weather(town="Oslo")]"#.into(),
            false,
        ),
        (ToolChoice::Required, true, call.into(), true),
        (ToolChoice::Required, true, format!("Sure. {call}"), false),
        (ToolChoice::Required, false, call.into(), false),
        (
            ToolChoice::Required,
            true,
            r#"<|tool_call_start|>[get_weather(days=3, city="Oslo")]"#.into(),
            false,
        ),
        (
            ToolChoice::Required,
            true,
            r#"<|tool_call_start|>[get_weather(city="Oslo", days="3")]"#.into(),
            false,
        ),
        (
            ToolChoice::Required,
            true,
            r#"<|tool_call_start|>[get_weather(city="Oslo, Norway")]"#.into(),
            false,
        ),
        (
            ToolChoice::Required,
            true,
            r#"<|tool_call_start|>[get_weather(days=3)]"#.into(),
            false,
        ),
        (
            ToolChoice::Required,
            true,
            r#"<|tool_call_start|>[db.lookup(ids=[1, 2], filter={"kind": null})]<|tool_call_end|>"#.into(),
            true,
        ),
        (
            ToolChoice::Required,
            true,
            r#"<|tool_call_start|>[db.lookup(ids=[1, 2], filter={"kind": "c"})]"#.into(),
            false,
        ),
        (
            named.clone(),
            true,
            r#"<|tool_call_start|>[set_alarm(time="07:30", repeat=true)]<|tool_call_end|>"#.into(),
            true,
        ),
        (
            named.clone(),
            true,
            r#"<|tool_call_start|>[set_alarm(time="7:30")]"#.into(),
            false,
        ),
        (named, true, call.into(), false),
    ];
    for (choice, parallel, text, ok) in cases {
        let mut c = vocab.tool_constraint(tools, &choice, parallel, None).unwrap();
        let fed = feed_text(&mut c, &tok, &text);
        let case = format!("{choice:?} parallel {parallel}: {text:?}: {fed:?}");
        assert_eq!(fed.is_ok() && c.is_accepting(), ok, "{case}");
    }
    // `auto` with a response format: that answer or a call, nothing else.
    let answer = Format::JsonSchema(json!({"type": "object", "properties": {"a": {"type": "integer"}},
        "required": ["a"], "additionalProperties": false}));
    for (text, ok) in [(r#"{"a": 5}"#, true), (call, true), ("text", false)] {
        let mut c = vocab
            .tool_constraint(tools, &ToolChoice::Auto, true, Some(&answer))
            .unwrap();
        let fed = feed_text(&mut c, &tok, text);
        assert_eq!(fed.is_ok() && c.is_accepting(), ok, "{text}: {fed:?}");
    }
    // Parameters without properties take any keyword arguments with JSON values.
    let open = json!([{"type": "function", "function": {"name": "b", "parameters": {"type": "object"}}}]);
    let mut c = vocab
        .tool_constraint(open.as_array().unwrap(), &ToolChoice::Required, true, None)
        .unwrap();
    let text = r#"<|tool_call_start|>[b(x=1, y_2={"k": [true]})]<|tool_call_end|>"#;
    assert!(feed_text(&mut c, &tok, text).is_ok() && c.is_accepting(), "{text}");
    // A schema llguidance cannot enforce is named by its tool.
    let bad = json!([tools[0], {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "string", "format": "no-such-format"}}}}}]);
    let e = vocab
        .tool_constraint(bad.as_array().unwrap(), &ToolChoice::Auto, true, None)
        .err()
        .expect("an unknown format is refused");
    assert!(
        e.to_string().starts_with("tools[1].function.parameters.properties.x: "),
        "{e}"
    );
}

/// Forced tool calls on the fixture models (sampled, several seeds, `required` and a named
/// function): every answer is one call list that the server's tool-call parser reads, naming
/// an offered tool, with arguments valid against that tool's schema (checked by `jsonschema`).
#[test]
#[cfg(feature = "server")]
fn forced_tool_calls_parse_and_validate() {
    use lfm_wgpu::serve::toolcall::{parse_calls, TOOL_CALL_END, TOOL_CALL_START};
    let tools = tools();
    let tools = tools.as_array().unwrap();
    let schema_of = |name: &str| {
        let f = &tools.iter().find(|t| t["function"]["name"] == name).unwrap()["function"];
        f.get("parameters")
            .cloned()
            .unwrap_or(json!({"type": "object", "additionalProperties": false}))
    };
    let choices = [
        ToolChoice::Required,
        ToolChoice::Function("get_weather".into()),
        ToolChoice::Function("set_alarm".into()),
        ToolChoice::Function("db.lookup".into()),
    ];
    let mut calls_seen = 0;
    for name in ["tiny_b", "tiny_c"] {
        let (mut s, tok, vocab) = load(name);
        let prompt = tok.encode("Call a tool:", true).unwrap();
        for choice in &choices {
            for seed in 0..4u64 {
                s.set_sampling(SamplingParams {
                    temperature: 1.0,
                    top_k: [0, 40][seed as usize % 2],
                    seed,
                    ..SamplingParams::greedy()
                })
                .unwrap();
                let mut c = vocab.tool_constraint(tools, choice, false, None).unwrap();
                let (ids, ended) = generate(&mut s, &tok, &prompt, &mut c, 300);
                let text = tok.decode(&ids, false);
                let case = format!("{name} {choice:?} seed {seed}: {text:?}");
                assert!(ended, "{case}: no end within 300 tokens");
                let body = text
                    .strip_prefix(TOOL_CALL_START)
                    .and_then(|t| t.strip_suffix(TOOL_CALL_END))
                    .unwrap_or_else(|| panic!("{case}: not one call list"));
                let calls = parse_calls(body).unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(calls.len(), 1, "{case}");
                if let ToolChoice::Function(f) = choice {
                    assert_eq!(&calls[0].name, f, "{case}");
                }
                let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
                let validator = jsonschema::validator_for(&schema_of(&calls[0].name)).unwrap();
                if let Err(e) = validator.validate(&args) {
                    panic!("{case}: {args} does not validate: {e}");
                }
                calls_seen += 1;
            }
        }
    }
    eprintln!("{calls_seen} forced calls parsed and validated");
}

//! Splitting a generated answer, as it streams, into content, reasoning and tool calls.
//!
//! Text arrives in pieces of any size. `<think>…</think>` becomes reasoning, a
//! `<|tool_call_start|>…<|tool_call_end|>` span becomes tool calls when its body parses
//! ([`super::toolcall`]), and everything else is content. A span that does not parse is
//! given back as content, markers included: nothing the model wrote is dropped. A marker
//! split across pieces is held back until it is whole, so streaming the pieces and splitting
//! the whole answer at once give the same parts (tested below).

use super::toolcall::{parse_calls, ToolCall, TOOL_CALL_END, TOOL_CALL_START};

pub const THINK_START: &str = "<think>";
pub const THINK_END: &str = "</think>";

/// A part of the answer, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Content(String),
    Reasoning(String),
    ToolCalls(Vec<ToolCall>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Text,
    Think,
    Call,
}

/// The incremental splitter.
#[derive(Debug)]
pub struct Splitter {
    tools: bool,
    think: bool,
    mode: Mode,
    /// Text received and not yet given out.
    pending: String,
}

impl Splitter {
    /// `tools`: parse tool-call spans; `think`: move `<think>` spans into reasoning.
    pub fn new(tools: bool, think: bool) -> Self {
        Splitter {
            tools,
            think,
            mode: Mode::Text,
            pending: String::new(),
        }
    }

    /// Adds generated text; returns the parts it completes.
    pub fn push(&mut self, text: &str) -> Vec<Part> {
        self.pending.push_str(text);
        let mut parts = Vec::new();
        while self.step(&mut parts) {}
        parts
    }

    /// The end of the answer: what is still held back. An unclosed tool-call span is parsed
    /// as it is (generation may stop right after the list), and given as content if it fails.
    pub fn finish(&mut self) -> Vec<Part> {
        let rest = std::mem::take(&mut self.pending);
        let mode = std::mem::replace(&mut self.mode, Mode::Text);
        let part = match mode {
            Mode::Text => Part::Content(rest),
            Mode::Think => Part::Reasoning(rest),
            Mode::Call => return vec![call_part(&rest, false)],
        };
        let mut parts = Vec::new();
        emit(&mut parts, part);
        parts
    }

    /// One move on the pending text; false when nothing more can be given out yet.
    fn step(&mut self, parts: &mut Vec<Part>) -> bool {
        match self.mode {
            Mode::Text => {
                let mut markers = Vec::new();
                if self.tools {
                    markers.push((TOOL_CALL_START, Mode::Call));
                }
                if self.think {
                    markers.push((THINK_START, Mode::Think));
                }
                let found = markers
                    .iter()
                    .filter_map(|&(m, mode)| self.pending.find(m).map(|at| (at, m, mode)))
                    .min_by_key(|&(at, _, _)| at);
                match found {
                    Some((at, marker, mode)) => {
                        emit(parts, Part::Content(self.pending[..at].to_string()));
                        self.pending.drain(..at + marker.len());
                        self.mode = mode;
                        true
                    }
                    None => {
                        let names: Vec<&str> = markers.iter().map(|m| m.0).collect();
                        self.give_all_but_marker_prefix(parts, &names, Part::Content);
                        false
                    }
                }
            }
            Mode::Think => match self.pending.find(THINK_END) {
                Some(at) => {
                    emit(parts, Part::Reasoning(self.pending[..at].to_string()));
                    self.pending.drain(..at + THINK_END.len());
                    self.mode = Mode::Text;
                    true
                }
                None => {
                    self.give_all_but_marker_prefix(parts, &[THINK_END], Part::Reasoning);
                    false
                }
            },
            Mode::Call => match self.pending.find(TOOL_CALL_END) {
                Some(at) => {
                    let body = self.pending[..at].to_string();
                    self.pending.drain(..at + TOOL_CALL_END.len());
                    self.mode = Mode::Text;
                    parts.push(call_part(&body, true));
                    true
                }
                None => false,
            },
        }
    }

    /// Gives out the pending text except a tail that could be the start of one of `markers`.
    fn give_all_but_marker_prefix(&mut self, parts: &mut Vec<Part>, markers: &[&str], make: fn(String) -> Part) {
        let keep = markers
            .iter()
            .map(|m| partial_marker_len(&self.pending, m))
            .max()
            .unwrap_or(0);
        let upto = self.pending.len() - keep;
        if upto > 0 {
            let text: String = self.pending.drain(..upto).collect();
            emit(parts, make(text));
        }
    }
}

/// The parsed calls of a span, or the span as content (markers included) when it does not
/// parse. `closed`: the end marker was seen.
fn call_part(body: &str, closed: bool) -> Part {
    match parse_calls(body) {
        Ok(calls) => Part::ToolCalls(calls),
        Err(e) => {
            log::info!("keeping a tool-call span as content: {e}");
            let end = if closed { TOOL_CALL_END } else { "" };
            Part::Content(format!("{TOOL_CALL_START}{body}{end}"))
        }
    }
}

/// Pushes `part` unless it is empty text.
fn emit(parts: &mut Vec<Part>, part: Part) {
    match &part {
        Part::Content(s) | Part::Reasoning(s) if s.is_empty() => {}
        _ => parts.push(part),
    }
}

/// The length of the longest tail of `text` that is a proper prefix of `marker`.
fn partial_marker_len(text: &str, marker: &str) -> usize {
    (1..marker.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && marker.starts_with(&text[text.len() - n..]))
        .unwrap_or(0)
}

/// The whole answer split at once (what a non-streaming response carries).
pub fn split_all(text: &str, tools: bool, think: bool) -> Vec<Part> {
    let mut s = Splitter::new(tools, think);
    let mut parts = s.push(text);
    parts.extend(s.finish());
    parts
}

/// Adjacent parts of the same kind joined (streamed parts come in many small pieces).
pub fn merge(parts: Vec<Part>) -> Vec<Part> {
    let mut out: Vec<Part> = Vec::new();
    for p in parts {
        match (out.last_mut(), p) {
            (Some(Part::Content(a)), Part::Content(b)) => a.push_str(&b),
            (Some(Part::Reasoning(a)), Part::Reasoning(b)) => a.push_str(&b),
            (Some(Part::ToolCalls(a)), Part::ToolCalls(b)) => a.extend(b),
            (_, p) => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(text: &str, cut: usize, tools: bool, think: bool) -> Vec<Part> {
        let mut s = Splitter::new(tools, think);
        let mut parts = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(cut) {
            parts.extend(s.push(&piece.iter().collect::<String>()));
        }
        parts.extend(s.finish());
        merge(parts)
    }

    const ANSWERS: [&str; 8] = [
        "Plain answer, no markers. 日本語 😀",
        "<think>The user wants the weather.\nCall the tool.</think>\n\n<|tool_call_start|>[get_weather(city=\"Paris\")]<|tool_call_end|>",
        "Checking.<|tool_call_start|>[a(x=1), b(y='z')]<|tool_call_end|>Done <|tool_call_start|>[c()]<|tool_call_end|>",
        "<|tool_call_start|>[broken(x=]<|tool_call_end|> after",
        "<|tool_call_start|>[get_time(tz=\"UTC\")]",
        "less than < and <| and <thin but not markers <|tool_call_sta",
        "<think>unfinished thought",
        "<|tool_call_start|>{\"name\": \"f\", \"arguments\": {\"a\": \"é\"}}<|tool_call_end|>",
    ];

    #[test]
    fn any_cut_gives_the_same_parts() {
        for text in ANSWERS {
            let whole = merge(split_all(text, true, true));
            for cut in [1, 2, 3, 5, 7, 19, 1000] {
                assert_eq!(streamed(text, cut, true, true), whole, "{text:?} cut {cut}");
            }
        }
    }

    #[test]
    fn parts_of_a_tool_answer() {
        let parts = merge(split_all(ANSWERS[1], true, true));
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert_eq!(
            parts[0],
            Part::Reasoning("The user wants the weather.\nCall the tool.".into())
        );
        assert_eq!(parts[1], Part::Content("\n\n".into()));
        let Part::ToolCalls(calls) = &parts[2] else {
            panic!("{parts:?}")
        };
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(calls[0].arguments, r#"{"city":"Paris"}"#);
    }

    #[test]
    fn unparsable_calls_stay_as_content() {
        let parts = merge(split_all(ANSWERS[3], true, true));
        assert_eq!(
            parts,
            vec![Part::Content(
                "<|tool_call_start|>[broken(x=]<|tool_call_end|> after".into()
            )]
        );
        let parts = merge(split_all("<|tool_call_start|>[f(a=1", true, true));
        assert_eq!(parts, vec![Part::Content("<|tool_call_start|>[f(a=1".into())]);
    }

    #[test]
    fn unclosed_but_complete_call_list_parses() {
        let parts = merge(split_all(ANSWERS[4], true, true));
        assert!(
            matches!(&parts[..], [Part::ToolCalls(c)] if c[0].name == "get_time"),
            "{parts:?}"
        );
    }

    #[test]
    fn switches_off() {
        // Without tools the markers are text; without think parsing, <think> is text.
        assert_eq!(
            merge(split_all(ANSWERS[2], false, true)),
            vec![Part::Content(ANSWERS[2].into())]
        );
        assert_eq!(
            merge(split_all(ANSWERS[6], true, false)),
            vec![Part::Content(ANSWERS[6].into())]
        );
        assert_eq!(
            merge(split_all(ANSWERS[6], true, true)),
            vec![Part::Reasoning("unfinished thought".into())]
        );
    }

    #[test]
    fn partial_markers() {
        assert_eq!(partial_marker_len("abc<|tool", TOOL_CALL_START), 6);
        assert_eq!(partial_marker_len("abc", TOOL_CALL_START), 0);
        assert_eq!(partial_marker_len("<", THINK_START), 1);
        assert_eq!(partial_marker_len("é", THINK_START), 0);
        // A whole marker is not a partial one.
        assert_eq!(partial_marker_len("<think>", THINK_START), 0);
    }
}

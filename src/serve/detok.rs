//! Generated ids to text deltas for a client: UTF-8-safe (a character split over several
//! byte-level tokens goes out whole), cut at the first stop string (which is never sent:
//! the bytes that could still become one are held back), with the tool-call and thinking
//! markers kept even when the tokenizer calls them special tokens (other special tokens are
//! left out, as `lfm run` leaves them out).

use super::output::{THINK_END, THINK_START};
use super::toolcall::{TOOL_CALL_END, TOOL_CALL_START};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// The marker tokens written into the text as they are.
pub fn marker_ids(tok: &Tokenizer) -> Vec<(u32, &'static str)> {
    [TOOL_CALL_START, TOOL_CALL_END, THINK_START, THINK_END]
        .into_iter()
        .filter_map(|m| tok.token_id(m).map(|id| (id, m)))
        .collect()
}

/// The text of one answer as it is generated.
pub struct Detok<'t> {
    stream: StreamDecoder<'t>,
    markers: Vec<(u32, &'static str)>,
    stops: Vec<String>,
    /// Bytes held back: the longest stop string, less one.
    hold: usize,
    text: String,
    /// `text[..sent]` has been given out.
    sent: usize,
    stopped: bool,
}

impl<'t> Detok<'t> {
    pub fn new(tok: &'t Tokenizer, stops: &[String]) -> Self {
        Detok {
            stream: tok.stream(true),
            markers: marker_ids(tok),
            stops: stops.to_vec(),
            hold: stops.iter().map(String::len).max().unwrap_or(1).saturating_sub(1),
            text: String::new(),
            sent: 0,
            stopped: false,
        }
    }

    /// Adds one id; returns the text that can go out now (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        if self.stopped {
            return String::new();
        }
        match self.markers.iter().find(|(m, _)| *m == id) {
            Some(&(_, marker)) => {
                let before = self.stream.finish();
                self.text.push_str(&before);
                self.text.push_str(marker);
            }
            None => {
                if let Some(piece) = self.stream.push(id) {
                    self.text.push_str(&piece);
                }
            }
        }
        self.take(false)
    }

    /// Whether a stop string ended the answer.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The end of the answer: everything still held back (an incomplete character becomes
    /// U+FFFD), cut at a stop string.
    pub fn finish(&mut self) -> String {
        if !self.stopped {
            let rest = self.stream.finish();
            self.text.push_str(&rest);
        }
        self.take(true)
    }

    /// Cuts at a stop string, then gives out all but the held-back tail (all at the end).
    fn take(&mut self, end: bool) -> String {
        // A stop string cannot start in the text already sent: `hold` bytes were kept back.
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.text[self.sent..].find(s.as_str()))
            .min();
        if let Some(at) = found {
            self.text.truncate(self.sent + at);
            self.stopped = true;
        }
        let mut upto = match self.stopped || end {
            true => self.text.len(),
            false => self.text.len().saturating_sub(self.hold).max(self.sent),
        };
        while !self.text.is_char_boundary(upto) {
            upto -= 1;
        }
        let out = self.text[self.sent..upto].to_string();
        self.sent = upto;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_tokenizer() -> Tokenizer {
        Tokenizer::from_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_b")).unwrap()
    }

    fn run(tok: &Tokenizer, text: &str, stops: &[&str]) -> (Vec<String>, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut d = Detok::new(tok, &stops);
        let mut out: Vec<String> = tok
            .encode(text, false)
            .unwrap()
            .into_iter()
            .map(|id| d.push(id))
            .collect();
        out.push(d.finish());
        (out, d.stopped())
    }

    #[test]
    fn deltas_join_to_the_decoded_text_and_are_whole_characters() {
        let tok = tiny_tokenizer();
        let text = "Héllo wörld 日本語 😀 done";
        let (deltas, stopped) = run(&tok, text, &[]);
        assert!(!stopped);
        assert_eq!(deltas.concat(), tok.decode(&tok.encode(text, false).unwrap(), true));
        assert!(deltas.iter().all(|d| !d.contains('\u{FFFD}')), "{deltas:?}");
    }

    #[test]
    fn stop_strings_cut_and_are_never_sent() {
        let tok = tiny_tokenizer();
        let (deltas, stopped) = run(&tok, "one two STOP three", &["STOP", "never"]);
        assert!(stopped);
        assert_eq!(deltas.concat(), "one two ");
        assert!(deltas.iter().all(|d| !d.contains('S')), "{deltas:?}");
        // A stop string split over tokens, and one that never arrives.
        let (deltas, stopped) = run(&tok, "abcdefgh", &["def"]);
        assert!(stopped);
        assert_eq!(deltas.concat(), "abc");
        let (deltas, stopped) = run(&tok, "abcdefgh", &["xyz"]);
        assert!(!stopped);
        assert_eq!(deltas.concat(), "abcdefgh");
    }

    #[test]
    fn markers_are_kept_other_specials_dropped() {
        let tok = tiny_tokenizer();
        let text = "<|im_start|>a<|tool_call_start|>[f(x=1)]<|tool_call_end|>b";
        let (deltas, _) = run(&tok, text, &[]);
        assert_eq!(deltas.concat(), "a<|tool_call_start|>[f(x=1)]<|tool_call_end|>b");
    }
}

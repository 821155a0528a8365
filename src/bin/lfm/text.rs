//! Streaming answers to the terminal or a pipe, and the `lfm chat` loop.

use crate::GenArgs;
use anyhow::Result;
use lfm_wgpu::chat::{ChatTemplate, Message, Role};
use lfm_wgpu::model::session::{GenStats, Session};
use lfm_wgpu::sampling::{SamplingParams, TokenConstraint};
use lfm_wgpu::tokenizer::Tokenizer;
use lfm_wgpu::{interrupt, Error};
use std::borrow::Cow;
use std::io::{BufRead, IsTerminal, Write};

/// Standard output for generated text: a closed pipe ends the answer quietly (no panic, exit
/// 0); on a terminal, control characters other than newline and tab are shown escaped
/// (`\x1b`), so model output cannot drive the terminal.
pub struct Out {
    escape: bool,
    /// The reader went away (`| head`): nothing more is written.
    pub closed: bool,
}

impl Out {
    /// `raw`: pass the bytes through even on a terminal.
    pub fn stdout(raw: bool) -> Self {
        Out {
            escape: !raw && std::io::stdout().is_terminal(),
            closed: false,
        }
    }

    /// Writes `text`; false once stdout is closed.
    pub fn write(&mut self, text: &str) -> bool {
        if self.closed {
            return false;
        }
        let text = match self.escape {
            true => escape_controls(text),
            false => Cow::Borrowed(text),
        };
        let mut out = std::io::stdout().lock();
        if out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_err() {
            // A broken pipe, or stdout otherwise unusable: stop writing, end the answer.
            self.closed = true;
        }
        !self.closed
    }
}

/// `text` with every control character except `\n` and `\t` written as an escape.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut s = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' | '\t' => s.push(c),
            c if (c as u32) < 0x80 && c.is_control() => s.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => s.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => s.push(c),
        }
    }
    Cow::Owned(s)
}

/// What one answer produced.
pub struct Answer {
    pub text: String,
    pub stats: GenStats,
}

/// Generates from `prompt` (fed after what the session holds), streaming text to `out`,
/// stopping at an end-of-sequence token, a stop string, `max_new_tokens`, a full context, a
/// closed stdout, or Ctrl-C (the session's cancel flag). The printed text never includes
/// the stop string.
pub fn answer(
    s: &mut Session,
    tok: &Tokenizer,
    prompt: &[u32],
    gen: &GenArgs,
    out: &mut Out,
    checkpoint: bool,
    constraint: Option<&mut dyn TokenConstraint>,
) -> lfm_wgpu::Result<Answer> {
    let mut stream = tok.stream(true);
    let mut text = String::new();
    let mut printed = 0;
    let hold = gen.stop.iter().map(|x| x.len()).max().unwrap_or(1).saturating_sub(1);
    let eos = tok.eos_ids().to_vec();
    let mut hit_stop = false;
    let mut on_token = |id| {
        if eos.contains(&id) || interrupt::requested() {
            return false;
        }
        if let Some(piece) = stream.push(id) {
            text.push_str(&piece);
        }
        // A stop string cannot start in what is printed: that was checked, with `hold` bytes
        // held back, when it arrived.
        if let Some(at) = gen.stop.iter().filter_map(|x| text[printed..].find(x.as_str())).min() {
            text.truncate(printed + at);
            hit_stop = true;
        }
        // Print all but what could still become a stop string.
        let mut upto = match hit_stop {
            true => text.len(),
            false => text.len().saturating_sub(hold),
        };
        while !text.is_char_boundary(upto) {
            upto -= 1;
        }
        if upto > printed {
            let open = out.write(&text[printed..upto]);
            printed = upto;
            if !open {
                return false;
            }
        }
        !hit_stop
    };
    let stats = match constraint {
        Some(c) => s.generate_constrained(prompt, gen.max_new_tokens, checkpoint, c, &mut on_token),
        None => s.generate(prompt, gen.max_new_tokens, checkpoint, &mut on_token),
    };
    let stats = match stats {
        Ok(st) => st,
        Err(e) => {
            // Keep what was answered on screen, then report.
            out.write(&text[printed..]);
            out.write("\n");
            return Err(e);
        }
    };
    if !hit_stop {
        text.push_str(&stream.finish());
    }
    out.write(&text[printed..]);
    Ok(Answer { text, stats })
}

pub fn print_stats(st: &GenStats, load_s: Option<f64>, params: &SamplingParams) {
    let load = load_s.map_or(String::new(), |l| format!("load {l:.2} s, "));
    let decoded = st.new_tokens.saturating_sub(1);
    eprintln!(
        "[{load}prefill {} tokens in {:.2} s ({:.1} tok/s), time to first token {:.2} s, \
         decode {} tokens in {:.2} s ({:.1} tok/s), seed {}]",
        st.prompt_tokens,
        st.prefill_s,
        st.prompt_tokens as f64 / st.prefill_s.max(1e-9),
        st.prefill_s,
        decoded,
        st.decode_s,
        decoded as f64 / st.decode_s.max(1e-9),
        params.seed
    );
}

const HELP: &str = "[commands: /reset (forget the conversation), /system TEXT (set the system message), \
/stats (speed of the last answer), /help, /exit (or Ctrl-D, or Ctrl-C at the prompt); Ctrl-C \
during an answer stops it; start a message with // to send one beginning with /]";

/// What a line typed at the chat prompt asks for.
#[derive(Debug, PartialEq)]
pub enum Input<'a> {
    Message(Cow<'a, str>),
    Exit,
    Reset,
    System(&'a str),
    Stats,
    Help,
    Unknown(&'a str),
    Empty,
}

pub fn parse_input(line: &str) -> Input<'_> {
    if line.trim().is_empty() {
        return Input::Empty;
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Input::Message(Cow::Owned(format!("/{rest}")));
    }
    if !line.starts_with('/') {
        return Input::Message(Cow::Borrowed(line));
    }
    let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
    match cmd {
        "/exit" | "/quit" => Input::Exit,
        "/reset" => Input::Reset,
        "/system" => Input::System(arg),
        "/stats" => Input::Stats,
        "/help" | "/?" => Input::Help,
        other => Input::Unknown(other),
    }
}

/// The interactive loop of `lfm chat` over a loaded session.
pub fn chat(
    s: &mut Session,
    tok: &Tokenizer,
    template: &ChatTemplate,
    system: Option<String>,
    gen: &GenArgs,
    banner: &str,
    load_s: f64,
) -> Result<()> {
    let params = gen.sampling();
    s.set_sampling(params.clone())?;
    s.set_cancel_flag(interrupt::flag());
    let tty = std::io::stdin().is_terminal();
    let mut out = Out::stdout(false);
    let mut msgs: Vec<Message> = system.iter().map(Message::system).collect();
    let mut last: Option<GenStats> = None;
    if tty {
        eprintln!("[{banner} loaded in {load_s:.1} s; /help for commands; Ctrl-C stops an answer]");
    }
    let mut stdin = std::io::stdin().lock();
    loop {
        // At the prompt Ctrl-C exits; while answering it stops the answer.
        interrupt::set_stoppable(false);
        if tty {
            eprint!("> ");
        }
        let mut bytes = Vec::new();
        if stdin.read_until(b'\n', &mut bytes)? == 0 {
            break;
        }
        let Ok(line) = String::from_utf8(bytes) else {
            eprintln!("[that line is not valid UTF-8 text; it was not sent]");
            continue;
        };
        let line = line.trim_end_matches(['\n', '\r']);
        let text = match parse_input(line) {
            Input::Empty => continue,
            Input::Exit => break,
            Input::Help => {
                eprintln!("{HELP}");
                continue;
            }
            Input::Unknown(cmd) => {
                eprintln!("[unknown command {cmd}; /help lists the commands; start with // to send a message beginning with /]");
                continue;
            }
            Input::Reset => {
                msgs.retain(|m| m.role == Role::System);
                s.reset();
                eprintln!("[conversation reset]");
                continue;
            }
            Input::System(text) => {
                msgs.retain(|m| m.role != Role::System);
                msgs.insert(0, Message::system(text));
                eprintln!("[system message set; it applies from the next answer]");
                continue;
            }
            Input::Stats => {
                match &last {
                    Some(st) => print_stats(st, Some(load_s), &params),
                    None => eprintln!("[no answer yet]"),
                }
                continue;
            }
            Input::Message(text) => text.into_owned(),
        };
        msgs.push(Message::user(text));
        let ids = match template.apply(tok, &msgs, None, true) {
            Ok(ids) => ids,
            Err(e) => {
                eprintln!("[{e}; the message was not sent]");
                msgs.pop();
                continue;
            }
        };
        // Reuse the cache: all of it when it holds a prefix of the rendered conversation,
        // else back to the end of the last prompt (the answer re-tokenized differently).
        let reused = s.reuse_prefix(&ids);
        let need = ids.len() - reused;
        if ids.len() >= s.state.ctx {
            eprintln!(
                "[the conversation ({} tokens) no longer fits the {}-token context: /reset to start over, or restart with a larger --ctx]",
                ids.len(),
                s.state.ctx
            );
            msgs.pop();
            continue;
        }
        interrupt::clear();
        interrupt::set_stoppable(true);
        let result = answer(s, tok, &ids[reused..], gen, &mut out, true, None);
        interrupt::set_stoppable(false);
        let stopped = interrupt::requested();
        interrupt::clear();
        let reply = match result {
            Ok(reply) => reply,
            Err(Error::Cancelled) => {
                // Stopped during the prefill: nothing was answered.
                eprintln!("[stopped]");
                msgs.pop();
                continue;
            }
            Err(e @ Error::NonFiniteLogits { .. }) => {
                eprintln!("[{e}; the conversation was reset]");
                msgs.retain(|m| m.role == Role::System);
                s.reset();
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        out.write("\n");
        if out.closed {
            break;
        }
        if stopped {
            eprintln!("[stopped]");
        }
        if gen.stats {
            eprintln!("[prefilled {need} tokens, reused {reused} cached]");
            print_stats(&reply.stats, None, &params);
        }
        if reply.stats.context_full {
            eprintln!("[the context of {} tokens is full: /reset to start over]", s.state.ctx);
        }
        msgs.push(Message::assistant(reply.text));
        last = Some(reply.stats);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_escaped() {
        assert_eq!(escape_controls("a\tb\nc"), "a\tb\nc");
        assert_eq!(escape_controls("\x1b[2J\x07\0x"), "\\x1b[2J\\x07\\x00x");
        assert_eq!(escape_controls("\u{9b}é"), "\\u{9b}é");
    }

    #[test]
    fn inputs() {
        assert_eq!(parse_input("/help"), Input::Help);
        assert_eq!(parse_input("/frobnicate x"), Input::Unknown("/frobnicate"));
        assert_eq!(parse_input("//etc/passwd?"), Input::Message("/etc/passwd?".into()));
        assert_eq!(parse_input("/system be brief"), Input::System("be brief"));
        assert_eq!(parse_input("  "), Input::Empty);
        assert_eq!(parse_input("hi"), Input::Message("hi".into()));
    }
}

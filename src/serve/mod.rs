//! `lfm serve`: an OpenAI-compatible HTTP server over one engine session (issue #12).
//!
//! - `toolcall`: the LFM2 tool-call parser; `output`: content / reasoning / tool-call split

pub mod output;
pub mod toolcall;

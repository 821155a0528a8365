//! `lfm serve`: the flags, and the model opened and checked here (as for `lfm chat`) before
//! the server (`lfm_wgpu::serve`) takes over; the weights load on its engine thread.

use crate::{load, open, text_of, LoadArgs};
use anyhow::Result;
use clap::Args;

/// Where and how to serve.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to bind (loopback unless told otherwise)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` (also LFM_API_KEY)
    #[arg(long)]
    api_key: Option<String>,
    /// Requests that may wait for the engine; more get 503 with Retry-After
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    queue: u32,
    /// Allow browser requests from this origin (`*` for any)
    #[arg(long)]
    cors: Option<String>,
    /// Seconds between SSE keep-alive comments while a stream waits (tests shorten it)
    #[arg(long, hide = true, default_value_t = lfm_wgpu::serve::routes::KEEP_ALIVE.as_secs_f64())]
    keep_alive: f64,
}

/// `lfm serve`: checks the model and its text side, then serves while the weights load on
/// the engine thread.
pub fn serve(l: LoadArgs, a: ServeArgs) -> Result<()> {
    anyhow::ensure!(
        a.keep_alive > 0.0 && a.keep_alive <= 3600.0,
        "--keep-alive must be within (0, 3600] seconds"
    );
    let m = open(&l)?;
    let (tok, template) = text_of(&m.files)?;
    let api_key = a
        .api_key
        .or_else(|| std::env::var("LFM_API_KEY").ok())
        .filter(|k| !k.is_empty());
    let opts = lfm_wgpu::serve::ServeOptions {
        host: a.host,
        port: a.port,
        api_key,
        ctx: l.ctx as usize,
        queue: a.queue as usize,
        cors: a.cors,
        model_id: l.model.clone(),
        vocab: m.vocab(),
        keep_alive: std::time::Duration::from_secs_f64(a.keep_alive),
    };
    let loader: lfm_wgpu::serve::engine::Loader = Box::new(move || match load(m, &l) {
        Ok((s, load_s)) => {
            eprintln!("[model loaded in {load_s:.1} s]");
            Ok(s)
        }
        Err(e) => Err(format!("{e:#}").into()),
    });
    lfm_wgpu::serve::serve(opts, tok, template, loader)?;
    Ok(())
}

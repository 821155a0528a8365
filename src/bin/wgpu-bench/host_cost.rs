//! Host cost per decode token: what the CPU spends encoding and submitting a token, how
//! long it is blocked waiting for the GPU, the GPU's own time (pass timestamps), and the
//! dispatches, passes and submissions a token takes — for one or several ways of cutting a
//! token into submissions. The encode and submit figures are also taken with the GPU idle
//! (each token read back before the next is recorded): on a CPU adapter the pipelined figures
//! share the cores with the "GPU" executing the previous token, which a real GPU does not,
//! and with warm caches (a step recorded repeatedly without submitting): on a CPU adapter the
//! "GPU" evicts the host's data between tokens, which a real GPU does not either.

use anyhow::Result;
use lfm_wgpu::model::session::{HostCostPerStep, Session, MAX_TIMED_STEPS};
use std::time::Instant;

/// The host cost of decoding with `submissions` submissions per token.
#[derive(Clone, Debug)]
pub struct HostReport {
    pub submissions: usize,
    pub per_token: HostCostPerStep,
    /// The same tokens decoded one at a time: host cost with nothing executing beside it.
    pub idle: HostCostPerStep,
    /// Recording and finishing a decode step, repeated without submitting (warm caches).
    pub warm_encode_s: f64,
    /// Mean GPU seconds per token (start of its first pass to the end of its last), when
    /// the adapter has timestamp queries.
    pub gpu_s: Option<f64>,
    /// Decode tokens/s of the run the figures come from.
    pub tok_s: f64,
    pub tokens: usize,
}

impl HostReport {
    pub fn json(&self) -> serde_json::Value {
        let p = &self.per_token;
        serde_json::json!({
            "submissions_per_token": self.submissions, "tokens": self.tokens, "tok_s": self.tok_s,
            "encode_s_per_token": p.encode_s, "submit_s_per_token": p.submit_s, "blocked_s_per_token": p.wait_s,
            "warm_encode_s_per_token": self.warm_encode_s,
            "idle_encode_s_per_token": self.idle.encode_s, "idle_submit_s_per_token": self.idle.submit_s,
            "gpu_s_per_token": self.gpu_s, "dispatches_per_token": p.dispatches,
            "passes_per_token": p.passes, "submits_per_token": p.submissions,
        })
    }

    /// One table row: submissions, t/s, warm encode ms, encode and submit-call ms (GPU
    /// idle, then pipelined), blocked ms, GPU ms, counts.
    pub fn row(&self) -> String {
        let p = &self.per_token;
        format!(
            "| {:>7} | {:>8.2} | {:>11.3} | {:>11.3} | {:>11.3} | {:>8.3} | {:>9.3} | {:>10.3} | {:>9} | {:>10.1} | {:>6.1} | {:>7.1} |",
            self.submissions,
            self.tok_s,
            self.warm_encode_s * 1e3,
            self.idle.encode_s * 1e3,
            self.idle.submit_s * 1e3,
            p.encode_s * 1e3,
            p.submit_s * 1e3,
            p.wait_s * 1e3,
            self.gpu_s.map_or("-".into(), |g| format!("{:.3}", g * 1e3)),
            p.dispatches,
            p.passes,
            p.submissions
        )
    }

    pub const HEADER: &'static str =
        "| submits |      t/s | warm encode | idle encode | idle submit |   encode |  submit() |    blocked |       GPU | dispatches | passes | submits |\n\
         | ------: | -------: | ----------: | ----------: | ----------: | -------: | --------: | ---------: | --------: | ---------: | -----: | ------: |";
}

/// Decode steps recorded for the warm-cache encode figure.
const WARM_REPS: usize = 200;

/// Decodes `n` tokens after `prompt` with each of `submissions` settings (the session is
/// reset for each) and returns their host cost; the GPU time comes from a second run of
/// the same tokens with pass timestamps armed, so the timestamps do not add to the host
/// figures. Leaves the session at the first setting.
pub fn measure(s: &mut Session, prompt: &[u32], n: usize, submissions: &[usize]) -> Result<Vec<HostReport>> {
    let n = n.clamp(1, MAX_TIMED_STEPS as usize);
    let mut out = Vec::new();
    for &k in submissions {
        s.set_decode_submissions(k)?;
        s.reset();
        s.prefill(prompt, false)?;
        s.reset_host_cost(false);
        let mut ids = Vec::with_capacity(n);
        let t = Instant::now();
        s.decode_chained(n, &mut ids)?;
        let tok_s = n as f64 / t.elapsed().as_secs_f64();
        let per_token = s.host_cost().per_step();
        // One token at a time: each is read back before the next is recorded.
        s.reset();
        s.prefill(prompt, false)?;
        s.reset_host_cost(false);
        for _ in 0..n {
            s.decode(None, false)?;
        }
        let idle = s.host_cost().per_step();
        let warm_encode_s = s.decode_encode_seconds(WARM_REPS)?;
        s.reset();
        s.prefill(prompt, false)?;
        s.reset_host_cost(true);
        s.decode_chained(n, &mut ids)?;
        let gpu_s = s
            .gpu_step_seconds()?
            .filter(|g| !g.is_empty())
            .map(|g| g.iter().sum::<f64>() / g.len() as f64);
        out.push(HostReport {
            submissions: k,
            per_token,
            idle,
            warm_encode_s,
            gpu_s,
            tok_s,
            tokens: n,
        });
    }
    if let Some(&first) = submissions.first() {
        s.set_decode_submissions(first)?;
    }
    s.reset();
    Ok(out)
}

/// Parses `--submits 1,2,4`.
pub fn parse_list(list: &str) -> Result<Vec<usize>> {
    let v = list
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .ok()
                .filter(|k| (1..=16).contains(k))
                .ok_or_else(|| anyhow::anyhow!("--submits: {x:?} is not a count of 1..=16"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(v)
}

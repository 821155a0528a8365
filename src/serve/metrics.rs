//! Server metrics in the Prometheus text format (`GET /metrics`): requests by route and
//! status, prompt / prefilled / generated tokens, prefill and decode speed, queue depth, and
//! time to first token as a histogram (from the request's arrival to its first token).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds (seconds) of the time-to-first-token buckets.
const TTFT_BUCKETS: [f64; 12] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// What one finished generation adds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Generation {
    /// Tokens of the whole prompt.
    pub prompt_tokens: usize,
    /// Tokens actually prefilled (the rest came from the KV cache).
    pub prefilled: usize,
    pub generated: usize,
    pub prefill_s: f64,
    pub decode_s: f64,
}

#[derive(Default)]
struct Inner {
    /// (route, status) → count.
    requests: BTreeMap<(String, u16), u64>,
    gens: Generation,
    last_prefill_tps: f64,
    last_decode_tps: f64,
    /// Cumulative counts per bucket of `TTFT_BUCKETS`, then the count and sum.
    ttft_buckets: [u64; TTFT_BUCKETS.len()],
    ttft_count: u64,
    ttft_sum: f64,
    cancelled: u64,
}

/// Shared between the handlers and the engine thread.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // A panic elsewhere while holding the lock leaves counters that are still usable.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Counts a response. `route` is one of the server's paths, or "other".
    pub fn request(&self, route: &str, status: u16) {
        self.with(|m| *m.requests.entry((route.to_string(), status)).or_default() += 1);
    }

    pub fn time_to_first_token(&self, seconds: f64) {
        self.with(|m| {
            for (b, le) in m.ttft_buckets.iter_mut().zip(TTFT_BUCKETS) {
                if seconds <= le {
                    *b += 1;
                }
            }
            m.ttft_count += 1;
            m.ttft_sum += seconds;
        });
    }

    pub fn generation(&self, g: Generation) {
        self.with(|m| {
            let t = &mut m.gens;
            t.prompt_tokens += g.prompt_tokens;
            t.prefilled += g.prefilled;
            t.generated += g.generated;
            t.prefill_s += g.prefill_s;
            t.decode_s += g.decode_s;
            if g.prefill_s > 0.0 && g.prefilled > 0 {
                m.last_prefill_tps = g.prefilled as f64 / g.prefill_s;
            }
            let decoded = g.generated.saturating_sub(1);
            if g.decode_s > 0.0 && decoded > 0 {
                m.last_decode_tps = decoded as f64 / g.decode_s;
            }
        });
    }

    /// A request whose client left before it finished.
    pub fn cancelled(&self) {
        self.with(|m| m.cancelled += 1);
    }

    /// Tokens prefilled so far (tests read it through the text as well).
    pub fn prefilled_total(&self) -> usize {
        self.with(|m| m.gens.prefilled)
    }

    /// The text format. `queue`: requests waiting; `busy`: one running.
    pub fn render(&self, queue: usize, busy: bool) -> String {
        self.with(|m| {
            let mut s = String::new();
            let requests: Vec<(String, String)> = m
                .requests
                .iter()
                .map(|((route, status), n)| (format!("{{route=\"{route}\",status=\"{status}\"}}"), n.to_string()))
                .collect();
            family(
                &mut s,
                "requests_total",
                "counter",
                "HTTP responses by route and status.",
                &requests,
            );
            let g = &m.gens;
            let scalars: [(&str, &str, &str, String); 10] = [
                (
                    "prompt_tokens_total",
                    "counter",
                    "Prompt tokens of finished generations.",
                    g.prompt_tokens.to_string(),
                ),
                (
                    "prefilled_tokens_total",
                    "counter",
                    "Prompt tokens prefilled (not reused from the KV cache).",
                    g.prefilled.to_string(),
                ),
                (
                    "generated_tokens_total",
                    "counter",
                    "Tokens generated.",
                    g.generated.to_string(),
                ),
                (
                    "prefill_seconds_total",
                    "counter",
                    "Time spent prefilling.",
                    g.prefill_s.to_string(),
                ),
                (
                    "decode_seconds_total",
                    "counter",
                    "Time spent decoding.",
                    g.decode_s.to_string(),
                ),
                (
                    "prefill_tokens_per_second",
                    "gauge",
                    "Prefill speed of the last generation.",
                    m.last_prefill_tps.to_string(),
                ),
                (
                    "decode_tokens_per_second",
                    "gauge",
                    "Decode speed of the last generation.",
                    m.last_decode_tps.to_string(),
                ),
                (
                    "queue_depth",
                    "gauge",
                    "Requests waiting for the engine.",
                    queue.to_string(),
                ),
                (
                    "busy",
                    "gauge",
                    "1 while the engine runs a request.",
                    u8::from(busy).to_string(),
                ),
                (
                    "cancelled_total",
                    "counter",
                    "Requests whose client went away before the end.",
                    m.cancelled.to_string(),
                ),
            ];
            for (name, kind, help, value) in scalars {
                family(&mut s, name, kind, help, &[(String::new(), value)]);
            }
            let mut buckets: Vec<(String, String)> = TTFT_BUCKETS
                .iter()
                .zip(m.ttft_buckets)
                .map(|(le, n)| (format!("_bucket{{le=\"{le}\"}}"), n.to_string()))
                .collect();
            buckets.push(("_bucket{le=\"+Inf\"}".into(), m.ttft_count.to_string()));
            buckets.push(("_sum".into(), m.ttft_sum.to_string()));
            buckets.push(("_count".into(), m.ttft_count.to_string()));
            let help = "From a request's arrival to its first generated token.";
            family(&mut s, "time_to_first_token_seconds", "histogram", help, &buckets);
            s
        })
    }
}

/// One metric family: HELP, TYPE, then `lfm_NAME{suffix} value` per line.
fn family(s: &mut String, name: &str, kind: &str, help: &str, lines: &[(String, String)]) {
    let _ = writeln!(s, "# HELP lfm_{name} {help}\n# TYPE lfm_{name} {kind}");
    for (suffix, value) in lines {
        let _ = writeln!(s, "lfm_{name}{suffix} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let m = Metrics::default();
        m.request("/v1/chat/completions", 200);
        m.request("/v1/chat/completions", 200);
        m.request("other", 404);
        m.time_to_first_token(0.3);
        m.time_to_first_token(7.0);
        m.generation(Generation {
            prompt_tokens: 10,
            prefilled: 4,
            generated: 5,
            prefill_s: 2.0,
            decode_s: 1.0,
        });
        let t = m.render(3, true);
        assert!(
            t.contains("lfm_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("lfm_requests_total{route=\"other\",status=\"404\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("lfm_prefilled_tokens_total 4\n"), "{t}");
        assert!(t.contains("lfm_prefill_tokens_per_second 2\n"), "{t}");
        assert!(t.contains("lfm_decode_tokens_per_second 4\n"), "{t}");
        assert!(t.contains("lfm_queue_depth 3\n"), "{t}");
        assert!(
            t.contains("lfm_time_to_first_token_seconds_bucket{le=\"0.25\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("lfm_time_to_first_token_seconds_bucket{le=\"0.5\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("lfm_time_to_first_token_seconds_bucket{le=\"10\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("lfm_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("lfm_time_to_first_token_seconds_count 2\n"), "{t}");
        assert!(t.contains("# TYPE lfm_time_to_first_token_seconds histogram\n"), "{t}");
    }
}

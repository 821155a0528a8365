//! The CPU reference forward against transformers (float32): prefill logits, the residual
//! stream after every layer, and step-by-step decode with its caches — for every fixture,
//! on the checkpoint's weights and on the same weights rounded to f16.

mod common;

use common::*;
use lfm_wgpu::dtype::DType;
use lfm_wgpu::model::weights::Checkpoint;
use lfm_wgpu::reference::Reference;

fn check(name: &str, round_f16: bool) {
    let r = reference(name);
    let ckpt = Checkpoint::open(&fixture_dir(name)).unwrap();
    let m = Reference::load(&ckpt, if round_f16 { DType::F16 } else { DType::F32 }).unwrap();
    let (want_prefill, want_steps, greedy) = match round_f16 {
        false => (&r.prefill_logits, &r.step_logits, &r.greedy),
        true => (&r.prefill_logits_f16w, &r.step_logits_f16w, &r.greedy_f16w),
    };
    // Same bound as the engine: 1e-3 × the largest |logit|; f32 CPU vs f32 torch differ only
    // by summation order (observed ~1e-5).
    let tol = 1e-3 * max_abs(want_prefill);

    let mut st = m.new_state();
    let mut hidden = Vec::new();
    let logits = m.forward(&mut st, &r.prompt, Some(&mut hidden));
    let d = assert_close(
        &format!("{name} (f16 {round_f16}): CPU prefill"),
        &logits,
        want_prefill,
        tol,
    );

    if !round_f16 {
        // HF's hidden_states: entry 0 = embeddings, entry j = output of layer j−1 for
        // j < L; the last entry is after the final norm (compared through the logits).
        let per = r.prompt.len() * m.cfg.hidden_size;
        for (j, hs) in hidden.iter().take(m.cfg.num_layers()).enumerate() {
            let want = &r.hidden_states[j * per..(j + 1) * per];
            assert_close(&format!("{name}: hidden state {j}"), hs, want, 1e-3 * max_abs(want));
        }
    }

    // Decode: the prompt, then each greedy token alone, continuing from the caches.
    let mut st = m.new_state();
    let v = m.cfg.vocab_size;
    let logits = m.forward(&mut st, &r.prompt, None);
    let mut steps = logits[(r.prompt.len() - 1) * v..].to_vec();
    for &t in &greedy[..greedy.len() - 1] {
        steps.extend(m.forward(&mut st, &[t], None));
    }
    let ds = assert_close(
        &format!("{name} (f16 {round_f16}): CPU decode"),
        &steps,
        want_steps,
        tol,
    );
    eprintln!("{name} f16-rounded={round_f16}: CPU max |Δ| prefill {d:.2e}, decode {ds:.2e} (tol {tol:.2e})");
}

#[test]
fn cpu_reference_matches_transformers() {
    for name in FIXTURES {
        check(name, false);
    }
}

#[test]
fn cpu_reference_matches_transformers_on_f16_weights() {
    for name in FIXTURES {
        check(name, true);
    }
}

#[test]
fn negative_control_expert_bias_matters() {
    // The fixtures are sensitive: dropping the selection bias moves the logits far past the
    // tolerance (a test that cannot fail proves nothing).
    let r = reference("tiny_a");
    let ckpt = Checkpoint::open(&fixture_dir("tiny_a")).unwrap();
    let mut m = Reference::load(&ckpt, DType::F32).unwrap();
    for l in &mut m.w.layers {
        if let lfm_wgpu::model::weights::Ffn::Moe { expert_bias, .. } = &mut l.ffn {
            *expert_bias = None;
        }
    }
    let mut st = m.new_state();
    let logits = m.forward(&mut st, &r.prompt, None);
    let max_diff = logits
        .iter()
        .zip(&r.prefill_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        max_diff > 0.1,
        "ignoring expert_bias changed the logits by only {max_diff}"
    );
}

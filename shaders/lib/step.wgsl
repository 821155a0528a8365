// Per-submission values shared by every dispatch of a step (written once per step).
struct Step {
    n_tokens: u32,    // tokens in this step (T)
    pos0: u32,        // absolute position of the step's first token
    attn_splits: u32, // splits of the KV length in decode attention
    _pad: u32,
}
@group(0) @binding(0) var<uniform> step: Step;

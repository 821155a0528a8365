// The interface both attention kernels share (attention.wgsl for decode, attention_prefill.wgsl
// for prefill): parameters, q [T, nh·d] and the caches [ctx, nkv, d]; binding 5 is each
// kernel's output.
const DPT: u32 = 4u; // output dims per thread: d ≤ WG·DPT
const NEG: f32 = -1.0e30;
struct Params {
    nh: u32,
    nkv: u32,
    d: u32,
    scale: f32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k_cache: array<KV_T>;
@group(0) @binding(4) var<storage, read> v_cache: array<KV_T>;

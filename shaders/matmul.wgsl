// Tiled GEMM for prefill (interface in lib/linear.wgsl): a workgroup computes BM = 16·TM rows
// (tokens or pairs) × BN = 64 output columns, K in steps of BK = 16 through workgroup
// memory (weights dequantized on the way in), f32 accumulation. Each thread keeps a TM × 4
// register tile (TM × 4 more for the up projection with GLU): per k it reads TM values of x
// (one vec4 load) and one vec4 of W from workgroup memory for 4·TM (8·TM) FMAs. TM = 4 for
// dense projections (64-row tiles), 2 for routed experts (32-row tiles: an expert gets fewer
// rows).
// Grid (ceil(n/64), ceil(T/BM), GATHER ? ne : 1). In GATHER mode a workgroup takes rows
// [BM·y, BM·y+BM) of expert (e0 + z)'s pair list and exits when the expert has fewer, so
// work follows the tokens each expert received.
override TM: u32 = 2u;
override BM: u32 = 16u * TM;
const BN: u32 = 64u;
const BK: u32 = 16u;

// xs[k·16 + i] (xs2 when TM = 2) = x rows TM·i … TM·i + TM − 1 at column k;
// ws[k·16 + j] = W rows 4j..4j+3 at column k.
var<workgroup> xs: array<vec4<f32>, 256>; // BK · 16 (TM = 4)
var<workgroup> xs2: array<vec2<f32>, 256>; // the same for TM = 2 (half the bytes per read)
var<workgroup> ws: array<vec4<f32>, 256>; // BK · BN/4
var<workgroup> wus: array<vec4<f32>, 256>;
var<workgroup> xrow_of: array<u32, 64>; // BM ≤ 64
var<workgroup> yrow_of: array<u32, 64>;
var<workgroup> rows_here: u32;

fn put_x(at: u32, h: u32, v: f32) {
    if TM == 4u {
        xs[at][h] = v;
    } else {
        xs2[at][h] = v;
    }
}

fn put_w(r: u32, c: u32, v: W8, up: bool) {
    let a = array<f32, 8>(v.lo.x, v.lo.y, v.lo.z, v.lo.w, v.hi.x, v.hi.y, v.hi.z, v.hi.w);
    let j = r / 4u;
    let q = r % 4u;
    for (var i = 0u; i < 8u; i++) {
        if up {
            wus[(c + i) * 16u + j][q] = a[i];
        } else {
            ws[(c + i) * 16u + j][q] = a[i];
        }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tx = lid % 16u; // columns 4tx..4tx+3 of the tile
    let ty = lid / 16u; // rows TM·ty … TM·ty + TM − 1 of the tile
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    let e = p.e0 + wg.z;
    var wrow0 = 0u;
    if GATHER {
        wrow0 = wg.z * p.n_per_e;
    }
    // Resolve this tile's rows (x row and y row of each of the BM rows).
    if lid < BM {
        var xr = 0xffffffffu;
        var yr = 0xffffffffu;
        let m = m0 + lid;
        if GATHER {
            let start = route_a[e];
            let count = route_a[e + 1u] - start;
            if m < count {
                let pair = route_b[start + m];
                xr = pair / p.xdiv;
                yr = pair;
            }
            if lid == 0u {
                rows_here = count;
            }
        } else {
            if m < step.n_tokens {
                xr = m;
                yr = m;
            }
            if lid == 0u {
                rows_here = step.n_tokens;
            }
        }
        xrow_of[lid] = xr;
        yrow_of[lid] = yr;
    }
    let total = workgroupUniformLoad(&rows_here);
    if m0 >= total {
        return;
    }

    let live = m0 + TM * ty < total;
    // Row i of the thread's tile: acc_i (gate / plain), up_i (up projection); TM of them used.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var up0 = vec4<f32>(0.0);
    var up1 = vec4<f32>(0.0);
    var up2 = vec4<f32>(0.0);
    var up3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        if lid < BM * 4u {
            // x tile: BM × BK floats, one vec4 per thread of the first BM·4.
            let r = lid / 4u;
            let c4 = lid % 4u;
            let xr = xrow_of[r];
            var v = vec4<f32>(0.0);
            if xr != 0xffffffffu && k0 + 4u * c4 < p.k {
                v = x[(xr * p.ldx + k0) / 4u + c4];
            }
            let i = r / TM;
            let h = r % TM;
            for (var j = 0u; j < 4u; j++) {
                put_x((4u * c4 + j) * 16u + i, h, v[j]);
            }
        }
        // W tile: BN rows × BK/8 groups of 8; the first half loads W, the second W_up (or
        // also W when there is no up projection).
        {
            let is_up = GLU && lid >= 128u;
            let t = lid % 128u;
            let r = t / 2u;
            let c = (t % 2u) * 8u;
            if GLU || lid < 128u {
                let n = n0 + r;
                var v = W8(vec4<f32>(0.0), vec4<f32>(0.0));
                if n < p.n && k0 + c < p.k {
                    let e8 = (wrow0 + n) * p.k + k0 + c;
                    if is_up {
                        v = load8_w_up(e8);
                    } else {
                        v = load8_w(e8);
                    }
                }
                put_w(r, c, v, is_up);
            }
        }
        workgroupBarrier();
        // Threads whose rows are past the tile's last real row (an expert with few tokens)
        // skip the FMAs; lanes sharing ty are neighbours, so whole subgroups skip together.
        for (var k = 0u; k < BK * u32(live); k++) {
            var xv: vec4<f32>;
            if TM == 4u {
                xv = xs[k * 16u + ty];
            } else {
                xv = vec4<f32>(xs2[k * 16u + ty], 0.0, 0.0);
            }
            let wv = ws[k * 16u + tx];
            acc0 += xv.x * wv;
            acc1 += xv.y * wv;
            if TM == 4u {
                acc2 += xv.z * wv;
                acc3 += xv.w * wv;
            }
            if GLU {
                let wu = wus[k * 16u + tx];
                up0 += xv.x * wu;
                up1 += xv.y * wu;
                if TM == 4u {
                    up2 += xv.z * wu;
                    up3 += xv.w * wu;
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        let yr = yrow_of[TM * ty + i];
        if yr == 0xffffffffu {
            continue;
        }
        var a = acc0;
        var u = up0;
        switch i {
            case 1u: {
                a = acc1;
                u = up1;
            }
            case 2u: {
                a = acc2;
                u = up2;
            }
            case 3u: {
                a = acc3;
                u = up3;
            }
            default: {}
        }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + 4u * tx + j;
            if n < p.n {
                store(yr, yr, p.col0 + n, a[j], u[j]);
            }
        }
    }
}

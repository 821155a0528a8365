// Tiled GEMM for prefill (interface in lib/linear.wgsl): a workgroup computes BM = 32 rows
// (tokens or pairs) × BN = 64 output columns, K in steps of BK = 16 through workgroup
// memory (weights dequantized on the way in), f32 accumulation. Each thread keeps a 2 × 4
// register tile (2 × 4 more for the up projection with GLU): per k it reads one vec2 of x
// and one vec4 of W from workgroup memory for 8 (16) FMAs.
// Grid (ceil(n/64), ceil(T/32), GATHER ? ne : 1). In GATHER mode a workgroup takes rows
// [32·y, 32·y+32) of expert (e0 + z)'s pair list and exits when the expert has fewer, so
// work follows the tokens each expert received.
const BM: u32 = 32u;
const BN: u32 = 64u;
const BK: u32 = 16u;

// xs[k·16 + i] = x rows (2i, 2i+1) at column k; ws[k·16 + j] = W rows 4j..4j+3 at column k.
var<workgroup> xs: array<vec2<f32>, 256>; // BK · BM/2
var<workgroup> ws: array<vec4<f32>, 256>; // BK · BN/4
var<workgroup> wus: array<vec4<f32>, 256>;
var<workgroup> xrow_of: array<u32, BM>;
var<workgroup> yrow_of: array<u32, BM>;
var<workgroup> rows_here: u32;

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
    let ty = lid / 16u; // rows 2ty, 2ty+1 of the tile
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

    let live = m0 + 2u * ty < total;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var up0 = vec4<f32>(0.0);
    var up1 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        if lid < 128u {
            // x tile: BM × BK floats, one vec4 per thread of the first half.
            let r = lid / 4u;
            let c4 = lid % 4u;
            let xr = xrow_of[r];
            var v = vec4<f32>(0.0);
            if xr != 0xffffffffu && k0 + 4u * c4 < p.k {
                v = x[(xr * p.ldx + k0) / 4u + c4];
            }
            let i = r / 2u;
            let h = r % 2u;
            xs[(4u * c4) * 16u + i][h] = v.x;
            xs[(4u * c4 + 1u) * 16u + i][h] = v.y;
            xs[(4u * c4 + 2u) * 16u + i][h] = v.z;
            xs[(4u * c4 + 3u) * 16u + i][h] = v.w;
        }
        // W tile: BN rows × BK/8 groups of 8; the first half loads W, the second W_up (or
        // also W when there is no up projection).
        {
            let up = GLU && lid >= 128u;
            let t = lid % 128u;
            let r = t / 2u;
            let c = (t % 2u) * 8u;
            if GLU || lid < 128u {
                let n = n0 + r;
                var v = W8(vec4<f32>(0.0), vec4<f32>(0.0));
                if n < p.n && k0 + c < p.k {
                    let e8 = (wrow0 + n) * p.k + k0 + c;
                    if up {
                        v = load8_w_up(e8);
                    } else {
                        v = load8_w(e8);
                    }
                }
                put_w(r, c, v, up);
            }
        }
        workgroupBarrier();
        // Threads whose rows are past the tile's last real row (an expert with few tokens)
        // skip the FMAs; lanes sharing ty are neighbours, so whole subgroups skip together.
        for (var k = 0u; k < BK * u32(live); k++) {
            let xv = xs[k * 16u + ty];
            let wv = ws[k * 16u + tx];
            acc0 += xv.x * wv;
            acc1 += xv.y * wv;
            if GLU {
                let wu = wus[k * 16u + tx];
                up0 += xv.x * wu;
                up1 += xv.y * wu;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 2u; i++) {
        let yr = yrow_of[2u * ty + i];
        if yr == 0xffffffffu {
            continue;
        }
        var a = acc0;
        var u = up0;
        if i == 1u {
            a = acc1;
            u = up1;
        }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + 4u * tx + j;
            if n < p.n {
                store(yr, yr, p.col0 + n, a[j], u[j]);
            }
        }
    }
}

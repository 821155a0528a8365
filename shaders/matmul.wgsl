// Tiled GEMM for prefill (interface in lib/linear.wgsl): 32 rows × 32 columns per
// workgroup, K in steps of 32 through workgroup memory (weights dequantized on the way in),
// f32 accumulation, 2×2 outputs per thread.
// Grid (ceil(n/32), ceil(T/32), GATHER ? ne : 1). In GATHER mode a workgroup takes rows
// [32·y, 32·y+32) of expert (e0 + z)'s pair list and exits when the expert has fewer.
const BM: u32 = 32u;
const BN: u32 = 32u;
const BK: u32 = 32u;

var<workgroup> xs: array<array<f32, BK>, BM>;
var<workgroup> ws: array<array<f32, BK>, BN>;
var<workgroup> wus: array<array<f32, BK>, BN>;
var<workgroup> xrow_of: array<u32, BM>;
var<workgroup> yrow_of: array<u32, BM>;
var<workgroup> rows_here: u32;

fn put8(r: u32, c: u32, v: W8, up: bool) {
    let a = array<f32, 8>(v.lo.x, v.lo.y, v.lo.z, v.lo.w, v.hi.x, v.hi.y, v.hi.z, v.hi.w);
    for (var i = 0u; i < 8u; i++) {
        if up {
            wus[r][c + i] = a[i];
        } else {
            ws[r][c + i] = a[i];
        }
    }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tx = lid3.x;
    let ty = lid3.y;
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

    var acc: array<array<f32, 2>, 2>;
    var acc_up: array<array<f32, 2>, 2>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // x tile: BM × BK floats, one vec4 per thread.
        {
            let r = lid / (BK / 4u);
            let c4 = lid % (BK / 4u);
            let xr = xrow_of[r];
            var v = vec4<f32>(0.0);
            if xr != 0xffffffffu && k0 + 4u * c4 < p.k {
                v = x[(xr * p.ldx + k0) / 4u + c4];
            }
            xs[r][4u * c4] = v.x;
            xs[r][4u * c4 + 1u] = v.y;
            xs[r][4u * c4 + 2u] = v.z;
            xs[r][4u * c4 + 3u] = v.w;
        }
        // W tile: BN rows × BK/8 groups of 8, one group per thread of the first 128.
        if lid < BN * (BK / 8u) {
            let r = lid / (BK / 8u);
            let c = (lid % (BK / 8u)) * 8u;
            let n = n0 + r;
            var v = W8(vec4<f32>(0.0), vec4<f32>(0.0));
            var vu = v;
            if n < p.n && k0 + c < p.k {
                let e8 = (wrow0 + n) * p.k + k0 + c;
                v = load8_w(e8);
                if GLU {
                    vu = load8_w_up(e8);
                }
            }
            put8(r, c, v, false);
            if GLU {
                put8(r, c, vu, true);
            }
        }
        workgroupBarrier();
        for (var c = 0u; c < BK; c++) {
            for (var i = 0u; i < 2u; i++) {
                let xv = xs[ty + 16u * i][c];
                for (var j = 0u; j < 2u; j++) {
                    acc[i][j] += xv * ws[tx + 16u * j][c];
                    if GLU {
                        acc_up[i][j] += xv * wus[tx + 16u * j][c];
                    }
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 2u; i++) {
        let r = ty + 16u * i;
        let yr = yrow_of[r];
        if yr == 0xffffffffu {
            continue;
        }
        for (var j = 0u; j < 2u; j++) {
            let n = n0 + tx + 16u * j;
            if n < p.n {
                store(yr, yr, p.col0 + n, acc[i][j], acc_up[i][j]);
            }
        }
    }
}

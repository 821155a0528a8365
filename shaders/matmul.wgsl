// Tiled GEMM for prefill (interface in lib/linear.wgsl): 32 rows × 32 columns per
// workgroup, K in steps of 16 through workgroup memory, f32 accumulation, 2×2 per thread.
// Grid (ceil(n/32), ceil(T/32), GATHER ? ne : 1). In GATHER mode a workgroup takes rows
// [32·y, 32·y+32) of expert (e0 + z)'s pair list and exits when the expert has fewer.
const BM: u32 = 32u;
const BN: u32 = 32u;
const BK: u32 = 16u;

var<workgroup> xs: array<array<f32, BK>, BM>;
var<workgroup> ws: array<array<f32, BK>, BN>;
var<workgroup> wus: array<array<f32, BK>, BN>;
var<workgroup> xrow_of: array<u32, BM>;
var<workgroup> yrow_of: array<u32, BM>;
var<workgroup> rows_here: u32;

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
    let kp = p.k / 2u;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // x tile: BM × BK floats, two per thread.
        for (var j = 0u; j < 2u; j++) {
            let idx = lid * 2u + j;
            let r = idx / BK;
            let c = idx % BK;
            let xr = xrow_of[r];
            var v = 0.0;
            if xr != 0xffffffffu && k0 + c < p.k {
                v = x[xr * p.ldx + k0 + c];
            }
            xs[r][c] = v;
        }
        // W tile: BN rows × BK/2 pairs, one pair per thread.
        {
            let r = lid / (BK / 2u);
            let c2 = lid % (BK / 2u);
            let n = n0 + r;
            var v = vec2<f32>(0.0);
            var vu = vec2<f32>(0.0);
            if n < p.n && k0 + 2u * c2 < p.k {
                let i = (wrow0 + n) * kp + k0 / 2u + c2;
                v = W_load(w[i]);
                if GLU {
                    vu = W_load(w_up[i]);
                }
            }
            ws[r][2u * c2] = v.x;
            ws[r][2u * c2 + 1u] = v.y;
            wus[r][2u * c2] = vu.x;
            wus[r][2u * c2 + 1u] = vu.y;
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

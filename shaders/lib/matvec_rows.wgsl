// What the decode mat-vecs (matvec.wgsl, matvec_q8.wgsl) share: each workgroup computes R
// output columns of one row (token, or (token, slot) pair with GATHER; with COMBINE a token
// summing its topk slots); which x row and weight rows a slot reads; and the end — the R (2R
// with GLU) partial sums of each thread reduced per subgroup (subgroupAdd; without subgroups
// each thread is its own slot), meeting in workgroup memory behind a single barrier.
// R (8, or 1 for the narrow variant) is set by the assembler.
const WG: u32 = 64u;

var<workgroup> partial: array<array<f32, WG>, 2u * R + 1u>; // [2R + 1][WG]: row sums, then Σx² (NORM)

// One slot of a workgroup's row: its x row, its first weight row, its routing weight (COMBINE
// with SCALE), and whether its expert is in this weight chunk (GATHER reads only those).
struct Slot {
    xrow: u32,
    wrow0: u32,
    weight: f32,
    here: bool,
}

fn slots() -> u32 {
    return select(1u, p.topk, COMBINE);
}

fn slot_of(row: u32, slot_i: u32) -> Slot {
    let pair = select(row, row * p.topk + slot_i, COMBINE);
    var s = Slot(pair, 0u, 1.0, true);
    if GATHER {
        let e = route_a[pair];
        s.here = e >= p.e0 && e < p.e0 + p.ne;
        s.xrow = pair / p.xdiv;
        s.wrow0 = (e - p.e0) * p.n_per_e;
        if COMBINE && SCALE {
            s.weight = route_w[pair];
        }
    }
    return s;
}

// R zeros, written out: a slot's partial sums start from them (not every compiler re-initialises
// a loop-body `var`).
fn zero_rows() -> array<f32, R> {
    var z: array<f32, R>;
    for (var r = 0u; r < R; r++) {
        z[r] = 0.0;
    }
    return z;
}

// The workgroup's sums of acc (and acc_up; Σx² = ss with NORM, whose 1/rms scales them), stored
// as the R outputs from column n0 of `row`.
fn finish(lane: Lane, row: u32, n0: u32, acc: array<f32, R>, acc_up: array<f32, R>, ss: f32) {
    let leader = sg_leader(lane);
    let slot = sg_slot(lane);
    for (var r = 0u; r < R; r++) {
        let s = sg_sum(acc[r]);
        if leader {
            partial[r][slot] = s;
        }
        if GLU {
            let su = sg_sum(acc_up[r]);
            if leader {
                partial[R + r][slot] = su;
            }
        }
    }
    if NORM {
        let t = sg_sum(ss);
        if leader {
            partial[2u * R][slot] = t;
        }
    }
    workgroupBarrier();
    let lid = lane.id;
    if lid < R && n0 + lid < p.n {
        var s = 0.0;
        var su = 0.0;
        var sq = 0.0;
        for (var i = 0u; i < sg_slots(lane); i++) {
            if NORM {
                sq += partial[2u * R][i];
            }
            s += partial[lid][i];
            if GLU {
                su += partial[R + lid][i];
            }
        }
        if NORM {
            // W·(x ⊙ g) is linear in x: the 1/rms factor applies to the sums.
            let r = 1.0 / sqrt(sq / f32(p.k) + p.eps);
            s *= r;
            su *= r;
        }
        store(row, row, p.col0 + n0 + lid, s, su);
    }
}

// Workgroup reductions: subgroup ops, then one value per subgroup through workgroup memory.
struct Lane {
    @builtin(local_invocation_index) id: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) num_sg: u32,
}
var<workgroup> red_buf: array<f32, WG>;

fn wg_sum(v: f32, lane: Lane) -> f32 {
    let s = subgroupAdd(v);
    workgroupBarrier();
    if lane.sg_lane == 0u {
        red_buf[lane.sg_id] = s;
    }
    workgroupBarrier();
    var t = 0.0;
    for (var i = 0u; i < lane.num_sg; i++) {
        t += red_buf[i];
    }
    return t;
}

fn wg_max(v: f32, lane: Lane) -> f32 {
    let s = subgroupMax(v);
    workgroupBarrier();
    if lane.sg_lane == 0u {
        red_buf[lane.sg_id] = s;
    }
    workgroupBarrier();
    var t = red_buf[0];
    for (var i = 1u; i < lane.num_sg; i++) {
        t = max(t, red_buf[i]);
    }
    return t;
}

// For kernels reducing several values per thread at once: each subgroup's sum of v, written by
// its leader into slot sg_slot (of sg_slots), then summed over the slots by whoever needs it.
fn sg_sum(v: f32) -> f32 {
    return subgroupAdd(v);
}
fn sg_leader(l: Lane) -> bool {
    return l.sg_lane == 0u;
}
fn sg_slot(l: Lane) -> u32 {
    return l.sg_id;
}
fn sg_slots(l: Lane) -> u32 {
    return l.num_sg;
}

// Workgroup reductions through workgroup memory (no subgroups). Needs `const WG`, a power of 2.
struct Lane {
    @builtin(local_invocation_index) id: u32,
}
var<workgroup> red_buf: array<f32, WG>;

fn wg_sum(v: f32, lane: Lane) -> f32 {
    workgroupBarrier();
    red_buf[lane.id] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lane.id < s {
            red_buf[lane.id] += red_buf[lane.id + s];
        }
        workgroupBarrier();
    }
    return red_buf[0];
}

fn wg_max(v: f32, lane: Lane) -> f32 {
    workgroupBarrier();
    red_buf[lane.id] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lane.id < s {
            red_buf[lane.id] = max(red_buf[lane.id], red_buf[lane.id + s]);
        }
        workgroupBarrier();
    }
    return red_buf[0];
}

// Without subgroups every thread is its own slot (see reduce_subgroup.wgsl).
fn sg_sum(v: f32) -> f32 {
    return v;
}
fn sg_leader(l: Lane) -> bool {
    return true;
}
fn sg_slot(l: Lane) -> u32 {
    return l.id;
}
fn sg_slots(l: Lane) -> u32 {
    return WG;
}

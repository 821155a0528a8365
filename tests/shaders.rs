//! Every pipeline variant the engine can create — each kernel × weight format × KV format ×
//! native f16 or not × subgroups or not × every override switch — assembled and validated by
//! naga, with no adapter. The bindings each shader declares are checked against the Rust
//! interface (`Kernel::slots`: uniform / read / read-write, at binding i, and from binding 2
//! the field names of the kernel's struct in `kernels::bindings`), the parameter
//! struct's size against the Rust one (`Kernel::params_bytes`), and every override the Rust
//! side sets must exist in the shader. The variant without f16 and subgroups is what
//! a browser's WebGPU gets, so it is validated with exactly those capabilities off.

use lfm_wgpu::gpu::{Caps, DType};
use lfm_wgpu::kernels::{assemble, Kernel, PipelineKey, Slot};
use std::collections::HashSet;

fn capabilities(caps: Caps) -> naga::valid::Capabilities {
    use naga::valid::Capabilities as C;
    // unpack2x16float & co. are core WGSL (WebGPU included); wgpu grants this on every
    // backend the engine targets.
    let mut c = C::SHADER_FLOAT16_IN_FLOAT32;
    if caps.f16 {
        c |= C::SHADER_FLOAT16;
    }
    if caps.subgroups {
        c |= C::SUBGROUP;
    }
    c
}

fn check(key: &PipelineKey, src: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities(key.caps));
    if key.caps.subgroups {
        v.subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all());
    }
    v.validate(&module).map_err(|e| e.emit_to_string(src))?;

    // Bindings: binding 0 is the step uniform, then the kernel's slots.
    let slots = key.kernel.slots();
    let mut seen = HashSet::new();
    for (_, gv) in module.global_variables.iter() {
        let Some(b) = &gv.binding else { continue };
        if b.group != 0 {
            return Err(format!(
                "{} uses bind group {}",
                gv.name.as_deref().unwrap_or("?"),
                b.group
            ));
        }
        let slot = slots
            .get(b.binding as usize)
            .ok_or_else(|| format!("binding {} is past the {} slots Rust declares", b.binding, slots.len()))?;
        if b.binding == 1 {
            let size = module.types[gv.ty].inner.size(module.to_ctx()) as usize;
            if size != key.kernel.params_bytes() {
                return Err(format!(
                    "the WGSL parameters ({}) take {size} bytes, the Rust struct {}",
                    gv.name.as_deref().unwrap_or("?"),
                    key.kernel.params_bytes()
                ));
            }
        }
        let found = match gv.space {
            naga::AddressSpace::Uniform => Slot::Uniform,
            naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => Slot::ReadWrite,
            naga::AddressSpace::Storage { .. } => Slot::Read,
            other => return Err(format!("binding {} in address space {other:?}", b.binding)),
        };
        if found != *slot {
            return Err(format!(
                "binding {} ({}) is {found:?} in WGSL but {slot:?} in Kernel::slots",
                b.binding,
                gv.name.as_deref().unwrap_or("?")
            ));
        }
        // Storage bindings carry the names of the kernel's bindings struct.
        if b.binding >= 2 {
            let want = key.kernel.storage_bindings().1[b.binding as usize - 2];
            let name = gv.name.as_deref().unwrap_or("?");
            if name != want {
                return Err(format!(
                    "binding {} is `{name}` in WGSL but `{want}` in the Rust bindings struct",
                    b.binding
                ));
            }
        }
        seen.insert(b.binding as usize);
    }
    if let Some(missing) = (0..slots.len()).find(|i| !seen.contains(i)) {
        return Err(format!("Kernel::slots declares binding {missing}, the WGSL does not"));
    }
    // Overrides the pipeline sets must be declared.
    let overrides: HashSet<&str> = module.overrides.iter().filter_map(|(_, o)| o.name.as_deref()).collect();
    for (name, _) in key.kernel.constants() {
        if !overrides.contains(name) {
            return Err(format!(
                "the pipeline sets override {name}, which the WGSL does not declare"
            ));
        }
    }
    Ok(())
}

#[test]
fn every_pipeline_variant_validates() {
    let mut texts = HashSet::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for f16 in [false, true] {
        for subgroups in [false, true] {
            let caps = Caps {
                f16,
                subgroups,
                timestamps: false,
            };
            for kernel in Kernel::all_variants() {
                let (uses_w, uses_kv) = kernel.storage_dependent();
                let weights = if uses_w {
                    kernel.weight_formats()
                } else {
                    vec![DType::F32]
                };
                let kvs: &[DType] = if uses_kv {
                    &[DType::F32, DType::F16]
                } else {
                    &[DType::F32]
                };
                for &w in &weights {
                    for &kv in kvs {
                        let key = PipelineKey {
                            kernel,
                            weights: w,
                            kv,
                            caps,
                        };
                        let src = assemble(&key);
                        // The same text with the same overrides was checked already.
                        if !texts.insert((src.clone(), format!("{:?}", kernel.constants()), f16, subgroups)) {
                            continue;
                        }
                        checked += 1;
                        if let Err(e) = check(&key, &src) {
                            failures.push(format!("{key}: {e}"));
                        }
                    }
                }
            }
        }
    }
    eprintln!("{checked} distinct pipeline variants validated");
    assert!(checked > 500, "only {checked} variants");
    assert!(
        failures.is_empty(),
        "{} variants fail:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A broken snippet is caught: the check is not vacuous.
#[test]
fn a_bad_shader_is_rejected() {
    let key = PipelineKey {
        kernel: Kernel::Argmax { last_row: false },
        weights: DType::F32,
        kv: DType::F32,
        caps: Caps {
            f16: false,
            subgroups: false,
            timestamps: false,
        },
    };
    let good = assemble(&key);
    assert!(check(&key, &good).is_ok());
    let typo = good.replace("best_v[lid] = bv;", "best_v[lid] = bi;");
    assert!(check(&key, &typo).is_err(), "a type error passes");
    let wrong_access = good.replace("var<storage, read_write> out", "var<storage, read> out");
    assert!(
        check(&key, &wrong_access).is_err(),
        "a binding that disagrees with Kernel::slots passes"
    );
    let renamed = good.replace("var<storage, read_write> out", "var<storage, read_write> best");
    let renamed = renamed.replace("out[0]", "best[0]");
    let e = check(&key, &renamed).expect_err("a binding renamed in WGSL only passes");
    assert!(e.contains("`best` in WGSL but `out`"), "{e}");
}

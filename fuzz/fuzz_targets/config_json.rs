//! `config.json` through `Config::from_json`, and the derived sizes callers compute from it.
#![no_main]
use lfm_wgpu::model::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = Config::from_json(text, Path::new("config.json")) {
        let _ = cfg.parameter_counts();
        let _ = cfg.qkv_dim();
        let _ = cfg.to_hf_json();
    }
});

#!/usr/bin/env bash
# Builds the page's wasm: the engine library for wasm32-unknown-unknown (no default features:
# no server, no hub, no wgpu-bench), as a cdylib, then wasm-bindgen's JS glue into web/pkg.
# wasm-bindgen-cli must be the version of the wasm-bindgen crate in Cargo.lock
# (`python3 tools/wasm_bindgen_version.py`). Usage: web/build.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${1:-}" = "--dev" ]; then profile=dev; fi
want="$(python3 tools/wasm_bindgen_version.py)"
have="$(wasm-bindgen --version 2>/dev/null || true)"
if [ "$have" != "wasm-bindgen $want" ]; then
    echo "web/build.sh: wasm-bindgen $want is needed (found: ${have:-none}); install it with" >&2
    echo "    cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
cargo rustc --locked --lib --crate-type cdylib --target wasm32-unknown-unknown --no-default-features --profile "$profile"
dir="${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/$([ "$profile" = dev ] && echo debug || echo release)"
wasm-bindgen --target web --no-typescript --out-dir web/pkg "$dir/lfm_wgpu.wasm"
echo "web/pkg: $(du -h web/pkg/lfm_wgpu_bg.wasm | cut -f1) of wasm; serve web/ and open index.html"

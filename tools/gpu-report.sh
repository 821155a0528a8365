#!/usr/bin/env bash
# One-shot GPU report: `lfm info`, the GPU test suite, and wgpu-bench at the full
# LFM2-8B-A1B shape for every weight format (pp512 / tg128, the host cost per token, a
# per-kernel --profile, the first format also on exact f32 activations and with fewer rows per
# mat-vec workgroup, and the --kernels mat-vec table on both activation paths). Writes
# OUT/gpu-report.json (every run's JSON, as wgpu-bench printed it) and OUT/gpu-report.md (a
# table for BENCHMARKS.md).
#
# Meant for a session that is lent a GPU for a few minutes: build here first (release), then
# run this through the device tool with the binaries carried (see tools/README.md). On
# lavapipe, run it reduced: tools/gpu-report.sh --layers 2 -p 16 -n 4 -r 1 --dtypes q4_0
#
# Options:
#   --out DIR        where the report goes (default: $OUT, else gpu-report)
#   --bin DIR        lfm and wgpu-bench (default: $CARGO_TARGET_DIR/release, else target/release)
#   --layers N       synthetic model layers (default 24)
#   -p N -n N -r N   prompt tokens, generated tokens, repetitions (default 512, 128, 3)
#   --dtypes LIST    formats (default q4_0,q8_0,q4_k_m,q5_k_m,f16)
#   --submits LIST   decode submissions per token to compare (default 1,2,4)
#   --rows LIST      LFM_MATVEC_ROWS values to run the first format with too (default 4,2;
#                    "none" skips them)
#   --kernel-formats LIST  formats of the --kernels table (default: every format)
#   --tests CMD      the GPU test command (default: cargo test --release --locked --test
#                    kernels --test model --test quantized; "none" skips it)
#   --budget S       stop starting new benchmarks after S seconds (default 420)
set -uo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-gpu-report}"
bin="${CARGO_TARGET_DIR:-target}/release"
layers=24 prompt=512 gen=128 reps=3
dtypes="q4_0,q8_0,q4_k_m,q5_k_m,f16"
submits="1,2,4"
rows="4,2"
kformats=""
tests="cargo test --release --locked --test kernels --test model --test quantized"
budget=420
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --layers) layers="$2"; shift 2 ;;
        -p) prompt="$2"; shift 2 ;;
        -n) gen="$2"; shift 2 ;;
        -r) reps="$2"; shift 2 ;;
        --dtypes) dtypes="$2"; shift 2 ;;
        --submits) submits="$2"; shift 2 ;;
        --rows) rows="$2"; shift 2 ;;
        --kernel-formats) kformats="$2"; shift 2 ;;
        --tests) tests="$2"; shift 2 ;;
        --budget) budget="$2"; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "gpu-report: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
for b in lfm wgpu-bench; do
    if [ ! -x "$bin/$b" ]; then
        echo "gpu-report: $bin/$b not found: build with cargo build --release --locked first, or pass --bin" >&2
        exit 2
    fi
done
mkdir -p "$out/runs"
log="$out/gpu-report.log"
: >"$log"
start=$SECONDS
say() { echo "== [$((SECONDS - start)) s] $*" | tee -a "$log" >&2; }
failures=()

say "lfm info"
"$bin/lfm" info >"$out/runs/info.txt" 2>>"$log" || failures+=("lfm info")
cat "$out/runs/info.txt" >&2

if [ "$tests" != none ]; then
    say "GPU tests: $tests"
    if bash -c "$tests" >"$out/runs/tests.txt" 2>&1; then
        echo "passed" >"$out/runs/tests.status"
    else
        echo "FAILED" >"$out/runs/tests.status"
        failures+=("tests")
    fi
    grep -E "^test result|FAILED|panicked" "$out/runs/tests.txt" | tail -20 >&2
fi

bench() { # name, then wgpu-bench arguments
    local name="$1"
    shift
    if [ $((SECONDS - start)) -ge "$budget" ]; then
        say "skipped $name: the $budget s budget is spent"
        failures+=("$name (skipped: budget)")
        return
    fi
    say "wgpu-bench $name: $*"
    if "$bin/wgpu-bench" --json "$@" >"$out/runs/$name.json" 2>>"$log"; then
        :
    else
        say "wgpu-bench $name failed (see $log)"
        rm -f "$out/runs/$name.json"
        failures+=("$name")
    fi
}
# The mat-vec table first: it is the cheapest run and the one issue #10 asks of a device.
kargs=(--layers "$layers" --kernels)
if [ -n "$kformats" ]; then kargs+=(--formats "$kformats"); fi
bench kernels "${kargs[@]}"
IFS=, read -r -a dlist <<<"$dtypes"
first=1
for d in "${dlist[@]}"; do
    extra=()
    # The per-kernel profile and the submission sweep once, with the first format.
    if [ "$first" = 1 ]; then extra=(--profile --submits "$submits"); fi
    bench "tg-$d" --layers "$layers" --dtype "$d" -p "$prompt" -n "$gen" -r "$reps" "${extra[@]}"
    # The first format again on exact f32 activations (the default is int8 where shaders
    # have packed integer dot products): both decode paths on this device.
    if [ "$first" = 1 ]; then
        bench "tg-$d-exact" --layers "$layers" --dtype "$d" -p "$prompt" -n "$gen" -r "$reps" --activations exact
        # Fewer output columns per mat-vec workgroup (more workgroups): on an H200 2 rows
        # decoded a third faster than the default 8.
        if [ "$rows" != none ]; then
            IFS=, read -r -a rlist <<<"$rows"
            for r in "${rlist[@]}"; do
                LFM_MATVEC_ROWS="$r" bench "tg-$d-rows$r" --layers "$layers" --dtype "$d" -p "$prompt" -n "$gen" -r "$reps"
            done
        fi
    fi
    first=0
done

printf '%s\n' "${failures[@]}" >"$out/runs/failures.txt"
python3 tools/gpu_report.py "$out" | tee -a "$log"
say "done in $((SECONDS - start)) s: $out/gpu-report.json, $out/gpu-report.md"
[ "${#failures[@]}" = 0 ]

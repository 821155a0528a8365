#!/usr/bin/env python3
"""Collects tools/gpu-report.sh's runs (OUT/runs/*.json, info.txt, tests.status) into
OUT/gpu-report.json and a markdown table OUT/gpu-report.md ready to paste into
BENCHMARKS.md. Standard library only."""

import json
import sys
from pathlib import Path


def load_runs(runs: Path) -> dict:
    out = {}
    for p in sorted(runs.glob("*.json")):
        try:
            out[p.stem] = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            out[p.stem] = {"error": f"not JSON: {e}"}
    return out


def read(p: Path) -> str:
    return p.read_text() if p.exists() else ""


def ms(x):
    return "-" if x is None else f"{x * 1e3:.3f}"


def bench_rows(runs: dict) -> list:
    rows = [
        "| dtype | decode activations | mat-vec rows | layers | pp t/s | tg t/s | tg GB/s (% of copy) | encode ms/tok | submit() ms/tok | blocked ms/tok | GPU ms/tok | dispatches/tok |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in runs.items():
        if not name.startswith("tg-") or "tests" not in r:
            continue
        pp, tg = r["tests"][0], r["tests"][1]
        host = (r.get("host_cost") or [{}])[0]
        rows.append(
            "| {} | {} | {} | {} | {:.2f} ± {:.2f} | {:.2f} ± {:.2f} | {:.2f} ({:.1f}%) | {} | {} | {} | {} | {} |".format(
                r.get("dtype", name[3:]),
                r.get("decode_activations", "exact"),
                r.get("matvec_rows", 8),
                r["layers"],
                pp["tok_s_mean"], pp["tok_s_sd"],
                tg["tok_s_mean"], tg["tok_s_sd"],
                tg["effective_bandwidth_bytes_s"] / 1e9, 100 * tg["share_of_copy_bandwidth"],
                ms(host.get("encode_s_per_token")),
                ms(host.get("submit_s_per_token")),
                ms(host.get("blocked_s_per_token")),
                ms(host.get("gpu_s_per_token")),
                host.get("dispatches_per_token", "-"),
            )
        )
    return rows


def submit_rows(runs: dict) -> list:
    rows = []
    for name, r in runs.items():
        hc = r.get("host_cost") or []
        if len(hc) < 2:
            continue
        rows += [
            f"\nDecode submissions per token ({name}):\n",
            "| submits | tg t/s | idle encode + submit ms/tok | encode ms/tok | submit() ms/tok | blocked ms/tok | GPU ms/tok | passes/tok |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for h in hc:
            idle = None
            if h.get("idle_encode_s_per_token") is not None:
                idle = h["idle_encode_s_per_token"] + h["idle_submit_s_per_token"]
            rows.append(
                f"| {h['submissions_per_token']} | {h['tok_s']:.2f} | {ms(idle)} | {ms(h['encode_s_per_token'])} | {ms(h['submit_s_per_token'])} | "
                f"{ms(h['blocked_s_per_token'])} | {ms(h['gpu_s_per_token'])} | {h['passes_per_token']:.1f} |"
            )
    return rows


def kernel_rows(runs: dict) -> list:
    k = runs.get("kernels")
    if not k or "kernels" not in k:
        return []
    rows = [
        f"\nDecode mat-vecs (copy bandwidth {k['copy_bandwidth_bytes_s'] / 1e9:.1f} GB/s):\n",
        "| dtype | activations | kernel | shape | µs | GB/s | % of copy |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for t in k["kernels"]:
        rows.append(
            f"| {t['dtype']} | {t.get('activations', 'f32')} | {t['kernel']} | {t['rows']}×{t['cols']} | {t['seconds'] * 1e6:.1f} | "
            f"{t['bytes_s'] / 1e9:.1f} | {100 * t['share_of_copy']:.1f}% |"
        )
    return rows


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: gpu_report.py OUT", file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    runs = load_runs(out / "runs")
    failures = [f for f in read(out / "runs" / "failures.txt").splitlines() if f.strip()]
    report = {
        "info": read(out / "runs" / "info.txt"),
        "tests": read(out / "runs" / "tests.status").strip() or "not run",
        "failures": failures,
        "runs": runs,
    }
    (out / "gpu-report.json").write_text(json.dumps(report, indent=2))
    first = next((r for r in runs.values() if "adapter" in r), {})
    md = [
        f"### {first.get('adapter', 'unknown adapter')} ({first.get('backend', '?')}, {first.get('driver', '?')})\n",
        f"GPU tests: {report['tests']}. Synthetic weights, LFM2-8B-A1B shape; "
        "tools/gpu-report.sh.\n",
    ]
    md += bench_rows(runs) + submit_rows(runs) + kernel_rows(runs)
    if failures:
        md.append("\nFailed or skipped: " + ", ".join(failures))
    (out / "gpu-report.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

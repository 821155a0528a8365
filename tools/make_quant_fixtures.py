#!/usr/bin/env python3
"""Write GGML Q8_0 / Q4_0 reference vectors made by the ``gguf`` Python package.

Usage (from the repository root, with the venv described in tools/README.md):

    /opt/hfvenv/bin/python tools/make_quant_fixtures.py --out tests/data/quant/ggml_reference.safetensors

For every tensor ``<name>`` (2-D float32, rows a multiple of 32 long) the file holds

* ``<name>.f32``       F32 [R, C]          -- the input;
* ``<name>.q8_0``      U8  [R, C/32*34]    -- ``gguf.quants.quantize(x, Q8_0)``: GGML AoS blocks;
* ``<name>.q4_0``      U8  [R, C/32*18]    -- ``gguf.quants.quantize(x, Q4_0)``;
* ``<name>.q8_0.deq``  F32 [R, C]          -- ``gguf.quants.dequantize`` of those bytes;
* ``<name>.q4_0.deq``  F32 [R, C].

``tricky`` ([N, 32], one hand-made block per row) exercises the corner cases: all-zero blocks
(with +0 / -0 first), one huge value, negative maxima, magnitude ties, exact .5 ties after
scaling, near-ties, f16-subnormal scales, scales at f16 rounding ties (subnormal, normal, the
normal/subnormal boundary, max/overflow), f32-subnormal input. Its row labels are in the
metadata key ``tricky_rows`` (JSON list). The other tensors are seeded random data.

The tool also re-derives every block with a line-by-line scalar transcription of ggml's C
reference (quantize_row_q8_0_ref / quantize_row_q4_0_ref, x86-64 float->int casts) and checks
that it differs from gguf only where expected (the sign of a zero Q4_0 scale, see README).

Deterministic: a rerun with the pinned numpy / gguf / safetensors versions rewrites the same bytes.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize, quantize
from safetensors import safe_open

SEED = 20250531
F32 = np.float32
FORMATS = {"q8_0": QT.Q8_0, "q4_0": QT.Q4_0}


def f32(v) -> np.float32:
    return np.float32(v)


def tricky_blocks(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Hand-made 32-value blocks, each with a label."""
    out: list[tuple[str, np.ndarray]] = []

    def add(label: str, x) -> None:
        x = np.asarray(x, dtype=F32)
        assert x.shape == (32,), label
        assert np.all(np.isfinite(x)), label
        out.append((label, x))

    def small(scale: float) -> np.ndarray:
        return (rng.uniform(-1.0, 1.0, 32) * scale).astype(F32)

    def with_max(label: str, maxval: float, rest_scale: float, pos: int) -> None:
        x = small(rest_scale)
        x[pos] = f32(maxval)
        add(label, x)

    add("zeros", np.zeros(32))
    z = np.zeros(32, dtype=F32)
    z[0] = -0.0
    z[5] = -0.0
    add("zeros_neg_zero_first", z)
    z = np.zeros(32, dtype=F32)
    z[1] = -0.0
    add("zeros_neg_zero_second", z)
    with_max("one_huge_pos", 1000.0, 0.01, 11)
    with_max("one_huge_neg", -3.0e4, 1.0, 30)
    with_max("neg_max", -5.0, 1.0, 7)
    x = small(1.0)
    x[2], x[20] = 3.0, -3.0
    add("mag_tie_pos_first", x)
    x = small(1.0)
    x[2], x[20] = -3.0, 3.0
    add("mag_tie_neg_first", x)
    x = small(1.0)
    x[0], x[16] = 2.0, -2.0  # +max in the low nibble, -max (clamped 16 -> 15) in the high one
    add("mag_tie_clamp", x)

    # Exact .5 ties after scaling.
    halves = np.arange(-15.5, 15.5, 1.0)  # 31 values
    add("q8_ties_d1", np.concatenate([[127.0], halves]))  # d = 1, id = 1
    add("q8_ties_d1_neg", np.concatenate([[-127.0], -halves]))
    add("q8_ties_d1_8th", np.concatenate([[-127.0 / 8], halves / 8]))  # d = 1/8, id = 8
    big = np.array([126.5, -126.5, 125.5, -125.5, 100.5, -100.5, 64.5, -64.5], dtype=F32)
    add("q8_ties_large", np.concatenate([[127.0], big, halves[:23]]))
    q4h = np.concatenate([np.arange(-7.5, 8.0, 1.0), np.arange(-7.0, 8.0, 1.0)])  # 31 values
    add("q4_ties_d1", np.concatenate([[-8.0], q4h]))  # d = 1, id = 1
    add("q4_ties_dm1", np.concatenate([[8.0], q4h]))  # d = -1, id = -1
    x = np.concatenate([q4h[:5] / 4, [-2.0], q4h[5:] / 4])  # max at 5, d = 0.25
    add("q4_ties_d_quarter", x)
    # Near-ties: (k + 1/2) * d for a scale that is not a power of two, so x * (1/d) lands
    # within an ulp or two of the .5 tie on either side.
    d = f32(0.0371)
    k = np.arange(-16, 15, dtype=F32)
    add("q8_near_ties", np.concatenate([[f32(127) * d], ((k + f32(0.5)) * d).astype(F32)]))
    d = f32(0.7130001)
    k = np.arange(-8, 7, dtype=F32)
    nt = ((k + f32(0.5)) * d).astype(F32)
    add("q4_near_ties", np.concatenate([[f32(-8) * d], nt, nt[::-1], [f32(0.5) * d]]))

    # Small scales: f16-subnormal and zero scales with nonzero quants.
    add("f16_subnormal_scale", rng.standard_normal(32) * 1e-6)
    add("f16_zero_scale", rng.standard_normal(32) * 1e-9)
    add("q8_id_overflow", np.linspace(-3e-37, 2e-37, 32))  # q8: 1/d = inf; q4: finite
    add("f32_subnormal", np.linspace(-1e-39, 2e-39, 32))  # both formats: 1/d = inf

    # Scales at (and next to) f16 rounding ties. q8: amax = 127 d exactly; q4: max = -8 d.
    targets = {
        "sub_tie_zero": 2.0**-25,  # halfway 0 .. 2^-24 -> 0 (even)
        "sub_tie_3": 3 * 2.0**-25,  # halfway 1 .. 2 x 2^-24 -> 2
        "sub_norm_boundary": 2.0**-14 - 2.0**-25,  # halfway 0x03ff .. 0x0400 -> 0x0400
        "one_tie_down": 1 + 2.0**-11,  # -> 1.0
        "one_tie_up": 1 + 3 * 2.0**-11,  # -> 1 + 2^-9
        "max_finite": 65504.0,
        "max_round_down": 65519.99,  # -> 65504
        "overflow": 65520.0,  # -> inf
    }
    for name, t in targets.items():
        t = f32(t)
        amax = f32(t * f32(127))
        assert amax / f32(127) == t or name == "max_round_down", name
        with_max(f"q8_scale_{name}", amax, float(amax) * 0.9, 3)
        with_max(f"q4_scale_{name}", -8 * t, float(t) * 7.0, 3)
    for name in ("one_tie_down", "sub_norm_boundary"):
        t = f32(targets[name])
        for dirn, lab in ((np.inf, "above"), (-np.inf, "below")):
            amax = np.nextafter(f32(t * f32(127)), f32(dirn))
            with_max(f"q8_scale_{name}_{lab}", amax, float(amax) * 0.5, 9)
            with_max(f"q4_scale_{name}_{lab}", -8 * np.nextafter(t, f32(dirn)), float(t) * 4.0, 9)

    # Wide dynamic range, integers, large values.
    add("dynamic_range", rng.standard_normal(32) * 10.0 ** rng.uniform(-3, 3, 32))
    add("integers", rng.integers(-20, 21, 32))
    add("large", rng.standard_normal(32) * 1e4)
    return out


def random_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    t: dict[str, np.ndarray] = {}
    t["w_3x64"] = (rng.standard_normal((3, 64)) * 0.02).astype(F32)
    rows = rng.standard_normal((5, 96)) * (10.0 ** np.linspace(-3, 2, 5))[:, None]
    rows[1, 40] = 50.0  # outliers
    rows[3, 7] = -900.0
    t["w_5x96"] = rows.astype(F32)
    t["w_1x1024"] = (rng.standard_t(3, (1, 1024)) * 0.05).astype(F32)
    return t


def write_safetensors(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Deterministic safetensors writer (``save_file`` emits the metadata map in random order).

    Sorted keys; F32 tensors first so every one of them starts 4-byte aligned; read back with the
    official reader.
    """
    names = {np.dtype(F32): "F32", np.dtype(np.uint8): "U8"}
    order = sorted(tensors, key=lambda n: (tensors[n].dtype != F32, n))
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in order:
        a = np.ascontiguousarray(tensors[name])
        blob = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as fh:
        fh.write(len(head).to_bytes(8, "little"))
        fh.write(head)
        for blob in blobs:
            fh.write(blob)
    with safe_open(path, "np") as f:
        assert f.metadata() == metadata
        assert set(f.keys()) == set(tensors)
        for name, a in tensors.items():
            b = f.get_tensor(name)
            assert b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes(), name


# ---- scalar transcription of ggml's C reference (x86-64 casts), used only as a cross-check ----


def c_float_to_int(v: np.float32) -> int:
    """(int) v as x86-64 cvttss2si: truncate; NaN / inf / out of range -> INT_MIN."""
    if math.isfinite(float(v)) and -(2.0**31) <= float(v) < 2.0**31:
        return int(float(v))  # int() truncates toward zero
    return -(2**31)


def c_roundf(v: np.float32) -> np.float32:
    if not math.isfinite(float(v)):
        return v
    a = abs(float(v))  # float32 values are exact in float64
    fl = math.floor(a)
    r = fl + (1.0 if a - fl >= 0.5 else 0.0)
    return f32(math.copysign(r, float(v)))


def c_quantize_block(fmt: str, x: np.ndarray) -> bytes:
    if fmt == "q8_0":
        amax = f32(0.0)
        for v in x:
            amax = max(amax, f32(abs(v)))  # MAX(amax, fabsf(v))
        d = amax / f32(127)
        idv = f32(1.0) / d if d != 0 else f32(0.0)
        qs = [(c_float_to_int(c_roundf(f32(v) * idv)) & 0xFF) for v in x]
        return np.array([d], dtype=np.float16).tobytes() + bytes(qs)
    amax, mx = f32(0.0), f32(0.0)
    for v in x:
        if amax < abs(v):
            amax, mx = f32(abs(v)), f32(v)
    d = mx / f32(-8)
    idv = f32(1.0) / d if d != 0 else f32(0.0)

    def nib(v):
        i8 = c_float_to_int(f32(f32(v) * idv) + f32(8.5)) & 0xFF
        i8 = i8 - 256 if i8 >= 128 else i8  # (int8_t)
        return min(15, i8) & 0xFF

    qs = [nib(x[j]) | (nib(x[j + 16]) << 4) & 0xFF for j in range(16)]
    return np.array([d], dtype=np.float16).tobytes() + bytes(qs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data/quant/ggml_reference.safetensors")
    args = ap.parse_args()

    rng = np.random.default_rng(SEED)
    tricky = tricky_blocks(rng)
    tensors = {"tricky": np.stack([x for _, x in tricky]).astype(F32)}
    tensors.update(random_tensors(rng))

    out: dict[str, np.ndarray] = {}
    c_diffs: list[str] = []
    with np.errstate(all="ignore"):  # overflow / invalid casts are part of the corner cases
        for name, x in tensors.items():
            assert x.dtype == F32 and x.ndim == 2 and x.shape[1] % 32 == 0, name
            out[f"{name}.f32"] = x
            for fmt, qt in FORMATS.items():
                q = quantize(x, qt)
                assert q.dtype == np.uint8 and q.shape == (x.shape[0], x.shape[1] // 32 * (34 if fmt == "q8_0" else 18))
                assert np.array_equal(q, quantize(x.copy(), qt)), "gguf is not deterministic?"
                deq = dequantize(q, qt)
                assert deq.dtype == F32 and deq.shape == x.shape
                out[f"{name}.{fmt}"] = np.ascontiguousarray(q)
                out[f"{name}.{fmt}.deq"] = np.ascontiguousarray(deq)
                bb = q.shape[1] // (x.shape[1] // 32)
                blocks = q.reshape(-1, bb)
                for b, xb in enumerate(x.reshape(-1, 32)):
                    if c_quantize_block(fmt, xb) != blocks[b].tobytes():
                        label = tricky[b][0] if name == "tricky" else f"block {b}"
                        c_diffs.append(f"{name}.{fmt} {label}")

    # Documented behaviour on the tricky blocks.
    labels = [lab for lab, _ in tricky]
    tq8 = out["tricky.q8_0"].reshape(-1, 34)
    tq4 = out["tricky.q4_0"].reshape(-1, 18)

    def q8(label: str) -> np.ndarray:
        return tq8[labels.index(label), 2:].view(np.int8)

    def q4(label: str) -> np.ndarray:
        b = tq4[labels.index(label), 2:]
        return np.concatenate([b & 15, b >> 4]).astype(np.int32) - 8

    def scale(tq: np.ndarray, label: str) -> int:
        return int(tq[labels.index(label), :2].view(np.uint16)[0])

    # q8_0 rounds half away from zero (np_roundf), not half to even.
    assert list(q8("q8_ties_d1")[1:]) == [int(math.copysign(math.floor(abs(v) + 0.5), v)) for v in np.arange(-15.5, 15.5)]
    # q4_0 rounds half up: trunc(v + 8.5), clamped to 15 (7.5 -> 7).
    assert list(q4("q4_ties_d1")[1:17]) == [min(7, math.floor(v + 0.5)) for v in np.arange(-7.5, 8.0)]
    # f16 scale: round to nearest even, overflow to inf.
    assert scale(tq8, "q8_scale_sub_tie_zero") == 0x0000 and scale(tq4, "q4_scale_sub_tie_zero") == 0x0000
    assert scale(tq8, "q8_scale_sub_tie_3") == 0x0002
    assert scale(tq8, "q8_scale_sub_norm_boundary") == 0x0400
    assert scale(tq8, "q8_scale_one_tie_down") == 0x3C00 and scale(tq8, "q8_scale_one_tie_up") == 0x3C02
    assert scale(tq8, "q8_scale_max_round_down") == 0x7BFF and scale(tq8, "q8_scale_overflow") == 0x7C00
    assert scale(tq4, "q4_scale_overflow") == 0x7C00  # max = -8 d < 0
    # Zero Q4_0 scale takes the sign from -x[0] (numpy argmax); ggml's C always gives -0.0.
    assert scale(tq4, "zeros") == 0x8000 and scale(tq4, "zeros_neg_zero_first") == 0x0000
    expected_c_diffs = ["tricky.q4_0 zeros_neg_zero_first"]
    assert c_diffs == expected_c_diffs, f"gguf vs C transcription differ on: {c_diffs}"

    meta = {
        "generator": "tools/make_quant_fixtures.py",
        "gguf": importlib.metadata.version("gguf"),
        "numpy": np.__version__,
        "safetensors": importlib.metadata.version("safetensors"),
        "seed": str(SEED),
        "tensors": ",".join(tensors),
        "tricky_rows": json.dumps(labels),
        "gguf_vs_c_reference_differences": ",".join(c_diffs),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    write_safetensors(args.out, out, meta)
    size = os.path.getsize(args.out)
    assert size < 200_000, size
    n_el = sum(x.size for x in tensors.values())
    print(f"{args.out}: {len(tensors)} tensors, {n_el} values ({n_el // 32} blocks), {len(tricky)} tricky blocks, "
          f"{size} bytes, gguf {meta['gguf']}, numpy {meta['numpy']}; gguf vs C transcription differs on: {c_diffs}")


if __name__ == "__main__":
    main()

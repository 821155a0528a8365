#!/usr/bin/env python3
"""tests/data/tool_call: a fixture model that writes one LFM2 tool call, for `lfm serve`'s
tool-call tests through the real engine (issue #12).

The tiny random fixtures emit noise, which never closes a call. This one is tiny_b's
architecture and tokenizer (byte-level BPE, LFM2 chat template) with weights set so that the
model is a bigram table that writes

    <|tool_call_start|>[forecast(day=3)]<|tool_call_end|><|im_end|>

after the chat template's generation prompt (`<|im_start|>assistant\\n`), and continues it
from any prefix of it (`[` after tool_choice "required", `(` after a named tool_choice).
The engine runs every kernel as usual; only the numbers make the answer predictable:

- every block's output projection (attention / conv `out_proj`, dense and expert `w2`) is
  zero, so the residual stream stays the token's embedding through all layers;
- each token of the chain is embedded as a one-hot vector in its own dimension, the final
  norm's weight is 1, and `lm_head` row `next(t)` holds 2 in `t`'s dimension: the logit of
  the next chain token is 2·√hidden ≈ 19.6, every other logit 0 (a greedy margin of 19.6;
  sampled at temperature 1 the chain token has p ≈ 1 − 4e-7 per step).

Every token of the chain occurs once as an input, so a bigram table can write it. All other
tensors are tiny_b's, stored as bf16 (round to nearest even). Standard library only:

    python3 tools/make_tool_call_fixture.py        # rewrites tests/data/tool_call/
"""

import json
import math
import pathlib
import shutil
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "tests" / "data" / "tiny_b"
DST = ROOT / "tests" / "data" / "tool_call"

# The answer the model writes, token by token (tiny_b vocabulary strings; "Ċ" is "\n"), from
# the last token of the generation prompt to the end-of-turn token.
CHAIN = ["Ċ", "<|tool_call_start|>", "[", "f", "or", "e", "c", "a", "s", "t", "(", "d", "ay", "=", "3", ")",
         "]", "<|tool_call_end|>", "<|im_end|>"]
LOGIT_WEIGHT = 2.0


def read_safetensors(path):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        count = (b - a) // 4
        tensors[name] = (info["shape"], list(struct.unpack(f"<{count}f", body[a:b])))
    return tensors


def bf16_bytes(values):
    out = bytearray()
    for v in values:
        u = struct.unpack("<I", struct.pack("<f", v))[0]
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        out += struct.pack("<H", u)
    return bytes(out)


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        shape, values = tensors[name]
        blob = bf16_bytes(values)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    cfg = json.loads((SRC / "config.json").read_text())
    vocab = json.loads((SRC / "tokenizer.json").read_text())["model"]["vocab"]
    hidden, nvocab = cfg["hidden_size"], cfg["vocab_size"]
    ids = [vocab[t] for t in CHAIN]
    inputs = ids[:-1]
    assert len(set(inputs)) == len(inputs), "a bigram table needs every input token once"
    assert len(inputs) <= hidden

    t = read_safetensors(SRC / "model.safetensors")
    for name, (shape, values) in t.items():
        if name.endswith(("out_proj.weight", "w2.weight")):
            t[name] = (shape, [0.0] * len(values))
    t["model.embedding_norm.weight"] = ([hidden], [1.0] * hidden)
    embed = t["model.embed_tokens.weight"][1]
    head = [0.0] * (nvocab * hidden)
    for dim, (cur, nxt) in enumerate(zip(ids, ids[1:])):
        embed[cur * hidden:(cur + 1) * hidden] = [1.0 if d == dim else 0.0 for d in range(hidden)]
        head[nxt * hidden + dim] = LOGIT_WEIGHT
    t["lm_head.weight"] = ([nvocab, hidden], head)

    DST.mkdir(exist_ok=True)
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        shutil.copy(SRC / f, DST / f)
    cfg["dtype"] = "bfloat16"
    (DST / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    write_safetensors(DST / "model.safetensors", t)
    margin = LOGIT_WEIGHT * math.sqrt(hidden / (1 + 1e-5 * hidden))
    print(f"wrote {DST} (chain of {len(ids)} tokens, greedy margin {margin:.1f})", file=sys.stderr)


if __name__ == "__main__":
    main()

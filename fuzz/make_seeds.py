#!/usr/bin/env python3
"""Writes the fuzz seed corpora (fuzz/corpus/<target>/seed-*) and fuzz/micro/config.json.

The checkpoint seeds are a "micro" model cut out of tests/data/tiny_d (hidden 32, vocab 16,
one dense conv layer and one MoE attention layer with 2 experts): every tensor is the
top-left corner of tiny_d's, so a seed is a few tens of KB and the fuzzer stays fast.
Quantized (engine-layout) seeds are made from it with `lfm quantize` when LFM is set to
the path of an `lfm` binary. Standard library only; run from the repository root.
"""
import json, os, shutil, struct, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
FUZZ = os.path.join(ROOT, "fuzz")


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8 : 8 + n])
    return header, b[8 + n :]


def write_st(tensors, meta=None):
    """tensors: list of (name, dtype, shape, bytes) in file order."""
    header, at = {}, 0
    if meta:
        header["__metadata__"] = meta
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(data)]}
        at += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


def corner(data, shape, new_shape, size):
    """Row-major prefix slice of every dimension."""
    if not shape:
        return data
    inner = size
    for d in shape[1:]:
        inner *= d
    return b"".join(
        corner(data[i * inner : (i + 1) * inner], shape[1:], new_shape[1:], size) for i in range(new_shape[0])
    )


MICRO = {"hidden_size": 32, "vocab_size": 16, "intermediate_size": 32, "moe_intermediate_size": 32,
         "num_hidden_layers": 2, "layer_types": ["conv", "full_attention"], "num_attention_heads": 2,
         "num_key_value_heads": 2, "head_dim": 16, "num_experts": 2, "num_experts_per_tok": 1}


def micro():
    cfg = json.load(open(os.path.join(DATA, "tiny_d", "config.json")))
    cfg.update(MICRO)
    header, data = read_st(os.path.join(DATA, "tiny_d", "model.safetensors"))
    shrink = {48: 32, 144: 96, 200: 16, 64: 32, 40: 32, 6: 2}
    out = []
    for name, info in header.items():
        if name == "__metadata__" or name.startswith("model.layers.2."):
            continue
        if ".experts." in name and int(name.split(".experts.")[1].split(".")[0]) >= 2:
            continue
        shape = info["shape"]
        new = [shrink.get(d, d) for d in shape]
        a, b = info["data_offsets"]
        size = 2 if info["dtype"] in ("BF16", "F16") else 4
        out.append((name, info["dtype"], new, corner(data[a:b], shape, new, size)))
    return cfg, out


def bf16_to(dtype, t):
    name, _, shape, data = t
    vals = [struct.unpack("<f", b"\0\0" + data[i : i + 2])[0] for i in range(0, len(data), 2)]
    if dtype == "F32":
        return (name, "F32", shape, struct.pack(f"<{len(vals)}f", *vals))
    return (name, "F16", shape, struct.pack(f"<{len(vals)}e", *vals))


def put(target, name, data):
    d = os.path.join(FUZZ, "corpus", target)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "seed-" + name), "wb").write(data)


def main():
    cfg, tensors = micro()
    text = json.dumps(cfg, indent=2) + "\n"
    open(os.path.join(FUZZ, "micro", "config.json"), "w").write(text)
    # safetensors_checkpoint: byte 0 picks the load dtype (f32, f16, q8_0, q4_0), the rest is the file.
    put("safetensors_checkpoint", "bf16-f16", b"\x01" + write_st(tensors, {"format": "pt"}))
    put("safetensors_checkpoint", "f32-q8_0", b"\x02" + write_st([bf16_to("F32", t) for t in tensors]))
    put("safetensors_checkpoint", "f16-q4_0", b"\x03" + write_st([bf16_to("F16", t) for t in tensors]))
    put("safetensors_checkpoint", "bf16-f32", b"\x00" + write_st(tensors[: len(tensors) // 2]))
    # config_json: the fixtures' configs and the micro one.
    for f in ("tiny_a", "tiny_b", "tiny_c", "tiny_d"):
        put("config_json", f, open(os.path.join(DATA, f, "config.json"), "rb").read())
    put("config_json", "micro", text.encode())
    # safetensors_index: weight maps over the micro tensors, in one and in two shards.
    names = [t[0] for t in tensors]
    one = {"metadata": {"total_size": 1}, "weight_map": {n: "model.safetensors" for n in names}}
    two = {"weight_map": {n: f"model-0000{1 + i % 2}-of-00002.safetensors" for i, n in enumerate(names)}}
    put("safetensors_index", "one", json.dumps(one, indent=2).encode())
    put("safetensors_index", "two", json.dumps(two, indent=2).encode())
    # chat_template: template NUL (role byte + content) NUL ... (see fuzz_targets/chat_template.rs).
    lfm2 = open(os.path.join(ROOT, "src", "chat", "lfm2.jinja"), "rb").read()
    tiny_c = json.load(open(os.path.join(DATA, "tiny_c", "tokenizer_config.json")))["chat_template"]
    conv = [b"\x00You are helpful.", b"\x01Hi <|im_end|> there", b"\x02Hello!", b"\x01What is 2+2?"]
    tool = [b"\x04" + json.dumps({"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}).encode(),
            b"\x01add 2 and 2", b"\x83" + json.dumps({"result": 4, "x": [1.5, None, "\u00e9"]}).encode()]
    put("chat_template", "lfm2", b"\0".join([lfm2] + conv))
    put("chat_template", "lfm2-tools", b"\0".join([lfm2] + tool))
    put("chat_template", "tiny_c", b"\0".join([tiny_c.encode()] + conv[:3]))
    put("chat_template", "tojson", b"\0".join([b"{% for m in messages %}{{ m | tojson(indent=2, sort_keys=true) }}"
                                                b"{{ m.content.strip().startswith('W') }}{% endfor %}\x01{{ tools | tojson }}"] + tool))
    put("chat_template", "misc", b"\0".join([b"{{ bos_token }}{{ strftime_now('%Y-%m-%d %A') }}{% macro f(n) %}"
                                              b"{% if n > 0 %}{{ f(n - 1) }}{% endif %}{{ n }}{% endmacro %}{{ f(5) }}"
                                              b"{% if not add_generation_prompt %}{{ raise_exception('no prompt') }}{% endif %}"] + conv[:1]))
    # constrain: kind byte, format text, NUL, token picks (see fuzz_targets/constrain.rs).
    picks = bytes((7 + 13 * i) % 256 for i in range(40))
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6},
              "n": {"type": "integer", "minimum": -3, "maximum": 300}, "tags": {"type": "array",
              "items": {"enum": ["a", "bc", None]}, "maxItems": 3}}, "required": ["name"]}
    put("constrain", "schema", b"\x00" + json.dumps(schema).encode() + b"\0" + picks)
    put("constrain", "lark", b"\x01" + b'start: "(" item ("," item)* ")"\nitem: /[a-c]{1,2}/ | NUMBER\nNUMBER: /[0-9]+/\n'
        + b"\0" + picks)
    put("constrain", "regex", b"\x02" + rb"(yes|no) [0-9]{1,3}!\n?" + b"\0" + picks)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
              "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}},
             {"type": "function", "function": {"name": "now"}}]
    for i, choice in enumerate(["auto", "required", "named"]):
        put("constrain", f"tools-{choice}", bytes([3 + 4 * i]) + json.dumps(tools).encode() + b"\0" + picks)
    # quantized_meta: the micro model written by `lfm quantize` in each format.
    lfm = os.environ.get("LFM")
    if lfm:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "src")
            os.makedirs(src)
            open(os.path.join(src, "config.json"), "w").write(text)
            open(os.path.join(src, "model.safetensors"), "wb").write(write_st(tensors))
            for i, dt in enumerate(["f32", "f16", "q8_0", "q4_0"]):
                out = os.path.join(tmp, dt)
                subprocess.run([lfm, "quantize", "--model", src, "--out", out, "--dtype", dt], check=True, stdout=subprocess.DEVNULL)
                put("quantized_meta", dt, open(os.path.join(out, "model.safetensors"), "rb").read())
    else:
        print("LFM not set: quantized_meta seeds not written", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Build small LFM2-style tokenizers and Hugging Face reference encodings for the engine's tests.

Usage (from the repository root, with the venv described in tools/README.md):

    /opt/tokvenv/bin/python tools/make_tokenizer_fixtures.py --out tests/data

For each of the fixtures ``tiny_b`` (model vocab 384) and ``tiny_c`` (model vocab 320) this trains
a real byte-level BPE with the ``tokenizers`` library on the small multilingual corpus below and
writes, next to the existing checkpoint (``config.json`` / ``*.safetensors`` are never touched):

* ``tokenizer.json``        -- BPE with LFM2's special tokens at ids 0..13 (docs §13) plus two
                               ``<|reserved_N|>`` tokens, the Llama-3 split regex followed by
                               ByteLevel(add_prefix_space=false), a ByteLevel decoder, and BOS
                               (``<|startoftext|>``, id 1) prepended by a TemplateProcessing
                               post-processor;
* ``tokenizer_config.json`` -- bos/eos/pad tokens, ``add_bos_token``, and the chat template
                               (``src/chat/lfm2.jinja``, the same file the Rust crate embeds as its
                               built-in fallback);
* ``generation_config.json`` (tiny_b only) -- ``eos_token_id: [7, 2]`` to exercise a list of eos ids.

``tiny_a`` deliberately gets no tokenizer (the missing-tokenizer error test).

Then it loads each directory with ``transformers.AutoTokenizer.from_pretrained`` and records, in
``<out>/tokenizer_cases.json``, for every fixture:

* plain texts: ids with ``add_special_tokens`` True and False, the token strings, and
  ``decode`` with ``skip_special_tokens`` False and True;
* chat conversations: ``apply_chat_template(tokenize=False)`` text and
  ``apply_chat_template(tokenize=True)`` ids (transformers tokenizes the rendered chat with
  ``add_special_tokens=False``, so BOS comes only from the template; the tool asserts that).

Deterministic: training is seeded by nothing random (BPE merge ties are broken by the pair order),
and the tool retrains twice and checks the JSON is identical. ``tokenizer_cases.json`` keeps
insertion order (the tools' key order matters to ``tojson``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

import tokenizers
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer

# LFM2's special tokens, ids 0..13 (docs §13), then reserved tokens.
SPECIAL_TOKENS = [
    "<|pad|>",
    "<|startoftext|>",
    "<|endoftext|>",
    "<|fim_pre|>",
    "<|fim_mid|>",
    "<|fim_suf|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|tool_list_start|>",
    "<|tool_list_end|>",
    "<|tool_call_start|>",
    "<|tool_call_end|>",
    "<|tool_response_start|>",
    "<|tool_response_end|>",
    "<|reserved_0|>",
    "<|reserved_1|>",
]
BOS, EOS, PAD = "<|startoftext|>", "<|im_end|>", "<|pad|>"

# Llama-3 style pre-tokenizer split: contractions, letter runs led by at most one
# non-letter/non-digit, digit groups of 1-3, punctuation runs, newline runs, whitespace.
SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog didn't care; it's lazy.",
    "What is C. elegans? It is a nematode, a small worm that scientists study.",
    "They're here, we've seen them, I'm sure you'll agree and she'd say so too.",
    "In 2024 the model had 8.3 billion parameters, 1.5 billion active per token.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 12345 3.14159 2,718 -42 +7 1e-5",
    "def main():\n    print(\"hello, world\")\n    return 0\n\nif __name__ == '__main__':\n    main()\n",
    "fn main() {\n\tlet x = vec![1, 2, 3];\n\tprintln!(\"{:?}\", x);\n}\n",
    "Le café est très bon à Paris ; l'été, les élèves mangent des crêpes.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein. Straße, Größe, schön.",
    "El niño comió una manzana en la mañana. ¿Dónde está la biblioteca? ¡Olé!",
    "Москва — столица России. Привет, как дела? Хорошо, спасибо.",
    "我们的模型在笔记本电脑上运行。你好，世界！今天天气很好。",
    "日本語のテキストも少し入れます。こんにちは、世界。ありがとう。",
    "한국어 문장도 있습니다. 안녕하세요!",
    "Emoji: 😀 🎉 👍🏽 ❤️ 🇫🇷 — and symbols: € £ ¥ © ® ™ ± × ÷ ≤ ≥ ≠ ∞",
    "Tabs\tand  double  spaces,   triple   spaces,\n\nblank lines\r\nand CRLF.",
    "Liquid AI's LFM2 uses gated short convolutions and grouped-query attention.",
    "User: hello there! Assistant: Hi! How can I help you today?",
]

TEXTS = [
    "",
    "Hello, world!",
    "What is C. elegans?",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, but we've doubts and you'd agree; THEY'RE HERE.",
    "1234567 and 3.14159 and 1,000,000 and 007",
    "Le café est très bon, l'été à Paris. Über Größe: schön!",
    "你好，世界！我们的模型",
    "こんにちは、世界。",
    "Привет, мир!",
    "emoji 😀🎉 👍🏽 🇫🇷 ❤️ done",
    "  leading spaces, trailing spaces   ",
    "tabs\there\t\tand\nnewlines\n\n\nand\r\nCRLF\n",
    "    indented code\n        deeper\n",
    "Hello , world ! It 's a test .",
    "<|im_start|>user\nhi<|im_end|>\n",
    "text with <|startoftext|> inside and <|reserved_1|> too",
    "unseen words: xylophone quixotic zzz Ωμέγα ﷺ",
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city (°C).",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. Zürich"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "name": "add",
        "description": "Add two numbers: a + b <> \"quoted\" & 'single'",
        "parameters": {"a": 1, "b": 2.5, "flag": True, "none": None, "list": []},
    },
]

CHATS = [
    {
        "name": "spec_example",
        "messages": [{"role": "user", "content": "What is C. elegans?"}],
        "add_generation_prompt": True,
    },
    {
        "name": "system_multi_turn",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Réponds brièvement."},
            {"role": "user", "content": "Hi! 你好"},
            {"role": "assistant", "content": "Hello! How can I help you today? 😀"},
            {"role": "user", "content": "Count: 1234567\n\tthen stop."},
        ],
        "add_generation_prompt": True,
    },
    {
        "name": "no_generation_prompt",
        "messages": [
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "hi"},
        ],
        "add_generation_prompt": False,
    },
    {
        "name": "tools_with_system",
        "messages": [
            {"role": "system", "content": "Use tools when needed."},
            {"role": "user", "content": "Weather in Zürich?"},
        ],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
    {
        "name": "tools_without_system",
        "messages": [{"role": "user", "content": "What is 1 + 2.5?"}],
        "tools": TOOLS[1:],
        "add_generation_prompt": True,
    },
    {
        "name": "tool_call_and_response",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": '<|tool_call_start|>[get_weather(city="Paris")]<|tool_call_end|>Checking.',
            },
            {"role": "tool", "content": '{"city": "Paris", "temp_c": 21}'},
            {"role": "tool", "content": {"city": "Paris", "sky": "clair", "wind": [3, 4.5]}},
        ],
        "tools": TOOLS[:1],
        "add_generation_prompt": True,
    },
]

FIXTURES = {
    # name: (model vocab, tokenizer_config extras, generation_config or None)
    "tiny_b": (
        384,
        {"add_bos_token": True, "add_eos_token": False, "clean_up_tokenization_spaces": False},
        {"bos_token_id": 1, "eos_token_id": [7, 2], "pad_token_id": 0},
    ),
    "tiny_c": (
        320,
        # No add_bos_token key: BOS comes from tokenizer.json's post-processor alone.
        # clean_up_tokenization_spaces is ignored by transformers 5.23 for BPE tokenizers.
        {"clean_up_tokenization_spaces": True},
        None,
    ),
}


def build_tokenizer(vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS}:0 $A:0",
                pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
                special_tokens=[(BOS, 1)],
            ),
        ]
    )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    assert tok.get_vocab_size() <= vocab_size, tok.get_vocab_size()
    return tok


def write_fixture(out: str, name: str, template: str) -> None:
    vocab, extras, gen = FIXTURES[name]
    tok = build_tokenizer(vocab)
    again = build_tokenizer(vocab)
    assert tok.to_str() == again.to_str(), "BPE training is not deterministic"
    d = os.path.join(out, name)
    with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["vocab_size"] == vocab
    tok_json = json.loads(tok.to_str())
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False, indent=1)
        f.write("\n")
    config = {
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "model_max_length": 1000000,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": template,
        **extras,
    }
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2, sort_keys=True)
        f.write("\n")
    gen_path = os.path.join(d, "generation_config.json")
    if gen is not None:
        with open(gen_path, "w", encoding="utf-8") as f:
            json.dump(gen, f, indent=2, sort_keys=True)
            f.write("\n")
    elif os.path.exists(gen_path):
        os.remove(gen_path)
    print(f"{name}: vocab {tok.get_vocab_size()} (model {vocab})", file=sys.stderr)


def record(out: str, name: str) -> dict:
    d = os.path.join(out, name)
    hf = AutoTokenizer.from_pretrained(d)
    texts = []
    for text in TEXTS:
        with_special = hf(text, add_special_tokens=True)["input_ids"]
        without = hf(text, add_special_tokens=False)["input_ids"]
        assert with_special == [1] + without, (text, with_special, without)
        texts.append(
            {
                "text": text,
                "ids": with_special,
                "ids_no_special": without,
                "tokens": hf.convert_ids_to_tokens(with_special),
                "decoded": hf.decode(with_special, skip_special_tokens=False),
                "decoded_skip_special": hf.decode(with_special, skip_special_tokens=True),
            }
        )
    chats = []
    for chat in CHATS:
        kwargs = {"tools": chat.get("tools"), "add_generation_prompt": chat["add_generation_prompt"]}
        rendered = hf.apply_chat_template(chat["messages"], tokenize=False, **kwargs)
        ids = hf.apply_chat_template(chat["messages"], tokenize=True, return_dict=False, **kwargs)
        # BOS comes once, from the template: apply_chat_template tokenizes with add_special_tokens=False.
        assert ids == hf(rendered, add_special_tokens=False)["input_ids"], chat["name"]
        assert ids[0] == 1 and ids[1] != 1, (chat["name"], ids[:3])
        chats.append({**chat, "rendered": rendered, "ids": ids})
    # transformers 5.23 drops add_bos_token / add_eos_token from tokenizer_config.json when a
    # tokenizer.json is present: BOS follows tokenizer.json's post-processor alone. Check it.
    with tempfile.TemporaryDirectory() as tmp:
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(d, f), tmp)
        cfg_path = os.path.join(tmp, "tokenizer_config.json")
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
        cfg["add_bos_token"] = False
        with open(cfg_path, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        probe = AutoTokenizer.from_pretrained(tmp)
        assert probe("hi")["input_ids"][0] == 1, "add_bos_token=false unexpectedly honoured"
    return {
        "vocab_size": len(hf),
        "bos_id": hf.bos_token_id,
        "eos_id": hf.eos_token_id,
        "texts": texts,
        "chats": chats,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/data")
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "src", "chat", "lfm2.jinja"), encoding="utf-8") as f:
        template = f.read()
    for name in FIXTURES:
        write_fixture(args.out, name, template)
    tiny_a = os.path.join(args.out, "tiny_a")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        assert not os.path.exists(os.path.join(tiny_a, f)), f"tiny_a must stay tokenizer-less ({f})"
    cases = {
        "generator": "tools/make_tokenizer_fixtures.py",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "fixtures": {name: record(args.out, name) for name in FIXTURES},
    }
    with open(os.path.join(args.out, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)  # insertion order: tools keep their key order
        f.write("\n")
    print("wrote tokenizer_cases.json", file=sys.stderr)


if __name__ == "__main__":
    main()

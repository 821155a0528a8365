"""`lfm serve` through the real `openai` Python client (issue #12).

Starts the built `lfm` binary (LFM_BIN, default target/debug/lfm) with `serve --port 0` on
the tiny_b fixture, on loopback, and talks to it only through `openai.OpenAI`. Run by
.ci/run in a venv holding tests/openai/requirements.txt:

    python -m unittest discover -s tests/openai -v
"""

import json
import os
import pathlib
import subprocess
import threading
import time
import unittest

import openai

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = str(ROOT / "tests" / "data" / "tiny_b")
# A bigram fixture that answers <|tool_call_start|>[forecast(day=3)]<|tool_call_end|>
# (tools/make_tool_call_fixture.py).
TOOL_MODEL = str(ROOT / "tests" / "data" / "tool_call")
CTX = 512
KEY = "test-key"
WAIT = 120  # seconds any one step may take (lavapipe is slow)


def lfm_bin():
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return os.environ.get("LFM_BIN", os.path.join(target, "debug", "lfm"))


class Server:
    """`lfm serve` on an ephemeral port; stopped with SIGTERM."""

    def __init__(self, *extra, model=MODEL):
        self.proc = subprocess.Popen(
            [lfm_bin(), "serve", "--model", model, "--port", "0", "--ctx", str(CTX), *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        lines = []
        reader = threading.Thread(target=lambda: lines.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(WAIT)
        if not lines or not lines[0].startswith("listening on http://"):
            self.stop()
            raise RuntimeError(f"no 'listening on' line: {lines}")
        self.base = lines[0].split()[-1]
        self.client = openai.OpenAI(base_url=self.base + "/v1", api_key=KEY, max_retries=0, timeout=WAIT)
        t = time.time()
        while True:
            try:
                self.client.models.list()
                break
            except openai.APIStatusError:
                raise
            except openai.APIError:
                if time.time() - t > WAIT:
                    raise
                time.sleep(0.2)

    def stop(self):
        self.proc.terminate()
        try:
            return self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def setUpModule():
    global SERVER
    SERVER = Server("--api-key", KEY, "--queue", "1")


def tearDownModule():
    assert SERVER.stop() == 0


def greedy(messages, max_tokens, **kw):
    return SERVER.client.chat.completions.create(
        model="tiny_b", messages=messages, max_tokens=max_tokens, temperature=0, **kw
    )


MSGS = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello there, how are you?"}]


class Answers(unittest.TestCase):
    def test_stream_deltas_join_to_the_whole_answer_and_usage_arrives(self):
        whole = greedy(MSGS, 16)
        chunks = list(greedy(MSGS, 16, stream=True, stream_options={"include_usage": True}))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        *answer, usage = chunks
        self.assertEqual(usage.choices, [])
        self.assertEqual(usage.usage.prompt_tokens, whole.usage.prompt_tokens)
        self.assertEqual(usage.usage.completion_tokens, whole.usage.completion_tokens)
        text = "".join(c.choices[0].delta.content or "" for c in answer)
        self.assertEqual(text, whole.choices[0].message.content)
        self.assertEqual(answer[-1].choices[0].finish_reason, whole.choices[0].finish_reason)
        self.assertIn(whole.choices[0].finish_reason, ("stop", "length"))

    def test_greedy_answer_equals_lfm_run(self):
        # `lfm run` renders the same chat template and decodes greedily on the same weights.
        out = subprocess.run(
            [lfm_bin(), "run", "--model", MODEL, "--system", MSGS[0]["content"], "--prompt", MSGS[1]["content"],
             "--greedy", "--max-new-tokens", "20", "--ctx", str(CTX)],
            capture_output=True, text=True, timeout=WAIT, check=True,
        )
        self.assertEqual(greedy(MSGS, 20).choices[0].message.content, out.stdout.removesuffix("\n"))

    def test_second_turn_prefills_only_new_tokens(self):
        first = greedy(MSGS, 8)
        turn2 = MSGS + [
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "Tell me more about it."},
        ]
        second = greedy(turn2, 8)
        cached = second.usage.prompt_tokens_details.cached_tokens
        self.assertGreaterEqual(cached, first.usage.prompt_tokens)
        self.assertLess(cached, second.usage.prompt_tokens)

    def test_text_completion(self):
        c = SERVER.client.completions.create(model="tiny_b", prompt="Once upon a time", max_tokens=6, temperature=0)
        s = SERVER.client.completions.create(
            model="tiny_b", prompt="Once upon a time", max_tokens=6, temperature=0, stream=True
        )
        self.assertEqual("".join(x.choices[0].text for x in s), c.choices[0].text)
        self.assertLessEqual(c.usage.completion_tokens, 6)

    def test_tool_call_stream_accumulates_like_the_whole_answer(self):
        tools = [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
        msgs = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c0", "type": "function",
                 "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
                {"role": "tool", "tool_call_id": "c0", "content": "22 C"},
                {"role": "user", "content": "And in Oslo?"}]
        choice = {"type": "function", "function": {"name": "get_weather"}}
        whole = greedy(msgs, 6, tools=tools, tool_choice=choice)
        content, calls = "", {}
        for chunk in greedy(msgs, 6, tools=tools, tool_choice=choice, stream=True):
            d = chunk.choices[0].delta
            content += d.content or ""
            for t in d.tool_calls or []:
                c = calls.setdefault(t.index, {"name": "", "arguments": ""})
                c["name"] += t.function.name or ""
                c["arguments"] += t.function.arguments or ""
        m = whole.choices[0].message
        self.assertEqual(content, m.content or "")
        self.assertEqual([calls[i] for i in sorted(calls)],
                         [{"name": t.function.name, "arguments": t.function.arguments} for t in m.tool_calls or []])
        # Within 6 tokens the forced call may not close: what was written is kept, or it parses.
        self.assertTrue((m.content or "").startswith("<|tool_call_start|>") or m.tool_calls)


def accumulate(stream):
    """The content and tool calls of a chat stream, accumulated as openai's own stream helper
    (`client.chat.completions.stream`) does, and the finish reason."""
    content, calls, finish = "", {}, None
    for chunk in stream:
        d = chunk.choices[0].delta
        content += d.content or ""
        for t in d.tool_calls or []:
            c = calls.setdefault(t.index, {"id": t.id, "type": t.type, "name": "", "arguments": ""})
            c["name"] += t.function.name or ""
            c["arguments"] += t.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    return content, [calls[i] for i in sorted(calls)], finish


class GeneratedToolCalls(unittest.TestCase):
    """A tool call the engine really generates, token by token, through the stream parser."""

    TOOLS = [{"type": "function", "function": {
        "name": "forecast", "description": "Weather forecast",
        "parameters": {"type": "object", "properties": {"day": {"type": "integer"}}}}}]
    MSGS = [{"role": "user", "content": "Will it rain in Oslo in three days?"}]

    @classmethod
    def setUpClass(cls):
        cls.server = Server(model=TOOL_MODEL)

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def ask(self, **kw):
        return self.server.client.chat.completions.create(
            model="tool_call", messages=self.MSGS, max_tokens=24, seed=7, **kw)

    def test_streamed_tool_calls_equal_the_whole_answer_and_the_raw_text(self):
        raw = self.ask(temperature=0).choices[0].message.content
        self.assertEqual(raw, "<|tool_call_start|>[forecast(day=3)]<|tool_call_end|>")
        named = {"type": "function", "function": {"name": "forecast"}}
        for choice in ["auto", "required", named]:
            for temperature in [0, 1.0]:
                with self.subTest(tool_choice=choice, temperature=temperature):
                    kw = dict(tools=self.TOOLS, tool_choice=choice, temperature=temperature)
                    whole = self.ask(**kw)
                    m = whole.choices[0].message
                    self.assertEqual(whole.choices[0].finish_reason, "tool_calls")
                    self.assertIsNone(m.content)
                    self.assertEqual([(t.function.name, json.loads(t.function.arguments)) for t in m.tool_calls],
                                     [("forecast", {"day": 3})])
                    content, calls, finish = accumulate(self.ask(stream=True, **kw))
                    self.assertEqual((content, finish), ("", "tool_calls"))
                    self.assertEqual([(c["name"], c["arguments"], c["type"]) for c in calls],
                                     [(t.function.name, t.function.arguments, t.type) for t in m.tool_calls])
                    self.assertTrue(all(c["id"].startswith("call_") for c in calls), calls)

    def test_the_stream_helper_collects_the_call(self):
        # openai's own accumulation (ChatCompletionStreamState) over the real stream.
        with self.server.client.chat.completions.stream(
                model="tool_call", messages=self.MSGS, max_tokens=24, temperature=0, tools=self.TOOLS) as s:
            for _ in s:
                pass
            final = s.get_final_completion()
        [call] = final.choices[0].message.tool_calls
        self.assertEqual((call.function.name, json.loads(call.function.arguments)), ("forecast", {"day": 3}))
        self.assertEqual(final.choices[0].finish_reason, "tool_calls")


class Errors(unittest.TestCase):
    def test_statuses(self):
        c = SERVER.client
        with self.assertRaises(openai.AuthenticationError):
            openai.OpenAI(base_url=SERVER.base + "/v1", api_key="wrong", max_retries=0).models.list()
        with self.assertRaises(openai.BadRequestError) as e:
            c.chat.completions.create(model="tiny_b", messages=MSGS, n=2)
        self.assertEqual(e.exception.body["param"], "n")
        with self.assertRaises(openai.BadRequestError) as e:
            c.chat.completions.create(model="tiny_b", messages=MSGS, max_tokens=10_000)
        self.assertIn("maximum context length", e.exception.message)
        with self.assertRaises(openai.BadRequestError):
            c.chat.completions.create(model="tiny_b", messages=MSGS, temperature=-1)
        with self.assertRaises(openai.NotFoundError) as e:
            c.chat.completions.create(model="gpt-4o", messages=MSGS)
        self.assertEqual(e.exception.code, "model_not_found")
        with self.assertRaises(openai.APIStatusError) as e:
            c.chat.completions.create(model="tiny_b", messages=[{"role": "user", "content": "x" * (9 << 20)}])
        self.assertEqual(e.exception.status_code, 413)

    def test_full_queue_is_503(self):
        c = SERVER.client
        running = greedy([{"role": "user", "content": "Count to a thousand."}], 200, stream=True)
        for chunk in running:  # up to the first text: the engine is running it
            if chunk.choices[0].delta.content:
                break
        waiting = greedy(MSGS, 4, stream=True)
        try:
            with self.assertRaises(openai.InternalServerError) as e:
                c.chat.completions.create(model="tiny_b", messages=MSGS, max_tokens=4)
            self.assertEqual(e.exception.status_code, 503)
            self.assertIsNotNone(e.exception.response.headers.get("retry-after"))
        finally:
            running.close()
            waiting.close()
        # The abandoned requests free the engine: the next one is answered.
        t = time.time()
        while True:
            try:
                greedy(MSGS, 2)
                break
            except openai.InternalServerError:
                self.assertLess(time.time() - t, 10)
                time.sleep(0.1)


if __name__ == "__main__":
    unittest.main()

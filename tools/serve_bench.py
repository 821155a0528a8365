"""Load benchmark of `lfm serve` (issue #12), through the real `openai` client.

Starts `lfm serve --port 0` on a model, then:
1. `--clients` concurrent greedy streaming chat requests over four prompts: each answer must
   equal its solo answer (or be a clean 503); reports time to first token (first content
   delta, client side) p50 / p99 and the aggregate generated tokens per second;
2. `--cancel` streams abandoned after their first event (in batches of 25), then the time to
   first token of the next request against the same request on the idle server;
3. the server's resident memory before and after.

    python tools/serve_bench.py --lfm target/release/lfm --model tests/data/tiny_b

Needs the `openai` package (tests/openai/requirements.txt).
"""

import argparse
import statistics
import subprocess
import threading
import time

import openai

MODEL = ["m"]  # the served name, set from --model


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start(args):
    proc = subprocess.Popen(
        [args.lfm, "serve", "--model", args.model, "--port", "0", "--ctx", str(args.ctx), "--queue", str(args.queue)],
        stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("listening on http://"):
        proc.kill()
        raise SystemExit(f"no 'listening on' line: {line!r}")
    client = openai.OpenAI(base_url=line.split()[-1] + "/v1", api_key="x", max_retries=0, timeout=600)
    while True:
        try:
            client.models.list()
            return proc, client
        except openai.APIConnectionError:
            time.sleep(0.2)


def stream(client, messages, max_tokens):
    """(time to first content delta, text, completion tokens) of one greedy stream."""
    t = time.perf_counter()
    ttft, text, tokens = None, "", 0
    for chunk in client.chat.completions.create(
        model=MODEL[0], messages=messages, max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            ttft = ttft or time.perf_counter() - t
            text += chunk.choices[0].delta.content
    return ttft, text, tokens


def load(client, prompts, solo, args):
    results, refused, wrong = [], [0], [0]

    def one(i):
        try:
            ttft, text, tokens = stream(client, prompts[i % len(prompts)], args.max_tokens)
        except openai.InternalServerError as e:
            assert e.status_code == 503, e
            refused[0] += 1
            return
        if text != solo[i % len(prompts)]:
            wrong[0] += 1
        results.append((ttft, tokens))

    t = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    ttfts = sorted(r[0] for r in results if r[0] is not None)
    p99 = ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))]
    tokens = sum(r[1] for r in results)
    print(f"| {args.clients} clients, queue {args.queue} | {len(results)} answered ({wrong[0]} differ from solo), "
          f"{refused[0]} refused | TTFT p50 {statistics.median(ttfts):.2f} s, p99 {p99:.2f} s | "
          f"{tokens} tokens in {wall:.1f} s = {tokens / wall:.1f} tok/s |")


def cancellations(client, args):
    def first_ttft():
        return stream(client, [{"role": "user", "content": "Next!"}], 2)[0]

    idle = first_ttft()

    def abandon():
        s = client.chat.completions.create(
            model=MODEL[0], messages=[{"role": "user", "content": "Count to a thousand."}], max_tokens=200,
            temperature=0, stream=True,
        )
        next(iter(s))
        s.close()

    for batch in range(0, args.cancel, 25):
        threads = [threading.Thread(target=abandon) for _ in range(min(25, args.cancel - batch))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    after = first_ttft()
    print(f"| {args.cancel} streams cancelled after their first event | next request TTFT {after:.2f} s "
          f"(idle server: {idle:.2f} s) |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lfm", default="target/release/lfm")
    p.add_argument("--model", default="tests/data/tiny_b")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--queue", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--cancel", type=int, default=100)
    args = p.parse_args()
    MODEL[0] = args.model
    proc, client = start(args)
    try:
        prompts = [[{"role": "user", "content": f"Question number {i}: why?"}] for i in range(4)]
        solo = [stream(client, m, args.max_tokens)[1] for m in prompts]
        before = rss_mib(proc.pid)
        load(client, prompts, solo, args)
        cancellations(client, args)
        print(f"server RSS {before:.0f} MiB after the solo answers, {rss_mib(proc.pid):.0f} MiB at the end")
    finally:
        proc.terminate()
        proc.wait(60)


if __name__ == "__main__":
    main()

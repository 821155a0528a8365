// The page end to end: web/ (built by web/build.sh) and the tiny_b fixture served from
// 127.0.0.1 by a static server that honours Range requests (as the Hub's resolve URLs do);
// headless Chromium (WebGPU on SwiftShader) loads the model (a safetensors folder, then the
// same model as one GGUF file), a greedy message is sent, and the streamed answer must equal
// `lfm run --greedy` on the same prompt. A screenshot of each is saved.
//
// Environment: LFM_BIN (default target/debug/lfm), CHROMIUM (default /usr/bin/chromium),
// PAGE_TEST_OUT (screenshot folder, default target/page-test).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { launch, ROOT, serve, waitState } from "./serve.mjs";

const CASES = [
  { name: "a safetensors folder", url: "/fixtures/tiny_b/", weights: "tiny_b/model.safetensors", dtype: "f32",
    native: ["--model", "tests/data/tiny_b", "--dtype", "f32"], shot: "chat-safetensors.png" },
  { name: "a GGUF file", url: "/fixtures/gguf/tiny_b.f16.gguf", weights: "gguf/tiny_b.f16.gguf", dtype: "f32",
    native: ["--model", "tests/data/gguf/tiny_b.f16.gguf"], shot: "chat-gguf.png" },
];
const PROMPT = "Hello there! What can you do?";
const MAX_TOKENS = 24;

function nativeAnswer(model) {
  const bin = process.env.LFM_BIN ?? join(ROOT, "target/debug/lfm");
  const out = execFileSync(bin, [
    "run", ...model, "--prompt", PROMPT, "--greedy", "--max-new-tokens", String(MAX_TOKENS), "--ctx", "256",
  ], { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  return out.endsWith("\n") ? out.slice(0, -1) : out;
}

for (const c of CASES) test(`the page loads ${c.name} in headless Chromium and answers as lfm run does`, { timeout: 600_000 }, async () => {
  assert.ok(existsSync(join(ROOT, "web/pkg/lfm_wgpu_bg.wasm")), "build the page first: web/build.sh");
  const want = nativeAnswer(c.native);
  const log = [];
  const server = await serve({ "/fixtures/": join(ROOT, "tests/data") }, log);
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    const consoleLines = [];
    page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
    const state = (s) => waitState(page, s).catch((e) => assert.fail(`${e.message}\n${consoleLines.join("\n")}`));
    const noError = (what) => state("ready").catch((e) => assert.fail(`${what}: ${e.message}`));
    const { port } = server.address();
    await page.goto(`http://127.0.0.1:${port}/?model=${c.url}&dtype=${c.dtype}`);
    await state("ready-to-load");
    const adapter = await page.textContent("#adapter");
    await page.fill("#ctx", "256");
    await page.click("#load-button");
    await state("ready");

    await page.click("#settings summary");
    await page.fill("#temperature", "0");
    await page.fill("#max-tokens", String(MAX_TOKENS));
    await page.fill("#input", PROMPT);
    await page.click("#send");
    await page.waitForFunction(() => document.body.dataset.state !== "answering" && document.querySelector("#stats").textContent, null, { timeout: 300_000 });
    await noError("answering");
    const got = await page.textContent(".message.assistant");
    const stats = await page.textContent("#stats");
    const out = resolve(process.env.PAGE_TEST_OUT ?? join(ROOT, "target/page-test"));
    mkdirSync(out, { recursive: true });
    const shot = join(out, c.shot);
    await page.screenshot({ path: shot, fullPage: true });
    const loaded = await page.textContent("#load-status");
    console.log(`${c.name}\nadapter: ${adapter}\n${loaded}\nanswer stats: ${stats}\nscreenshot: ${shot}`);
    assert.equal(got, want, "the page's greedy answer equals lfm run --greedy");

    // The weights came in ranges, never as one whole-file download.
    const weights = `/fixtures/${c.weights}`;
    assert.ok(!log.some((r) => r.path === weights && r.whole), `${c.weights} was downloaded whole`);
    // Headers come from prefixes (ranges from 0, grown for a GGUF), tensors each once after.
    const ranges = log.filter((r) => r.path === weights);
    const tensors = ranges.filter((r) => r.start > 0).reduce((n, r) => n + r.end - r.start, 0);
    const size = statSync(join(ROOT, "tests/data", c.weights)).size;
    assert.ok(tensors <= size, `${tensors} bytes of tensors fetched for a ${size}-byte file`);
    assert.ok(ranges.filter((r) => r.start === 0).length <= 4, "the header was fetched too often");

    // A second turn continues the conversation; reset empties it.
    await page.fill("#input", "And then?");
    await page.click("#send");
    await page.waitForFunction(() => document.querySelectorAll(".message.assistant").length === 2 && document.body.dataset.state !== "answering", null, { timeout: 300_000 });
    await noError("the second turn");
    await page.click("#reset");
    assert.equal(await page.locator(".message").count(), 0);

    // Stop ends an answer early, keeping what was said.
    await page.fill("#max-tokens", "200");
    await page.fill("#input", PROMPT);
    await page.click("#send");
    await page.waitForFunction(() => document.querySelector(".message.assistant")?.textContent.length > 0, null, { timeout: 300_000 });
    await page.click("#stop");
    await page.waitForFunction(() => document.body.dataset.state !== "answering", null, { timeout: 300_000 });
    await noError("stopping");
    const stopped = await page.textContent("#stats");
    assert.match(stopped, /stopped: stop/, stopped);
    assert.ok(Number(stopped.split(" ")[0]) < 200, stopped);
    await page.click("#reset");

    // A reload loads from Cache Storage: no tensor is downloaded again.
    const before = log.length;
    await page.reload();
    await state("ready-to-load");
    await page.fill("#ctx", "256");
    await page.click("#load-button");
    await state("ready");
    const again = log.slice(before).filter((r) => r.path === weights && r.start > 0);
    assert.equal(again.length, 0, `${again.length} tensor ranges downloaded again after a reload`);
  } finally {
    await browser.close();
    server.close();
  }
});

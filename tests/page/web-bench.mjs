// wgpu-bench's figures in the browser: serves web/ and one model file from 127.0.0.1, opens
// the page with ?bench=pp,tg,reps in headless Chromium (WebGPU on SwiftShader here), streams
// the model in and prints the load time and tokens/s as JSON.
//   node tests/page/web-bench.mjs MODEL.gguf [pp] [tg] [reps]     (web/build.sh first)
// A safetensors folder works too: pass the folder (config.json + model.safetensors) and the
// storage format as a fifth argument (q4_0 by default; GGUF files keep their own).
import { existsSync, statSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { launch, serve, waitState } from "./serve.mjs";

const [model, pp = "64", tg = "16", reps = "2", dtype = "q4_0"] = process.argv.slice(2);
if (!model || !existsSync(model)) {
  console.error("usage: node tests/page/web-bench.mjs MODEL.gguf|MODEL_DIR [pp] [tg] [reps] [dtype]");
  process.exit(2);
}
const dir = statSync(model).isDirectory();
const mounts = { "/model/": resolve(dir ? model : dirname(model)) };
const url = dir ? "/model/" : `/model/${basename(model)}`;
const server = await serve(mounts, []);
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/?model=${url}&dtype=${dtype}&bench=${pp},${tg},${reps}`);
  await waitState(page, "ready-to-load");
  await page.click("#load-button");
  await waitState(page, "benched", 3_600_000);
  const bench = JSON.parse(await page.getAttribute("#stats", "data-bench"));
  const load_s = Number(await page.getAttribute("#load-status", "data-seconds"));
  const adapter = await page.textContent("#adapter");
  console.log(JSON.stringify({ model, adapter, load_s, ...bench }, null, 1));
} finally {
  await browser.close();
  server.close();
}

// The page: opens WebGPU, streams a checkpoint tensor by tensor into GPU buffers (the engine
// asks for byte ranges; nothing holds the whole file), then chats with streamed tokens.
// document.body.dataset.state tells where it is: start, ready-to-load, loading, ready,
// answering, benched (?bench=pp,tg,reps), error (the page test waits on it).
import init, { Engine } from "./pkg/lfm_wgpu.js";

const $ = (id) => document.getElementById(id);
const CACHE = "lfm-wgpu-v1";
let engine = null;
let chat = null;

function setState(s) {
  document.body.dataset.state = s;
}

function showError(e) {
  let msg = e instanceof Error ? e.message : String(e);
  // A panic in the engine reaches JS as a bare "unreachable"; the engine kept its message.
  const panic = engine && Engine.last_panic();
  if (panic) msg = `the engine stopped: ${panic}`;
  $("error").textContent = msg;
  $("error").hidden = false;
  setState("error");
  console.error(msg);
}

function gib(bytes) {
  return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(2)} GiB` : `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}

// What the input names: a GGUF file (a URL ending in .gguf, or a Hugging Face repo id with
// a quant tag, "LiquidAI/LFM2-8B-A1B-GGUF:Q4_0", matched against the repo's files as
// llama.cpp's -hf does), else a model folder (a URL, or a repo id) with model.safetensors.
async function resolveInput(input) {
  const text = input.trim();
  if (!text) throw new Error("name a model: a Hugging Face repo id, a URL, or pick its files");
  const isUrl = /^(https?:)?\/|^\./.test(text);
  if (isUrl && text.toLowerCase().endsWith(".gguf")) {
    const cut = text.lastIndexOf("/") + 1;
    return { src: urlSource(text.slice(0, cut)), weights: text.slice(cut), kind: "gguf" };
  }
  if (isUrl) return { src: urlSource(text), weights: "model.safetensors", kind: "safetensors" };
  const [repo, tag] = text.split(":");
  const base = `https://huggingface.co/${repo}/resolve/main/`;
  if (!tag) return { src: urlSource(base), weights: "model.safetensors", kind: "safetensors" };
  const r = await fetch(`https://huggingface.co/api/models/${repo}`);
  if (!r.ok) throw new Error(`${repo}: the Hub answered HTTP ${r.status}`);
  const names = (await r.json()).siblings.map((s) => s.rfilename).filter((n) => n.toLowerCase().endsWith(".gguf"));
  const want = tag.toLowerCase();
  const hit = names.find((n) => n.toLowerCase().replace(/\.gguf$/, "").endsWith(want)) ?? names.find((n) => n.toLowerCase().includes(want));
  if (!hit) throw new Error(`${repo} has no GGUF file tagged ${tag} (it has: ${names.join(", ") || "none"})`);
  return { src: urlSource(base), weights: hit, kind: "gguf" };
}

// Files on a server under `base` (CORS and Range requests: the Hub's resolve URLs allow
// both). Ranges are kept in Cache Storage, so a reload does not download them again.
function urlSource(base) {
  if (!base.endsWith("/")) base += "/";
  const cache = "caches" in self ? caches.open(CACHE) : Promise.resolve(null);
  async function cached(key, fetchIt) {
    const c = await cache;
    const hit = c && (await c.match(key));
    if (hit) return hit.arrayBuffer();
    const body = await fetchIt();
    if (c) await c.put(key, new Response(body.slice(0)));
    return body;
  }
  async function get(name, init) {
    const r = await fetch(base + name, init);
    if (!r.ok) throw new Error(`${base + name}: HTTP ${r.status}`);
    return r;
  }
  return {
    name: base,
    async text(name, optional = false) {
      try {
        const body = await cached(base + name, async () => (await get(name)).arrayBuffer());
        return new TextDecoder().decode(body);
      } catch (e) {
        if (optional) return "";
        throw e;
      }
    },
    async bytes(name) {
      return cached(base + name, async () => (await get(name)).arrayBuffer());
    },
    async size(name) {
      const r = await get(name, { headers: { Range: "bytes=0-0" } });
      const range = r.headers.get("Content-Range");
      await r.body?.cancel();
      const total = range && Number(range.split("/")[1]);
      if (total) return total;
      const len = Number(r.headers.get("Content-Length"));
      if (r.status === 200 && len) return len;
      throw new Error(`${base + name}: the server gave no size`);
    },
    async range(name, start, end) {
      return cached(`${base + name}?lfm-range=${start}-${end}`, async () => {
        const r = await get(name, { headers: { Range: `bytes=${start}-${end - 1}` } });
        const body = await r.arrayBuffer();
        if (r.status === 206 && body.byteLength === end - start) return body;
        if (r.status === 200) return body.slice(start, end); // no Range support: whole file
        throw new Error(`${base + name}: asked for ${end - start} bytes at ${start}, got ${body.byteLength}`);
      });
    },
  };
}

// The files of a model folder picked with <input type=file>, read slice by slice.
function fileSource(list) {
  const files = new Map([...list].map((f) => [f.name, f]));
  const file = (name) => {
    const f = files.get(name);
    if (!f) throw new Error(`pick ${name} too (the folder's config.json, tokenizer.json, tokenizer_config.json and model.safetensors)`);
    return f;
  };
  return {
    name: [...files.keys()].join(", "),
    async text(name, optional = false) {
      if (optional && !files.has(name)) return "";
      return file(name).text();
    },
    async bytes(name) {
      return file(name).arrayBuffer();
    },
    async size(name) {
      return file(name).size;
    },
    async range(name, start, end) {
      return file(name).slice(start, end).arrayBuffer();
    },
  };
}

// Opens `weights` for streaming: a safetensors file (its config.json beside it; matrices
// converted to `dtype`) or a GGUF file (its header read from a prefix grown until it holds
// it; matrices in the file's own formats).
async function openLoader(src, weights, kind, dtype) {
  const len = await src.size(weights);
  if (kind === "gguf") {
    for (let head = 1 << 20; ; head *= 4) {
      const bytes = await src.range(weights, 0, Math.min(head, len));
      const loader = engine.stream_gguf(weights, new Uint8Array(bytes), len);
      if (loader) return loader;
      if (head >= len) throw new Error(`${weights}: the header runs past the end of the file`);
    }
  }
  const config = await src.text("config.json");
  const n = Number(new DataView(await src.range(weights, 0, 8)).getBigUint64(0, true));
  if (!(n > 0 && 8 + n <= len)) throw new Error(`${weights}: not a safetensors file (header of ${n} bytes)`);
  const header = await src.range(weights, 0, 8 + n);
  return engine.stream_safetensors(weights, config, new Uint8Array(header), len, dtype);
}

async function load() {
  $("error").hidden = true;
  const dtype = $("dtype").value;
  const ctx = Number($("ctx").value);
  setState("loading");
  $("load-button").disabled = true;
  const status = $("load-status");
  const bar = $("progress");
  bar.hidden = false;
  const t0 = performance.now();
  try {
    const files = [...$("files").files];
    const gguf = files.find((f) => f.name.toLowerCase().endsWith(".gguf"));
    const { src, weights, kind } = files.length
      ? { src: fileSource(files), weights: gguf?.name ?? "model.safetensors", kind: gguf ? "gguf" : "safetensors" }
      : await resolveInput($("source").value);
    status.textContent = `Reading ${weights} (${src.name})…`;
    const loader = await openLoader(src, weights, kind, dtype);
    const [, , , total] = loader.progress();
    const stored = loader.dtype();
    status.textContent = `Loading ${gib(total)} of ${stored} weights onto the GPU…`;
    for (let wanted = loader.wanted(); wanted; wanted = loader.wanted()) {
      const pieces = [];
      for (let i = 0; i < wanted.length; i += 2) {
        const [start, end] = [wanted[i], wanted[i + 1]];
        pieces.push(src.range(weights, start, end).then((b) => [start, b]));
      }
      for (const [start, bytes] of await Promise.all(pieces)) loader.feed(start, new Uint8Array(bytes));
      const [done, all, up] = loader.progress();
      bar.value = up / total;
      status.textContent = `Loading: ${done} / ${all} tensors, ${gib(up)} of ${gib(total)}`;
    }
    const bench = new URLSearchParams(location.search).get("bench");
    if (bench) {
      // ?bench=pp,tg,reps: wgpu-bench's prefill and decode figures, no tokenizer needed.
      const [pp, tg, reps] = bench.split(",").map(Number);
      status.textContent = `Loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s; benchmarking pp${pp} tg${tg}…`;
      status.dataset.seconds = (performance.now() - t0) / 1000;
      const r = await loader.bench(pp, tg, reps || 1);
      $("stats").textContent = r;
      $("stats").dataset.bench = r;
      setState("benched");
      return;
    }
    if (kind === "safetensors") {
      const [tokenizer, tokConfig, genConfig] = await Promise.all([
        src.bytes("tokenizer.json"),
        src.text("tokenizer_config.json"),
        src.text("generation_config.json", true),
      ]);
      loader.set_tokenizer(new Uint8Array(tokenizer), tokConfig, genConfig);
    }
    chat = loader.finish(ctx);
    const seconds = (performance.now() - t0) / 1000;
    status.textContent = `Loaded ${weights}: ${gib(total)} of ${stored} weights in ${seconds.toFixed(1)} s ` +
      `(wasm memory ${gib(Engine.wasm_memory())}).`;
    status.dataset.seconds = seconds;
    $("chat").hidden = false;
    setState("ready");
  } catch (e) {
    showError(e);
  } finally {
    $("load-button").disabled = false;
  }
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  div.textContent = text;
  $("messages").append(div);
  return div;
}

async function send(event) {
  event.preventDefault();
  const text = $("input").value;
  if (!text.trim() || !chat) return;
  $("error").hidden = true;
  const num = (id) => Number($(id).value);
  try {
    chat.set_sampling(num("temperature"), num("top-k"), num("top-p"), num("min-p"), num("repetition-penalty"), num("seed"));
  } catch (e) {
    showError(e);
    return;
  }
  $("input").value = "";
  addMessage("user", text);
  const answer = addMessage("assistant", "");
  setState("answering");
  $("send").disabled = true;
  $("stop").disabled = false;
  try {
    const stats = JSON.parse(await chat.send(text, num("max-tokens"), (piece) => {
      answer.textContent += piece;
      $("messages").scrollTop = $("messages").scrollHeight;
    }));
    $("stats").textContent =
      `${stats.new_tokens} tokens · first token ${stats.time_to_first_token_s.toFixed(2)} s · ` +
      `${stats.decode_tokens_per_s.toFixed(1)} tokens/s · stopped: ${stats.stopped}`;
    $("stats").dataset.tokensPerS = stats.decode_tokens_per_s;
    setState("ready");
  } catch (e) {
    showError(e);
  } finally {
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

async function main() {
  setState("start");
  const params = new URLSearchParams(location.search);
  if (params.has("model")) $("source").value = params.get("model");
  if (params.has("dtype")) $("dtype").value = params.get("dtype");
  if (!navigator.gpu) {
    showError("This browser has no WebGPU (navigator.gpu is missing). Use Chrome or Edge 113+, Safari 18+, or Chromium with --enable-unsafe-webgpu.");
    return;
  }
  try {
    await init();
    engine = await Engine.open();
  } catch (e) {
    showError(e);
    return;
  }
  const a = JSON.parse(engine.adapter());
  $("adapter").textContent =
    `Adapter: ${a.name || "(unnamed)"} (${a.backend}) · shader-f16 ${a.shader_f16 ? "yes" : "no"} · ` +
    `subgroups ${a.subgroups ? "yes" : "no"} · ` +
    `int8 decode of quantized weights ${a.int8_activations ? "yes" : "no"} · largest buffer ${gib(a.max_buffer_size)}, ` +
    `largest binding ${gib(a.max_storage_buffer_binding_size)}`;
  if (!a.shader_f16 && $("dtype").value === "f16") $("dtype").value = "q8_0";
  $("load-button").onclick = load;
  $("composer").onsubmit = send;
  $("stop").onclick = () => chat?.stop();
  $("reset").onclick = () => {
    try {
      chat?.reset();
      $("messages").replaceChildren();
      $("stats").textContent = "";
    } catch (e) {
      showError(e);
    }
  };
  setState("ready-to-load");
}

main();

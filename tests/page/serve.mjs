// A static server for the page tests and web-bench: "/" → web/, and each prefix of `mounts`
// → a folder; single byte ranges are answered with 206 (as the Hub's resolve URLs do), and
// every request is appended to `log`. Chromium is launched with WebGPU enabled.
import { createServer } from "node:http";
import { createReadStream, existsSync, statSync } from "node:fs";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm", ".json": "application/json" };

export function serve(mounts, log) {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const mount = Object.keys(mounts).find((m) => path.startsWith(m));
    const [base, rest] = mount
      ? [mounts[mount], path.slice(mount.length)]
      : [join(ROOT, "web"), path === "/" ? "index.html" : path.slice(1)];
    const file = normalize(join(base, rest));
    if (!file.startsWith(base) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    const size = statSync(file).size;
    const headers = { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream", "Accept-Ranges": "bytes" };
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
    if (m) {
      const [start, end] = [Number(m[1]), Math.min(Number(m[2]), size - 1)];
      log.push({ path, start, end: end + 1 });
      res.writeHead(206, { ...headers, "Content-Range": `bytes ${start}-${end}/${size}`, "Content-Length": end - start + 1 });
      createReadStream(file, { start, end }).pipe(res);
    } else {
      log.push({ path, whole: true, size });
      res.writeHead(200, { ...headers, "Content-Length": size });
      createReadStream(file).pipe(res);
    }
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-gpu-sandbox", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
}

// Resolves when document.body.dataset.state is `want` (or "error": then rejects with the
// page's message).
export async function waitState(page, want, timeout = 600_000) {
  await page.waitForFunction((w) => [w, "error"].includes(document.body.dataset.state), want, { timeout });
  if ((await page.evaluate(() => document.body.dataset.state)) === "error") {
    throw new Error(`the page says: ${await page.textContent("#error")}`);
  }
}

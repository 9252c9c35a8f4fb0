// The playground: the controls make a live /i/ URL (written here for the open demo
// project, or signed by the gateway through POST /v1/urls with a pasted key), the preview
// fetches that URL to show the image with its X-Cache-Status and Server-Timing, and the
// snippets show how to use the same image elsewhere. A pasted key lives in this module's
// memory only: never in storage, cookies, the URL or a snippet.

const page = document.body.dataset;
const DEMO = page.demo === "1";
const BASE = (page.base || location.origin).replace(/\/+$/, "");
const MAX = Number(page.max) || 4096;
const DEFAULT_FORMAT = page.format || "webp";

// The gateway's parameter order (gateway/urls.py ORDER): the same image has one URL.
const ORDER = ["prompt", "ar", "style", "neg", "seed", "enhance", "model",
  "w", "h", "dpr", "fit", "anchor", "fmt", "q", "bg", "rmbg", "blur", "ch"];
const LADDER = [320, 640, 960, 1280, 1920];
const NUMBERS = new Set(["seed", "w", "h", "dpr", "q", "blur"]);
const KEY_PLACEHOLDER = "YOUR_PROMPTPIX_KEY";

const $ = (id) => document.getElementById(id);
const state = { key: "", project: DEMO ? "demo" : "", signs: false, seq: 0, abort: null, blob: "" };

// --- the parameters ------------------------------------------------------------------

/** The controls' values as a live URL's fields (strings), defaults left out. */
function fields() {
  const out = {};
  const prompt = $("prompt").value.trim();
  if (prompt) out.prompt = prompt;
  out.ar = $("ar").value === "custom" ? $("ar-custom").value.trim() : $("ar").value;
  for (const name of ["style", "seed", "w", "h", "dpr", "fit", "anchor", "fmt", "q", "blur"]) {
    const value = $(name).value.trim();
    if (value !== "" && !(name === "seed" && value === "0")) out[name] = value;
  }
  if ($("rmbg").checked) out.rmbg = "1";
  return out;
}

/** Percent-encoding as the gateway writes it: UTF-8, `:` and `,` kept. */
function encode(value) {
  return encodeURIComponent(value)
    .replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase())
    .replace(/%3A/g, ":")
    .replace(/%2C/g, ",");
}

function query(values) {
  const rank = (name) => (ORDER.includes(name) ? ORDER.indexOf(name) : 99);
  return Object.keys(values)
    .sort((a, b) => rank(a) - rank(b))
    .map((name) => `${name}=${encode(values[name])}`)
    .join("&");
}

function liveUrl(project, values) {
  return `${BASE}/i/${project}?${query(values)}`;
}

/** The box in CSS pixels: `w`/`h` as given, the other side from the ratio. */
function box(values) {
  const [rw, rh] = (values.ar || "1:1").split(":").map(Number);
  let w = Number(values.w) || 0;
  let h = Number(values.h) || 0;
  if (rw > 0 && rh > 0) {
    if (w && !h) h = Math.round((w * rh) / rw);
    else if (h && !w) w = Math.round((h * rw) / rh);
  }
  return [w, h];
}

function widths(values) {
  const w = Number(values.w);
  const chosen = Number.isInteger(w) && w > 0 ? [w, Math.round(w * 1.5), w * 2] : LADDER;
  return [...new Set(chosen.map((x) => Math.min(Math.max(1, x), MAX)))].sort((a, b) => a - b);
}

function srcset(project, values) {
  const w0 = Number(values.w) || 0;
  return widths(values).map((width) => {
    const each = { ...values, w: String(width) };
    delete each.dpr;
    if (w0 && Number(values.h)) each.h = String(Math.max(1, Math.round((Number(values.h) * width) / w0)));
    return `${liveUrl(project, each)} ${width}w`;
  }).join(", ");
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;" })[c]);
}

/** What POST /v1/urls answers, written here for a project that does not sign. */
function unsignedUrls(project, values) {
  const url = liveUrl(project, values);
  const set = srcset(project, values);
  const [w, h] = box(values);
  const sizes = w ? `(max-width: ${w}px) 100vw, ${w}px` : "100vw";
  const attrs = [`src="${escapeHtml(url)}"`, `srcset="${escapeHtml(set)}"`, `sizes="${escapeHtml(sizes)}"`];
  if (w && h) attrs.push(`width="${w}" height="${h}"`);
  attrs.push(`alt="${escapeHtml((values.prompt || "").slice(0, 200))}" loading="lazy" decoding="async"`);
  return { url, srcset: set, html: `<img ${attrs.join(" ")}>`, width: w || null, height: h || null };
}

class ApiError extends Error {
  constructor(status, error, retryAfter) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || `http_${status}`;
    this.param = error.param || null;
    this.retryAfter = retryAfter;
  }
}

async function failure(response) {
  let error = {};
  try {
    error = (await response.json()).error || {};
  } catch {
    error = { message: `${response.status} ${response.statusText}` };
  }
  const retry = response.headers.get("retry-after");
  return new ApiError(response.status, error, retry === null ? null : Number(retry));
}

/** The JSON body of POST /v1/urls: numbers as numbers, `rmbg` as a boolean. */
function urlBody(values) {
  const body = {};
  for (const [name, value] of Object.entries(values)) {
    if (name === "rmbg") body.rmbg = value === "1";
    else if (NUMBERS.has(name) && value !== "" && !Number.isNaN(Number(value))) body[name] = Number(value);
    else body[name] = value;
  }
  return body;
}

/** The current image's URL, srcset and <img>: signed by the gateway when a key is given. */
async function resolve(values, signal) {
  if (!state.key) {
    if (!DEMO) throw new ApiError(401, { code: "unauthorized", message: "This gateway has no open demo project: paste a key of your project." }, null);
    return unsignedUrls("demo", values);
  }
  const response = await fetch("/v1/urls", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${state.key}` },
    body: JSON.stringify(urlBody(values)),
    signal,
    credentials: "omit",
  });
  if (!response.ok) throw await failure(response);
  const answer = await response.json();
  const url = new URL(answer.url, location.href);
  state.project = decodeURIComponent(url.pathname.replace(/^\/i\//, ""));
  state.signs = url.searchParams.has("sig");
  return answer;
}

// --- the preview ---------------------------------------------------------------------

function timings(header) {
  if (!header) return "–";
  return header.split(",").map((part) => {
    const [name, ...rest] = part.trim().split(";");
    const dur = rest.map((p) => p.trim()).find((p) => p.startsWith("dur="));
    if (!dur) return name;
    const ms = Number(dur.slice(4));
    return `${name} ${ms < 1 ? ms.toFixed(2) : ms.toFixed(1)} ms`;
  }).join(" · ");
}

function kb(bytes) {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KB`;
}

async function preview(url, signal) {
  const started = performance.now();
  const target = new URL(url, location.href);
  // Same origin: the page may read every header (a public URL on another host is the
  // same gateway; its path and query are fetched here).
  const response = await fetch(target.pathname + target.search, { signal, credentials: "omit" });
  if (!response.ok) throw await failure(response);
  const blob = await response.blob();
  const elapsed = performance.now() - started;
  const image = $("preview");
  const objectUrl = URL.createObjectURL(blob);
  image.src = objectUrl;
  await image.decode();
  if (state.blob) URL.revokeObjectURL(state.blob);
  state.blob = objectUrl;
  image.dataset.url = url;
  $("cache-status").textContent = response.headers.get("x-cache-status") || "–";
  $("size").textContent = `${image.naturalWidth}×${image.naturalHeight} px · ${blob.type || "?"} · ${kb(blob.size)}`;
  $("time").textContent = `${elapsed.toFixed(0)} ms in the browser`;
  $("timing").textContent = timings(response.headers.get("server-timing"));
  $("caption").textContent = $("prompt").value.trim();
}

// --- errors --------------------------------------------------------------------------

const HINTS = {
  400: "A parameter is out of its range: fix the field marked in red.",
  401: "The key is missing, unknown or revoked.",
  403: "Signature or permission: a project that signs needs a key of it, pasted above.",
  404: "No such project or asset.",
  422: "The generator refused this prompt: reword it.",
  429: "Quota, budget or rate limit reached.",
  503: "Every generator failed; try again shortly.",
  504: "Generation is taking longer than a request may wait; it goes on: reload in a moment.",
};

function clearError() {
  $("error").hidden = true;
  for (const marked of document.querySelectorAll("[aria-invalid]")) marked.removeAttribute("aria-invalid");
}

function showError(error) {
  const box = $("error");
  box.hidden = false;
  if (error instanceof ApiError) {
    $("error-title").textContent = `${error.status} ${error.code}${error.param ? ` (${error.param})` : ""}`;
    const retry = error.retryAfter ? ` Retry after ${error.retryAfter} s.` : "";
    $("error-message").textContent = `${error.message}. ${HINTS[error.status] || ""}${retry}`;
    box.dataset.code = error.code;
    box.dataset.status = String(error.status);
    const field = error.param === "ar" && $("ar").value === "custom" ? $("ar-custom") : error.param && $(error.param);
    if (field && field.closest("#controls")) field.setAttribute("aria-invalid", "true");
  } else {
    $("error-title").textContent = "The gateway could not be reached";
    $("error-message").textContent = String(error.message || error);
    box.dataset.code = "network";
    box.dataset.status = "0";
  }
}

// --- snippets ------------------------------------------------------------------------

function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

function pyValue(name, value) {
  if (NUMBERS.has(name) && value !== "" && !Number.isNaN(Number(value))) return String(Number(value));
  return JSON.stringify(value);
}

function generationBody(values) {
  const body = { prompt: values.prompt || "", aspect_ratio: values.ar || "1:1" };
  if (values.style) body.style = values.style;
  body.seed = Number(values.seed || 0);
  return body;
}

function snippets(values, urls) {
  const key = KEY_PLACEHOLDER; // the pasted key never goes into a snippet
  const gen = generationBody(values);
  const ext = { jpeg: "jpg", png: "png", avif: "avif", webp: "webp", auto: "img" }[values.fmt || DEFAULT_FORMAT] || "img";
  const curl = [
    "# the live image: made on its first request, then the same bytes for a year",
    `curl -o image.${ext} ${shellQuote(urls.url)}`,
    "",
    "# or generate (or find) the original through the JSON API, with a project key",
    `curl -X POST ${shellQuote(`${BASE}/v1/generations`)} \\`,
    '  -H "Authorization: Bearer $PROMPTPIX_API_KEY" \\',
    "  -H 'Content-Type: application/json' \\",
    `  -d ${shellQuote(JSON.stringify(gen))}`,
  ].join("\n");
  const genArgs = [JSON.stringify(gen.prompt), `aspect_ratio=${JSON.stringify(gen.aspect_ratio)}`];
  if (gen.style) genArgs.push(`style=${JSON.stringify(gen.style)}`);
  genArgs.push(`seed=${gen.seed}`);
  const urlArgs = Object.entries(values).map(([n, v]) => `${n}=${pyValue(n, v)}`);
  const python = [
    "import os",
    "",
    "from promptpix.client import Client",
    "",
    `client = Client(${JSON.stringify(BASE)}, api_key=os.environ["PROMPTPIX_API_KEY"])`,
    "",
    "# generate (or find) the original, and its URLs",
    `g = client.generate(${genArgs.join(", ")})`,
    'print(g["urls"]["live"])',
    "",
    "# a live URL without generating (signed when the project signs)",
    `url = client.image_url(${urlArgs.join(", ")})`,
    "print(url)",
  ].join("\n");
  const jsParams = `{ ${Object.entries(values).map(([n, v]) => `${n}: ${pyValue(n, v)}`).join(", ")} }`;
  const project = state.project || "demo";
  const jsGen = `{ ${Object.entries(gen).map(([n, v]) => `${n}: ${JSON.stringify(v)}`).join(", ")} }`;
  const js = [
    `import { ${state.signs ? "signedImageUrl" : "imageUrl"}, Client } from "@promptpix/sdk";`,
    "",
    ...(state.signs
      ? [
        "// this project signs its URLs: sign on your server, where the secret lives",
        "// (mode: the project's signing mode, \"required\" or \"generation\")",
        `const url = await signedImageUrl(${JSON.stringify(BASE)}, ${JSON.stringify(project)}, ${jsParams},`,
        '  { secret: process.env.PROMPTPIX_SIGNING_SECRET, mode: "required" });',
      ]
      : [
        "// a live URL, written byte for byte as the gateway writes it",
        `const url = imageUrl(${JSON.stringify(BASE)}, ${JSON.stringify(project)}, ${jsParams});`,
      ]),
    "",
    "// generate (or find) the original through the JSON API, with a project key",
    `const client = new Client({ baseUrl: ${JSON.stringify(BASE)}, apiKey: process.env.PROMPTPIX_API_KEY });`,
    `const g = await client.generate(${jsGen});`,
    "console.log(g.urls.live);",
  ].join("\n");
  const mcpConfig = {
    mcpServers: {
      promptpix: {
        command: "promptpix",
        args: ["mcp"],
        env: { PROMPTPIX_URL: BASE, PROMPTPIX_API_KEY: key },
      },
    },
  };
  const mcp = [
    "// a desktop client (stdio): add to its MCP configuration",
    JSON.stringify(mcpConfig, null, 2),
    "",
    "// a client that speaks streamable HTTP",
    `URL:    ${BASE}/mcp`,
    `Header: Authorization: Bearer ${key}`,
  ].join("\n");
  $("snippet-html").textContent = urls.html;
  $("snippet-curl").textContent = curl;
  $("snippet-python").textContent = python;
  $("snippet-js").textContent = js;
  $("snippet-mcp").textContent = mcp;
}

// --- wiring --------------------------------------------------------------------------

function projectNote() {
  let text;
  if (state.key) {
    text = state.project
      ? `Project “${state.project}”, with your key${state.signs ? ": its URLs are signed by the gateway (POST /v1/urls)" : ""}.`
      : "Using your key.";
  } else if (DEMO) {
    text = "The open demo project: no key needed. Paste a project key to use your own (signed URLs come from POST /v1/urls).";
  } else {
    text = "This gateway has no open demo project: paste a key of your project.";
  }
  $("project-note").textContent = text;
  $("key-forget").hidden = !state.key;
}

async function refresh() {
  const seq = ++state.seq;
  if (state.abort) state.abort.abort();
  const abort = new AbortController();
  state.abort = abort;
  document.body.dataset.state = "loading";
  $("figure").classList.add("busy");
  const values = fields();
  try {
    const urls = await resolve(values, abort.signal);
    if (seq !== state.seq) return;
    projectNote();
    $("live-url").textContent = urls.url;
    $("live-url").href = new URL(urls.url, location.href).href;
    snippets(values, urls);
    await preview(urls.url, abort.signal);
    if (seq !== state.seq) return;
    clearError();
    $("figure").classList.remove("busy", "stale");
    document.body.dataset.state = "ready";
  } catch (error) {
    if (seq !== state.seq || error.name === "AbortError") return;
    clearError();
    showError(error);
    $("figure").classList.remove("busy");
    $("figure").classList.add("stale");
    document.body.dataset.state = "error";
  }
}

let timer = 0;
function soon() {
  clearTimeout(timer);
  timer = setTimeout(refresh, 350);
}

function useKey() {
  const key = $("key").value.trim();
  if (!key) return;
  state.key = key;
  state.project = "";
  state.signs = false;
  $("key").value = "";
  $("key").placeholder = `${key.slice(0, 8)}… in use`;
  projectNote();
  refresh();
}

function forgetKey() {
  state.key = "";
  state.project = DEMO ? "demo" : "";
  state.signs = false;
  $("key").placeholder = "ppk_…";
  projectNote();
  refresh();
}

function showTab(name) {
  for (const tab of document.querySelectorAll("[data-tab]")) tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  for (const box of document.querySelectorAll("[data-snippet]")) box.hidden = box.dataset.snippet !== name;
}

async function copy(button) {
  const code = button.parentElement.querySelector("code");
  try {
    await navigator.clipboard.writeText(code.textContent);
    button.textContent = "Copied";
  } catch {
    // No clipboard permission: select the text, for Ctrl+C.
    const range = document.createRange();
    range.selectNodeContents(code);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "Selected";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

function start() {
  const form = $("controls");
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("input", (event) => {
    if (event.target.id === "key") return;
    if (event.target.id === "ar") $("custom-box").hidden = $("ar").value !== "custom";
    soon();
  });
  $("key-use").addEventListener("click", useKey);
  $("key").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      useKey();
    }
  });
  $("key-forget").addEventListener("click", forgetKey);
  for (const tab of document.querySelectorAll("[data-tab]")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
  for (const button of document.querySelectorAll(".copy")) button.addEventListener("click", () => copy(button));
  projectNote();
  refresh();
}

start();

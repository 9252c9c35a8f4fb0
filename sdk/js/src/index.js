/**
 * promptpix SDK: live image URLs written byte for byte as the gateway writes them, their
 * signatures (WebCrypto HMAC-SHA256), srcsets, and a client for the JSON API (`/v1`).
 * No runtime dependencies; Node 18+ and browsers.
 */

const GENERATION_PARAMS = ["prompt", "ar", "style", "neg", "seed", "enhance", "model"];
const TRANSFORM_PARAMS = ["w", "h", "dpr", "fit", "anchor", "fmt", "q", "bg", "rmbg", "blur"];
const ORDER = [...GENERATION_PARAMS, ...TRANSFORM_PARAMS, "ch"];
const SIGNED_IN_GENERATION = new Set(GENERATION_PARAMS);
const SIG = "sig";
const SIG_LENGTH = 32;
/** The natively generated ratios; under `generation` signing `w`×`h` picks the nearest. */
const NATIVE = [[1, 1], [2, 3], [3, 2], [3, 4], [4, 3], [4, 5], [5, 4], [9, 16], [16, 9], [21, 9]];

/** A value as a string; numbers and booleans as the gateway reads them. */
function text(value) {
  if (typeof value === "boolean") return value ? "1" : "0";
  return String(value);
}

/** The defined parameters as strings, without `sig`. */
function fieldsOf(params) {
  const out = {};
  for (const [name, value] of Object.entries(params ?? {})) {
    if (value === undefined || value === null || name === SIG) continue;
    out[name] = text(value);
  }
  return out;
}

/** Percent-encoding as UTF-8 with only `A-Z a-z 0-9 - _ . ~` (and `keep`) left as they are.
 * encodeURIComponent leaves `! ' ( ) *` too, so those are escaped after it. */
function encode(value, keep = "") {
  let out = encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase(),
  );
  if (keep.includes(":")) out = out.replace(/%3A/g, ":");
  if (keep.includes(",")) out = out.replace(/%2C/g, ",");
  return out;
}

/** Percent-decoding as the gateway does it (Python's `unquote`): a `%` not followed by two
 * hex digits stays as it is; the bytes must be UTF-8. `plus` makes `+` a space. */
function decode(value, plus) {
  const source = plus ? value.replace(/\+/g, " ") : value;
  if (!source.includes("%")) return source;
  const encoder = new TextEncoder();
  const bytes = [];
  for (let i = 0; i < source.length; ) {
    const hex = source.slice(i + 1, i + 3);
    if (source[i] === "%" && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 3;
    } else {
      const cp = source.codePointAt(i);
      const char = String.fromCodePoint(cp);
      bytes.push(...encoder.encode(char));
      i += char.length;
    }
  }
  return new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes));
}

/** The query string in the gateway's fixed order (generation, transform, `ch`, then the
 * rest as given), each value percent-encoded with `:` and `,` kept. */
function query(fields) {
  const rank = (name) => (ORDER.includes(name) ? ORDER.indexOf(name) : 99);
  return Object.entries(fields)
    .map((entry, index) => [entry, index])
    .sort(([a, i], [b, j]) => rank(a[0]) - rank(b[0]) || i - j)
    .map(([[name, value]]) => `${name}=${encode(value, ":,")}`)
    .join("&");
}

/** Split a URL (absolute or a path) into what precedes the path, the path, and the query. */
function splitUrl(url) {
  const noFragment = url.split("#", 1)[0];
  const q = noFragment.indexOf("?");
  const beforeQuery = q < 0 ? noFragment : noFragment.slice(0, q);
  const search = q < 0 ? "" : noFragment.slice(q + 1);
  const origin = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/]*/.exec(beforeQuery);
  const head = origin ? origin[0] : "";
  return { head, path: beforeQuery.slice(head.length) || "/", search };
}

/** The query decoded (`+` and `%20` are a space), each name once, as the gateway reads it. */
function splitQuery(search) {
  const out = {};
  for (const field of search.split("&")) {
    if (!field) continue;
    const eq = field.indexOf("=");
    const name = decode(eq < 0 ? field : field.slice(0, eq), true);
    const value = eq < 0 ? "" : decode(field.slice(eq + 1), true);
    if (Object.hasOwn(out, name)) throw new TypeError(`'${name}' is given more than once`);
    out[name] = value;
  }
  return out;
}

function checkMode(mode) {
  if (mode !== "required" && mode !== "generation") {
    throw new TypeError(`mode must be "required" or "generation", not ${JSON.stringify(mode)}`);
  }
}

/** The text that is signed: the path, `?`, and the signed parameters sorted by name. */
export function canonical(path, params, mode) {
  checkMode(mode);
  const signed = Object.entries(params)
    .filter(([name]) => name !== SIG && (mode === "required" || SIGNED_IN_GENERATION.has(name)))
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0));
  return path + "?" + signed.map(([n, v]) => `${encode(n)}=${encode(v)}`).join("&");
}

function base64url(bytes) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((bytes.length - i) * 8) / 6));
    for (let k = 0; k < chars; k++) out += alphabet[(n >> (18 - 6 * k)) & 63];
  }
  return out;
}

/** The first 32 characters of base64url (no padding) of HMAC-SHA256(secret, text). */
export async function signature(secret, textToSign) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new Error("WebCrypto (globalThis.crypto.subtle) is not available");
  const encoder = new TextEncoder();
  const key = await subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const digest = new Uint8Array(await subtle.sign("HMAC", key, encoder.encode(textToSign)));
  return base64url(digest).slice(0, SIG_LENGTH);
}

/** The URL as given with its `sig` added (any `sig` it had is replaced). */
export async function signUrl(url, secret, mode = "required") {
  checkMode(mode);
  const { head, path, search } = splitUrl(url);
  const params = splitQuery(search);
  const sig = await signature(secret, canonical(decode(path, false), params, mode));
  const kept = search.split("&").filter((f) => f && decode(f.split("=", 1)[0], true) !== SIG);
  return `${head}${path}?${[...kept, `${SIG}=${sig}`].join("&")}`;
}

function gcd(a, b) {
  return b ? gcd(b, a % b) : a;
}

/** The native ratio nearest to w:h in log scale (ties go to the squarer one). */
function nearestNative(w, h) {
  const g = gcd(w, h);
  const [rw, rh] = [w / g, h / g];
  if (NATIVE.some(([a, b]) => a === rw && b === rh)) return [rw, rh];
  const target = Math.log(rw / rh);
  const score = ([a, b]) => [
    Math.round(Math.abs(Math.log(a / b) - target) * 1e12) / 1e12,
    Math.abs(Math.log(a / b)),
  ];
  return NATIVE.reduce((best, r) => {
    const [s, t] = score(r);
    const [bs, bt] = score(best);
    return s < bs || (s === bs && t < bt) ? r : best;
  });
}

/** Under `generation` signing `w` and `h` are not signed and do not choose the ratio, so
 * the ratio they pick is written out as `ar` (as the gateway's own signed URLs do). */
function pinRatio(fields, mode) {
  const digits = /^[0-9]+$/;
  const { w = "", h = "" } = fields;
  if (mode !== "generation" || "ar" in fields || !digits.test(w) || !digits.test(h)) return fields;
  if (Number(w) * Number(h) === 0) return fields;
  const [a, b] = nearestNative(Number(w), Number(h));
  return { ...fields, ar: `${a}:${b}` };
}

function pathOf(project) {
  return `/i/${project}`;
}

/** The live URL `base/i/{project}?...`, byte for byte as the gateway writes it (unsigned). */
export function imageUrl(base, project, params) {
  return `${String(base).replace(/\/+$/, "")}${pathOf(project)}?${query(fieldsOf(params))}`;
}

/** A live URL signed as the gateway signs it: `ar` pinned under `generation`, `sig` last. */
export async function signedImageUrl(base, project, params, { secret, mode = "required" } = {}) {
  let fields = fieldsOf(params);
  if (secret) {
    checkMode(mode);
    fields = pinRatio(fields, mode);
    fields[SIG] = await signature(secret, canonical(pathOf(project), fields, mode));
  }
  return `${String(base).replace(/\/+$/, "")}${pathOf(project)}?${query(fields)}`;
}

/** `URL 320w, URL 640w, ...`: each at its width, the height scaled with it when given; each
 * signed when `secret` is given. */
export async function srcset(base, project, params, widths, { secret, mode = "required" } = {}) {
  const fields = fieldsOf(params);
  const digits = /^[0-9]+$/;
  const w0 = digits.test(fields.w ?? "") ? Number(fields.w) : 0;
  const candidates = [];
  for (const width of widths) {
    const each = { ...fields };
    delete each.dpr;
    each.w = String(width);
    if (w0 && digits.test(fields.h ?? "")) {
      each.h = String(Math.max(1, pyRound((Number(fields.h) * width) / w0)));
    }
    candidates.push(`${await signedImageUrl(base, project, each, { secret, mode })} ${width}w`);
  }
  return candidates.join(", ");
}

/** Python's round(): halves go to the even neighbour. */
function pyRound(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** An error answered by the gateway: `{"error": {"code", "message", "param"}}`. */
export class PromptpixError extends Error {
  constructor({ status, code, message, param = null, retryAfter = null, body = null }) {
    super(message);
    this.name = "PromptpixError";
    this.status = status;
    this.code = code;
    this.param = param;
    this.retryAfter = retryAfter;
    this.body = body;
  }
}

/** `Retry-After` in seconds (a number of seconds, or an HTTP date), else null. */
function retryAfterOf(headers) {
  const value = headers.get("retry-after");
  if (value === null || value === "") return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, Math.ceil((when - Date.now()) / 1000));
}

async function errorOf(response) {
  const raw = await response.text();
  let body = null;
  try {
    body = JSON.parse(raw);
  } catch {
    body = null;
  }
  const error = body && typeof body === "object" && body.error ? body.error : {};
  return new PromptpixError({
    status: response.status,
    code: error.code ?? `http_${response.status}`,
    message: error.message ?? (raw.slice(0, 200) || `HTTP ${response.status}`),
    param: error.param ?? null,
    retryAfter: retryAfterOf(response.headers),
    body,
  });
}

/** A query string of the defined values; `metadata: {k: v}` becomes `metadata.k=v`. */
function searchOf(params) {
  const parts = [];
  for (const [name, value] of Object.entries(params ?? {})) {
    if (value === undefined || value === null) continue;
    if (name === "metadata" && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) {
        parts.push(`${encode(`metadata.${k}`)}=${encode(text(v))}`);
      }
    } else {
      parts.push(`${encode(name)}=${encode(text(value))}`);
    }
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

/** The JSON API (`/v1`) with a project key. */
export class Client {
  constructor({ baseUrl, apiKey, fetch: fetchImpl } = {}) {
    if (!baseUrl) throw new TypeError("baseUrl is required");
    this.baseUrl = String(baseUrl).replace(/\/+$/, "");
    this.apiKey = apiKey ?? null;
    this._fetch = fetchImpl ?? globalThis.fetch?.bind(globalThis);
    if (!this._fetch) throw new TypeError("no fetch: pass one as { fetch }");
  }

  /** One request; the parsed JSON answer, or a thrown PromptpixError. */
  async request(method, path, { json, body, headers = {}, query: params } = {}) {
    const sent = { ...headers };
    if (this.apiKey) sent.authorization = `Bearer ${this.apiKey}`;
    let payload = body;
    if (json !== undefined) {
      sent["content-type"] = "application/json";
      payload = JSON.stringify(json);
    }
    const response = await this._fetch(`${this.baseUrl}${path}${searchOf(params)}`, {
      method,
      headers: sent,
      body: payload,
    });
    if (!response.ok) throw await errorOf(response);
    if (response.status === 204) return null;
    return response.json();
  }

  /** `POST /v1/generations`; with `wait: false` the 202 answer (`id`, `status_url`). */
  generate(body, { wait = true } = {}) {
    return this.request("POST", "/v1/generations", {
      json: body,
      query: wait ? undefined : { wait: "false" },
    });
  }

  generation(id) {
    return this.request("GET", `/v1/generations/${encodeURIComponent(id)}`);
  }

  /** The history, newest first: `{limit, cursor, flow_id, alias, generator, since, until,
   * metadata: {KEY: VALUE}}`; pass the answer's `next_cursor` as `cursor` for the next page. */
  generations(params = {}) {
    return this.request("GET", "/v1/generations", { query: params });
  }

  batch(items) {
    return this.request("POST", "/v1/generations/batch", { json: { items } });
  }

  /** Signed `url`, `srcset` and `html` from the gateway, without generating. */
  urls(params) {
    return this.request("POST", "/v1/urls", { json: params });
  }

  /** Upload raw image bytes (a Blob, ArrayBuffer or Uint8Array) as an asset. */
  uploadAsset(data, { alias, contentType } = {}) {
    const type = contentType ?? (typeof Blob !== "undefined" && data instanceof Blob ? data.type : "");
    if (!type) throw new TypeError("contentType is required (e.g. image/png)");
    return this.request("POST", "/v1/assets", {
      body: data,
      headers: { "content-type": type },
      query: { alias },
    });
  }

  assets(params = {}) {
    return this.request("GET", "/v1/assets", { query: params });
  }

  asset(ref) {
    return this.request("GET", `/v1/assets/${encodeURIComponent(ref)}`);
  }

  /** `POST /v1/flows`: `{name}` or `{steps: [generation bodies]}`. */
  createFlow(body) {
    return this.request("POST", "/v1/flows", { json: body });
  }

  flow(id) {
    return this.request("GET", `/v1/flows/${encodeURIComponent(id)}`);
  }
}

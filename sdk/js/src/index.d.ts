/** Types of the promptpix SDK (src/index.js). */

export type SigningMode = "required" | "generation";

/** Live URL parameters (SPEC §1); numbers and booleans are written as the gateway reads them. */
export interface ImageParams {
  prompt?: string;
  ar?: string;
  style?: string;
  neg?: string;
  seed?: number | string;
  enhance?: boolean | 0 | 1 | string;
  model?: string;
  w?: number | string;
  h?: number | string;
  dpr?: number | string;
  fit?: "cover" | "contain" | "inside" | "fill" | string;
  anchor?: string;
  fmt?: "webp" | "avif" | "jpeg" | "png" | "auto" | string;
  q?: number | string;
  bg?: string;
  rmbg?: boolean | 0 | 1 | string;
  blur?: number | string;
  ch?: boolean | 0 | 1 | string;
  [name: string]: string | number | boolean | undefined | null;
}

export interface SignOptions {
  /** The project's signing secret; without it the URLs are unsigned. */
  secret?: string;
  mode?: SigningMode;
}

/** `base/i/{project}?...`, byte for byte as the gateway writes it (unsigned). */
export function imageUrl(base: string, project: string, params: ImageParams): string;
/** The same URL signed as the gateway signs it (`ar` pinned under `generation`, `sig` last). */
export function signedImageUrl(
  base: string,
  project: string,
  params: ImageParams,
  options?: SignOptions,
): Promise<string>;
/** The URL (absolute or a path) as given, with its `sig` added or replaced. */
export function signUrl(url: string, secret: string, mode?: SigningMode): Promise<string>;
/** `URL 320w, URL 640w, ...`, each signed when `secret` is given. */
export function srcset(
  base: string,
  project: string,
  params: ImageParams,
  widths: readonly number[],
  options?: SignOptions,
): Promise<string>;
/** The signed text: path, `?`, and the signed parameters (decoded) sorted by name. */
export function canonical(path: string, params: Record<string, string>, mode: SigningMode): string;
/** The first 32 characters of base64url of HMAC-SHA256(secret, text). */
export function signature(secret: string, text: string): Promise<string>;

export class PromptpixError extends Error {
  constructor(fields: {
    status: number;
    code: string;
    message: string;
    param?: string | null;
    retryAfter?: number | null;
    body?: unknown;
  });
  /** The HTTP status. */
  status: number;
  /** The API's error code, e.g. `quota_exceeded`; `http_NNN` when the answer had none. */
  code: string;
  /** The parameter at fault, when the API names one. */
  param: string | null;
  /** Seconds from `Retry-After`, when the answer had it. */
  retryAfter: number | null;
  /** The parsed JSON answer, when it was JSON. */
  body: unknown;
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A body of `POST /v1/generations` (SPEC §2). */
export interface GenerationBody {
  prompt: string;
  aspect_ratio?: string;
  style?: string;
  negative_prompt?: string;
  seed?: number;
  enhance?: boolean;
  model?: string;
  references?: string[];
  flow_id?: string;
  options?: { remove_background?: boolean; crop_anchor?: string; return_base64?: boolean };
  metadata?: Record<string, string>;
}

export interface GenerationImage {
  url: string;
  width: number;
  height: number;
  content_type: string;
  bytes: number;
}

/** An answer of `/v1/generations` (fields beyond these are kept as they come). */
export interface Generation {
  id: string;
  status: "queued" | "running" | "completed" | "failed";
  image?: GenerationImage;
  urls?: {
    original: string;
    live: string;
    thumb: string;
    card: string;
    og: string;
    hero: string;
    srcset: string;
    [name: string]: string;
  };
  generator?: string;
  fallback_used?: boolean;
  generators_attempted?: string[];
  prompt?: { given: string; sent: string };
  error?: { code: string; message: string; param?: string | null };
  status_url?: string;
  [field: string]: unknown;
}

export interface HistoryQuery {
  limit?: number;
  cursor?: string;
  flow_id?: string;
  alias?: string;
  generator?: string;
  since?: string | number;
  until?: string | number;
  /** Sent as `metadata.KEY=VALUE`. */
  metadata?: Record<string, string>;
}

export interface History {
  items: Generation[];
  next_cursor: string | null;
  [field: string]: unknown;
}

export interface BatchAnswer {
  items: Array<
    | { status: number; generation: Generation }
    | { status: number; error: { code: string; message: string; param?: string | null } }
  >;
}

export interface UrlsAnswer {
  url: string;
  srcset: string;
  html: string;
  [field: string]: unknown;
}

export interface Asset {
  id: string;
  alias: string | null;
  width: number;
  height: number;
  content_type: string;
  bytes: number;
  url: string;
  [field: string]: unknown;
}

export interface FlowAnswer {
  id: string;
  steps: Array<{ step: number; parent_id: string | null; generation?: Generation; [f: string]: unknown }>;
  [field: string]: unknown;
}

export type FetchLike = (url: string, init: {
  method: string;
  headers: Record<string, string>;
  body?: unknown;
}) => Promise<Response>;

export interface ClientOptions {
  baseUrl: string;
  apiKey?: string;
  fetch?: FetchLike;
}

/** The JSON API (`/v1`) with a project key; every failure throws a PromptpixError. */
export class Client {
  constructor(options: ClientOptions);
  readonly baseUrl: string;
  request<T = unknown>(
    method: string,
    path: string,
    options?: {
      json?: unknown;
      body?: unknown;
      headers?: Record<string, string>;
      query?: Record<string, unknown>;
    },
  ): Promise<T>;
  generate(body: GenerationBody, options?: { wait?: boolean }): Promise<Generation>;
  generation(id: string): Promise<Generation>;
  generations(query?: HistoryQuery): Promise<History>;
  batch(items: GenerationBody[]): Promise<BatchAnswer>;
  urls(params: ImageParams & { url?: string; widths?: number[]; sizes?: string; alt?: string }): Promise<UrlsAnswer>;
  uploadAsset(
    data: Blob | ArrayBuffer | Uint8Array,
    options?: { alias?: string; contentType?: string },
  ): Promise<Asset>;
  assets(query?: { cursor?: string; limit?: number }): Promise<{ items: Asset[]; next_cursor: string | null; [f: string]: unknown }>;
  asset(ref: string): Promise<Asset>;
  createFlow(body: { name?: string; steps?: GenerationBody[] }): Promise<FlowAnswer>;
  flow(id: string): Promise<FlowAnswer>;
}

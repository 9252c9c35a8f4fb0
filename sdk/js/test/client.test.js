// The JSON API client against a fake fetch: what it sends, and how errors are mapped.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Client, PromptpixError } from "../src/index.js";

/** A fetch that records each call and answers `reply(url, init)`. */
function fakeFetch(reply) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, ...init });
    const { status = 200, body = {}, headers = {} } = reply(url, init);
    const text = typeof body === "string" ? body : JSON.stringify(body);
    return new Response(status === 204 ? null : text, { status, headers });
  };
  return { fetch, calls };
}

test("generate sends the body with the key, and wait: false asks for a 202", async () => {
  const { fetch, calls } = fakeFetch(() => ({ status: 202, body: { id: "gen_1", status: "queued" } }));
  const client = new Client({ baseUrl: "http://gw:8080/", apiKey: "ppk_x", fetch });
  const answer = await client.generate({ prompt: "a red fox", aspect_ratio: "16:9" }, { wait: false });
  assert.deepEqual(answer, { id: "gen_1", status: "queued" });
  assert.equal(calls[0].url, "http://gw:8080/v1/generations?wait=false");
  assert.equal(calls[0].method, "POST");
  assert.equal(calls[0].headers.authorization, "Bearer ppk_x");
  assert.equal(calls[0].headers["content-type"], "application/json");
  assert.deepEqual(JSON.parse(calls[0].body), { prompt: "a red fox", aspect_ratio: "16:9" });
});

test("each route goes where the API has it", async () => {
  const { fetch, calls } = fakeFetch(() => ({ body: { ok: true } }));
  const client = new Client({ baseUrl: "http://gw", apiKey: "k", fetch });
  await client.generate({ prompt: "x" });
  await client.generation("gen_a/b");
  await client.generations({ limit: 5, cursor: "c+1", metadata: { campaign: "spring" }, alias: undefined });
  await client.batch([{ prompt: "a" }, { prompt: "b" }]);
  await client.urls({ prompt: "x", w: 800 });
  await client.uploadAsset(new Uint8Array([137, 80]), { alias: "logo", contentType: "image/png" });
  await client.assets({ cursor: "z" });
  await client.createFlow({ name: "mascot" });
  await client.flow("flow_1");
  assert.deepEqual(
    calls.map((c) => `${c.method} ${c.url}`),
    [
      "POST http://gw/v1/generations",
      "GET http://gw/v1/generations/gen_a%2Fb",
      "GET http://gw/v1/generations?limit=5&cursor=c%2B1&metadata.campaign=spring",
      "POST http://gw/v1/generations/batch",
      "POST http://gw/v1/urls",
      "POST http://gw/v1/assets?alias=logo",
      "GET http://gw/v1/assets?cursor=z",
      "POST http://gw/v1/flows",
      "GET http://gw/v1/flows/flow_1",
    ],
  );
  assert.deepEqual(JSON.parse(calls[3].body), { items: [{ prompt: "a" }, { prompt: "b" }] });
  assert.equal(calls[5].headers["content-type"], "image/png");
  assert.deepEqual([...calls[5].body], [137, 80]);
});

test("a Blob upload takes its own type", async () => {
  const { fetch, calls } = fakeFetch(() => ({ status: 201, body: { id: "abc" } }));
  const client = new Client({ baseUrl: "http://gw", apiKey: "k", fetch });
  await client.uploadAsset(new Blob([new Uint8Array([1])], { type: "image/webp" }));
  assert.equal(calls[0].headers["content-type"], "image/webp");
  assert.throws(() => client.uploadAsset(new Uint8Array([1])), TypeError);
});

test("an API error becomes a PromptpixError with code, param and Retry-After", async () => {
  const { fetch } = fakeFetch(() => ({
    status: 429,
    headers: { "retry-after": "42", "content-type": "application/json" },
    body: { error: { code: "quota_exceeded", message: "the month's quota is used", param: null } },
  }));
  const client = new Client({ baseUrl: "http://gw", apiKey: "k", fetch });
  const error = await client.generate({ prompt: "x" }).catch((e) => e);
  assert.ok(error instanceof PromptpixError);
  assert.ok(error instanceof Error);
  assert.equal(error.status, 429);
  assert.equal(error.code, "quota_exceeded");
  assert.equal(error.message, "the month's quota is used");
  assert.equal(error.param, null);
  assert.equal(error.retryAfter, 42);
});

test("a 400 names its parameter; no Retry-After is null", async () => {
  const { fetch } = fakeFetch(() => ({
    status: 400,
    body: { error: { code: "invalid_parameter", message: "'seed' must be an integer", param: "seed" } },
  }));
  const client = new Client({ baseUrl: "http://gw", apiKey: "k", fetch });
  await assert.rejects(client.generate({ prompt: "x", seed: "a" }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.code, "invalid_parameter");
    assert.equal(e.param, "seed");
    assert.equal(e.retryAfter, null);
    return true;
  });
});

test("an answer that is not the JSON error still throws, with its status", async () => {
  const { fetch } = fakeFetch(() => ({ status: 502, body: "<html>Bad Gateway</html>" }));
  const client = new Client({ baseUrl: "http://gw", fetch });
  await assert.rejects(client.flow("f"), (e) => {
    assert.equal(e.status, 502);
    assert.equal(e.code, "http_502");
    assert.match(e.message, /Bad Gateway/);
    return true;
  });
});

test("without a key no Authorization header is sent", async () => {
  const { fetch, calls } = fakeFetch(() => ({ body: {} }));
  await new Client({ baseUrl: "http://gw", fetch }).generations();
  assert.equal(calls[0].headers.authorization, undefined);
  assert.equal(calls[0].url, "http://gw/v1/generations");
});

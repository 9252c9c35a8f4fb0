// Against a running gateway, when PROMPTPIX_TEST_URL names one (tests/test_js_sdk.py starts
// one): generate, the history with its cursor, errors, and a signed srcset that answers 200.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Client, PromptpixError, imageUrl, signUrl, srcset } from "../src/index.js";

const base = process.env.PROMPTPIX_TEST_URL;
const key = process.env.PROMPTPIX_TEST_KEY;
const project = process.env.PROMPTPIX_TEST_PROJECT;
const secret = process.env.PROMPTPIX_TEST_SECRET;
const skip = base && key && project && secret ? false : "PROMPTPIX_TEST_URL etc. are not set";

test("generate, then read it back and find it in the history", { skip }, async () => {
  const client = new Client({ baseUrl: base, apiKey: key });
  const made = await client.generate({ prompt: "a red fox, js sdk", aspect_ratio: "16:9", metadata: { sdk: "js" } });
  assert.equal(made.status, "completed");
  assert.ok(made.image.width > made.image.height, "a 16:9 image is wider than high");
  assert.equal((await client.generation(made.id)).id, made.id);
  const second = await client.generate({ prompt: "a blue fox, js sdk", metadata: { sdk: "js" } });
  const first = await client.generations({ limit: 1, metadata: { sdk: "js" } });
  assert.deepEqual(first.items.map((g) => g.id), [second.id]);
  assert.ok(first.next_cursor);
  const next = await client.generations({ limit: 1, cursor: first.next_cursor, metadata: { sdk: "js" } });
  assert.deepEqual(next.items.map((g) => g.id), [made.id]);
  assert.equal(next.next_cursor, null);
});

test("a refusal throws a PromptpixError naming its parameter", { skip }, async () => {
  const client = new Client({ baseUrl: base, apiKey: key });
  const error = await client.generate({ prompt: "x", seed: -1 }).catch((e) => e);
  assert.ok(error instanceof PromptpixError, String(error));
  assert.equal(error.status, 400);
  assert.equal(error.code, "invalid_body");
  assert.equal(error.param, "seed");
  const unauthorized = await new Client({ baseUrl: base, apiKey: "ppk_wrong" }).generations().catch((e) => e);
  assert.equal(unauthorized.status, 401);
  assert.equal(unauthorized.code, "unauthorized");
});

test("a signed srcset answers 200 at every width; unsigned and tampered URLs are 403", { skip }, async () => {
  const params = { prompt: "a green fox, js sdk", w: 200, h: 100 };
  const set = await srcset(base, project, params, [200, 300], { secret, mode: "generation" });
  const candidates = set.split(", ").map((c) => c.split(" ")[0]);
  assert.equal(candidates.length, 2);
  for (const url of candidates) {
    const answer = await fetch(url);
    assert.equal(answer.status, 200, `${url}: ${await answer.text()}`);
    assert.match(answer.headers.get("content-type"), /^image\//);
  }
  // the gateway's own signed URLs are the same bytes
  const fromGateway = await new Client({ baseUrl: base, apiKey: key }).urls({ ...params, widths: [200, 300] });
  assert.equal(fromGateway.srcset, set);
  const unsigned = imageUrl(base, project, { prompt: "a green fox, js sdk" });
  assert.equal((await fetch(unsigned)).status, 403);
  const signed = await signUrl(unsigned, secret, "generation");
  assert.equal((await fetch(signed)).status, 200);
  assert.equal((await fetch(signed.replace("green", "brown"))).status, 403);
});

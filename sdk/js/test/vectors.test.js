// The shared vectors every client reproduces: signatures, and URLs byte for byte as the
// gateway writes them (tests/vectors/*.json, also checked against the Python gateway).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  canonical,
  imageUrl,
  signUrl,
  signedImageUrl,
  srcset,
} from "../src/index.js";

const vectors = (name) =>
  JSON.parse(readFileSync(new URL(`../../../tests/vectors/${name}`, import.meta.url), "utf8"));
const signing = vectors("signing.json");
const urls = vectors("urls.json");

test("the signing vectors are all there", () => {
  assert.ok(signing.length >= 15, `only ${signing.length} signing vectors`);
  assert.ok(urls.length >= 5, `only ${urls.length} URL vectors`);
});

for (const [i, v] of signing.entries()) {
  test(`signing vector ${i}: ${v.mode} ${v.url}`, async () => {
    const signed = await signUrl(v.url, v.secret, v.mode);
    assert.equal(signed, `${v.url}&sig=${v.sig}`);
    const params = Object.fromEntries(
      new URLSearchParams(v.url.split("?")[1]).entries(),
    );
    assert.equal(canonical(v.url.split("?")[0], params, v.mode), v.canonical);
    // signing again replaces the signature rather than adding a second one
    assert.equal(await signUrl(signed, v.secret, v.mode), signed);
    // another secret, another signature
    assert.notEqual(await signUrl(v.url, `${v.secret}x`, v.mode), signed);
  });
}

test("an absolute URL is signed over its path; its origin and fragment stay out", async () => {
  const v = signing[0];
  const signed = await signUrl(`https://img.example.com${v.url}#top`, v.secret, v.mode);
  assert.equal(signed, `https://img.example.com${v.url}&sig=${v.sig}`);
});

test("an unknown mode is refused", async () => {
  await assert.rejects(signUrl("/i/acme?prompt=x", "s", "all"), TypeError);
});

for (const [i, v] of urls.entries()) {
  test(`URL vector ${i}: ${v.project} ${JSON.stringify(v.params)}`, async () => {
    const options = v.secret ? { secret: v.secret, mode: v.mode } : {};
    if (!v.secret) assert.equal(imageUrl(v.base, v.project, v.params), v.url);
    assert.equal(await signedImageUrl(v.base, v.project, v.params, options), v.url);
    assert.equal(await srcset(v.base, v.project, v.params, v.widths, options), v.srcset);
  });
}

test("numbers and booleans are written as the gateway reads them", () => {
  assert.equal(
    imageUrl("https://x", "acme", { w: 800, prompt: "fox", rmbg: true, seed: undefined }),
    "https://x/i/acme?prompt=fox&w=800&rmbg=1",
  );
});

// Walks easel's web studio in Debian's headless Chromium. Started by
// studio_test.go with a running `easel serve --demo`:
//   EASEL_UI_BASE        the server's base URL (http://127.0.0.1:port)
//   EASEL_UI_LIMITED_BASE the same with a limit of 3 requests a minute
//   EASEL_UI_KEY         a valid API key
//   EASEL_UI_INPUT       a PNG to upload to the demo edit model
//   EASEL_UI_BROKEN_MODEL, EASEL_UI_BROKEN_TEXT
//                        a model whose backend always fails, and the message
//                        easel reports for it (holding markup, to show as text)
//   EASEL_UI_ARTIFACTS   where screenshots and downloads go
// It prints one line per step and exits non-zero on the first failure.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const BASE = need("EASEL_UI_BASE");
const LIMITED = need("EASEL_UI_LIMITED_BASE");
const KEY = need("EASEL_UI_KEY");
const INPUT = need("EASEL_UI_INPUT");
const BROKEN_MODEL = need("EASEL_UI_BROKEN_MODEL");
const BROKEN_TEXT = need("EASEL_UI_BROKEN_TEXT");
const OUT = need("EASEL_UI_ARTIFACTS");

const GEN_MODEL = "demo-z-image-turbo";
const EDIT_MODEL = "demo-image-edit";
const XSS_PROMPT = "<img src=x onerror=alert(1)> a red fox in snow";
const WAIT = 30_000;
const CSP_REQUIRED = [
  "default-src 'self'", "script-src 'self'", "object-src 'none'", "base-uri 'none'",
  "frame-ancestors 'none'", "img-src 'self' data: blob:", "connect-src 'self'",
];

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set; run this through studio_test.go`);
    process.exit(2);
  }
  return v;
}

fs.mkdirSync(OUT, { recursive: true });
for (const f of fs.readdirSync(OUT)) {
  if (/^failed-step-\d+\.png$/.test(f)) fs.rmSync(path.join(OUT, f));
}

// screenshot saves a full-page picture scrolled to the top, so the sticky
// header sits where a person sees it.
async function screenshot(page, name) {
  await page.locator("#toast").waitFor({ state: "hidden", timeout: WAIT }).catch(() => {});
  await page.evaluate(() => Promise.all([...document.images].map((i) => i.decode().catch(() => {}))));
  await page.evaluate(() => window.scrollTo({ top: 0, behavior: "instant" }));
  await page.screenshot({ path: path.join(OUT, name), fullPage: true });
}

// ---------- watchers armed on every page ----------

const problems = []; // CSP violations, dialogs, page errors, leaks
const bodyChecks = []; // promises that check one response each
let responsesChecked = 0;
let responsesUnreadable = 0;
let htmlResponses = 0;

async function checkResponse(resp) {
  const url = resp.url();
  const headers = await resp.allHeaders();
  for (const [k, v] of Object.entries(headers)) {
    if (String(v).includes(KEY)) problems.push(`response header ${k} of ${url} contains the API key`);
  }
  const ctype = headers["content-type"] || "";
  if (ctype.startsWith("text/html")) {
    htmlResponses += 1;
    const csp = headers["content-security-policy"] || "";
    for (const d of CSP_REQUIRED) {
      if (!csp.includes(d)) problems.push(`HTML response ${url} lacks CSP "${d}" (got "${csp}")`);
    }
    if (/unsafe-inline|unsafe-eval/.test(csp)) problems.push(`HTML response ${url} allows unsafe code: ${csp}`);
    if (headers["x-content-type-options"] !== "nosniff") problems.push(`${url}: X-Content-Type-Options is not nosniff`);
    if (headers["referrer-policy"] !== "no-referrer") problems.push(`${url}: Referrer-Policy is not no-referrer`);
  }
  let body;
  try {
    body = await resp.body();
  } catch {
    // A stream the page aborted (a cancelled follow, a reload) has no
    // body to read; its headers were checked above.
    responsesUnreadable += 1;
    return;
  }
  responsesChecked += 1;
  if (body.includes(KEY)) problems.push(`response body of ${url} contains the API key`);
}

async function arm(context) {
  await context.exposeBinding("__easelCSP", (_src, v) => {
    problems.push(`CSP violation: ${v}`);
  });
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__easelCSP(`${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  context.on("page", (page) => watch(page));
}

function watch(page) {
  page.on("dialog", async (d) => {
    problems.push(`a ${d.type()} dialog opened: ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("request", (r) => {
    if (r.url().includes(KEY)) problems.push(`request URL carries the API key: ${r.url()}`);
  });
  page.on("response", (r) => bodyChecks.push(checkResponse(r).catch((e) => problems.push(`checking ${r.url()}: ${e}`))));
}

function noProblems(where) {
  assert.deepEqual(problems, [], `problems after ${where}`);
}

// ---------- steps ----------

let stepNo = 0;
let shown = null; // the page a failing step screenshots
async function step(name, fn) {
  stepNo += 1;
  const t0 = Date.now();
  try {
    await fn();
    noProblems(name);
  } catch (err) {
    console.log(`not ok ${stepNo} - ${name}`);
    if (shown) {
      const file = path.join(OUT, `failed-step-${stepNo}.png`);
      await screenshot(shown, path.basename(file)).catch(() => {});
      console.log(`# screenshot of the failure: ${file}`);
      const log = await shown.$$eval("#log li", (lis) => lis.map((li) => li.textContent)).catch(() => []);
      if (log.length) console.log(`# studio event log:\n#   ${log.join("\n#   ")}`);
    }
    throw err;
  }
  console.log(`ok ${stepNo} - ${name} (${Date.now() - t0} ms)`);
}

const text = (page, sel) => page.locator(sel).textContent();

async function alertShows(page, title) {
  await page.locator("#alert").waitFor({ state: "visible", timeout: WAIT });
  await page.waitForFunction((t) => document.getElementById("alert-title").textContent === t, title, { timeout: WAIT });
  return {
    title: await text(page, "#alert-title"),
    message: await text(page, "#alert-message"),
  };
}

async function waitStatus(page, badge) {
  await page.waitForFunction((b) => {
    const el = document.getElementById("job-badge");
    return !el.hidden && el.textContent === b;
  }, badge, { timeout: WAIT });
}

// submit starts a job with trigger and waits until the page shows that new
// job (its id differs from the one shown before), so a badge left over
// from the previous job cannot satisfy the next wait.
async function submit(page, trigger) {
  const before = await text(page, "#fact-job");
  await trigger();
  await page.waitForFunction((b) => {
    const id = document.getElementById("fact-job").textContent;
    return id !== b && id.startsWith("img_");
  }, before, { timeout: WAIT });
}

async function logTypes(page) {
  return page.$$eval("#log li", (lis) => lis.map((li) => ({
    time: li.querySelector("time").textContent,
    type: li.querySelector(".ev").textContent,
    text: li.lastChild.textContent,
  })));
}

async function enterKey(page, key) {
  await page.locator("#key-input").fill(key);
  await page.locator("#key-input").press("Enter");
}

async function saveDownload(page, trigger, name) {
  const [dl] = await Promise.all([page.waitForEvent("download", { timeout: WAIT }), trigger()]);
  assert.match(dl.suggestedFilename(), /\.png$/, "download file name");
  const file = path.join(OUT, name);
  await dl.saveAs(file);
  const head = fs.readFileSync(file).subarray(0, 8);
  assert.deepEqual([...head], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${name} is not a PNG`);
  return file;
}

// fileHandle builds a File inside the page from bytes, for paste and drop.
async function dataTransfer(page, bytes, name) {
  return page.evaluateHandle(([b64, n]) => {
    const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([raw], n, { type: "image/png" }));
    return dt;
  }, [bytes.toString("base64"), name]);
}

async function previewCount(page) {
  return page.locator("#previews li").count();
}

// ---------- run ----------

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  // Playwright gives every launch a fresh, empty profile directory.
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

try {
  const desk = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: "light", acceptDownloads: true });
  await arm(desk);
  await desk.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  const page = await desk.newPage();
  shown = page;
  const input = fs.readFileSync(INPUT);

  await step("the page loads with its security headers and asks for a key", async () => {
    const resp = await page.goto(`${BASE}/`);
    assert.equal(resp.status(), 200);
    const html = await resp.text();
    assert.ok(!html.includes(KEY), "page source holds the key");
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, "inline script in the page");
    await page.locator("#key-panel").waitFor({ state: "visible" });
    assert.equal(await page.evaluate(() => document.activeElement.id), "key-input", "the key field has focus");
  });

  await step("every form control has a label", async () => {
    const unlabeled = await page.$$eval("input, select, textarea, button", (els) => els
      .filter((e) => !(e.type === "file"))
      .filter((e) => !((e.labels && e.labels.length) || e.getAttribute("aria-label") || (e.tagName === "BUTTON" && e.textContent.trim())))
      .map((e) => e.id || e.outerHTML.slice(0, 60)));
    assert.deepEqual(unlabeled, []);
  });

  await step("a wrong key shows the error", async () => {
    await enterKey(page, "wrong-key-Ab3De5Gh7Jk9Mn2Pq4");
    const a = await alertShows(page, "Wrong API key");
    assert.match(a.message, /refused/);
    assert.equal(await page.locator("#model").isDisabled(), true);
    await page.screenshot({ path: path.join(OUT, "wrong-key.png") });
  });

  await step("the right key loads the models and is kept in local storage", async () => {
    await enterKey(page, KEY);
    await page.locator("#key-panel").waitFor({ state: "hidden", timeout: WAIT });
    assert.equal(await page.locator("#alert").isHidden(), true, "the wrong-key alert is gone");
    const ids = await page.$$eval("#model option", (os) => os.map((o) => o.value));
    for (const id of [GEN_MODEL, EDIT_MODEL, BROKEN_MODEL]) assert.ok(ids.includes(id), `model ${id} listed in ${ids}`);
    assert.equal(await page.evaluate(() => localStorage.getItem("easel.apiKey")), KEY);
    assert.match(await text(page, "#key-state"), /saved/);
  });

  await step("the form follows the model's capabilities", async () => {
    await page.selectOption("#model", GEN_MODEL);
    assert.equal(await page.locator("#images-field").isHidden(), true, "no image input for text to image");
    assert.equal(await page.locator("#size-field").isVisible(), true, "sizes for a free-size model");
    assert.equal(await page.locator("#steps-field").isVisible(), true);
    assert.equal(await page.locator("#seed-field").isVisible(), true);
    assert.equal(await page.locator("#negative-field").isHidden(), true, "no negative prompt field");
    const sizes = await page.$$eval("#size option", (os) => os.map((o) => o.value));
    assert.equal(sizes[0], "1024x1024", "the default size first");
    assert.ok(sizes.every((s) => s.split("x").every((v) => Number(v) % 64 === 0 && v >= 512 && v <= 2048)), `sizes ${sizes}`);
    await page.selectOption("#model", EDIT_MODEL);
    assert.equal(await page.locator("#images-field").isVisible(), true, "image input for image to image");
    assert.equal(await page.locator("#size-field").isHidden(), true, "no sizes when the backend keeps the input's");
    assert.equal(await page.getAttribute("#steps", "placeholder"), "8");
    await page.selectOption("#model", GEN_MODEL);
  });

  await step("keyboard focus follows the page order", async () => {
    await page.focus(".skip-link");
    const order = ["skip-link"];
    while (order.at(-1) !== "generate" && order.length < 25) {
      await page.keyboard.press("Tab");
      order.push(await page.evaluate(() => document.activeElement.id || document.activeElement.tagName));
    }
    const at = (id) => order.indexOf(id);
    for (const [a, b] of [["skip-link", "key-edit"], ["key-edit", "model"], ["model", "prompt"], ["prompt", "size"], ["size", "n"], ["n", "seed"], ["seed", "steps"], ["steps", "generate"]]) {
      assert.ok(at(a) >= 0 && at(b) > at(a), `${a} before ${b} in ${order}`);
    }
    // The keyboard-focused button shows a visible focus ring.
    const ring = await page.evaluate(() => {
      const s = getComputedStyle(document.activeElement);
      return { style: s.outlineStyle, width: parseFloat(s.outlineWidth) };
    });
    assert.ok(ring.style !== "none" && ring.width >= 2, `Generate has no focus ring: ${JSON.stringify(ring)}`);
  });

  let genUrl = "";
  await step("generate: live progress events, then the images", async () => {
    await page.fill("#prompt", XSS_PROMPT);
    await page.fill("#n", "2");
    await page.selectOption("#size", "768x768");
    await submit(page, () => page.locator("#prompt").press("Control+Enter"));
    // The bar moves while the job runs, not only at the end.
    await page.waitForFunction(() => {
      const b = document.getElementById("bar");
      return b.value > 0 && b.value < 1;
    }, null, { timeout: WAIT });
    await page.waitForFunction(() => /^Running: step \d+ of \d+\.$/.test(document.getElementById("status").textContent), null, { timeout: WAIT });
    await waitStatus(page, "Done");
    const log = await logTypes(page);
    const types = new Set(log.map((l) => l.type));
    for (const t of ["started", "progress", "image", "succeeded"]) assert.ok(types.has(t), `log has ${t}: ${JSON.stringify(log)}`);
    assert.ok(log.every((l) => /^\d\d:\d\d:\d\d\.\d{3}$/.test(l.time)), "every log line has a timestamp");
    assert.ok(log.some((l) => /^step \d+ of 8/.test(l.text)), "step k of n in the log");
    assert.equal(await page.$eval("#bar", (b) => b.value), 1);
    assert.equal(await page.locator("#gallery li").count(), 2);
    await page.waitForFunction(() => [...document.querySelectorAll("#gallery img")].every((i) => i.complete && i.naturalWidth === 768), null, { timeout: WAIT });
    // The prompt is shown as text, never as markup.
    assert.equal(await text(page, "#job-prompt"), XSS_PROMPT);
    assert.equal(await page.locator('img[src="x"]').count(), 0, "the prompt became an element");
    assert.equal(await page.locator("#cancel").isDisabled(), true);
    genUrl = await page.$eval("#gallery img", (i) => i.src);
    assert.ok(genUrl.startsWith(`${BASE}/v1/files/`), `image URL ${genUrl}`);
  });

  await step("full-size view opens and closes with the keyboard", async () => {
    const open = page.locator(".shot-open").first();
    await open.focus();
    await page.keyboard.press("Enter");
    await page.locator("#viewer[open]").waitFor({ timeout: WAIT });
    await page.waitForFunction(() => {
      const i = document.getElementById("viewer-img");
      return i.complete && i.naturalWidth === 768;
    }, null, { timeout: WAIT });
    assert.match(await page.inputValue("#viewer-link"), new RegExp(`^${BASE}/v1/files/`));
    await page.screenshot({ path: path.join(OUT, "viewer.png") });
    await page.keyboard.press("Escape");
    await page.locator("#viewer").waitFor({ state: "hidden" });
    assert.equal(await page.evaluate(() => document.activeElement.className), "shot-open", "focus returns to the image");
  });

  await step("download saves a PNG", async () => {
    await saveDownload(page, () => page.locator("#gallery a", { hasText: "Download" }).first().click(), "generated.png");
  });

  await step("copy link puts the image URL on the clipboard", async () => {
    await page.locator("#gallery button", { hasText: "Copy link" }).first().click();
    await page.locator("#toast", { hasText: "Link copied" }).waitFor({ timeout: WAIT });
    const clip = await page.evaluate(() => navigator.clipboard.readText());
    assert.equal(clip, genUrl);
  });

  await step("the history survives a reload", async () => {
    await page.reload();
    await page.locator("#history li").first().waitFor({ timeout: WAIT });
    assert.equal(await page.locator("#key-panel").isHidden(), true, "the key is still known");
    assert.equal(await page.locator(".history-prompt").first().textContent(), XSS_PROMPT);
    assert.equal(await page.locator('img[src="x"]').count(), 0);
    await page.locator(".history-item").first().click();
    await waitStatus(page, "Done");
    assert.equal(await page.locator("#gallery li").count(), 2);
    await page.waitForFunction(() => [...document.querySelectorAll("#gallery img")].every((i) => i.complete && i.naturalWidth > 0), null, { timeout: WAIT });
    await page.locator("#log li").first().waitFor({ timeout: WAIT });
    await screenshot(page, "studio-desktop.png");
  });

  await step("image input: paste, drop, pick, preview and remove", async () => {
    await page.selectOption("#model", EDIT_MODEL);
    const pasted = await dataTransfer(page, input, "pasted.png");
    await page.evaluate((dt) => document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true })), pasted);
    await page.waitForFunction(() => document.querySelectorAll("#previews li").length === 1);
    assert.match(await page.getAttribute("#previews img", "alt"), /pasted\.png/);
    await page.locator(".preview-remove").click();
    assert.equal(await previewCount(page), 0);

    const dropped = await dataTransfer(page, input, "dropped.png");
    await page.dispatchEvent("#dropzone", "dragover", { dataTransfer: dropped });
    await page.dispatchEvent("#dropzone", "drop", { dataTransfer: dropped });
    await page.waitForFunction(() => document.querySelectorAll("#previews li").length === 1);
    assert.match(await page.getAttribute("#previews img", "alt"), /dropped\.png/);
    await page.getByRole("button", { name: "Remove dropped.png" }).click();
    assert.equal(await previewCount(page), 0);

    await page.setInputFiles("#image-input", INPUT);
    await page.waitForFunction(() => document.querySelectorAll("#previews li").length === 1);
    assert.match(await page.getAttribute("#previews img", "alt"), /input\.png/);
    await page.waitForFunction(() => document.querySelector("#previews img").naturalWidth > 0);
  });

  await step("image to image: upload and get the result", async () => {
    await page.fill("#prompt", "invert the colours");
    await page.fill("#n", "1");
    await submit(page, () => page.click("#generate"));
    await waitStatus(page, "Done");
    const types = new Set((await logTypes(page)).map((l) => l.type));
    for (const t of ["started", "progress", "succeeded"]) assert.ok(types.has(t), `edit log has ${t}`);
    await page.waitForFunction(() => {
      const i = document.querySelector("#gallery img");
      return i && i.complete && i.naturalWidth > 0;
    }, null, { timeout: WAIT });
    const w = await page.$eval("#gallery img", (i) => i.naturalWidth);
    assert.equal(w, Number(need("EASEL_UI_INPUT_WIDTH")), "the result has the input's width");
    await saveDownload(page, () => page.locator("#gallery a", { hasText: "Download" }).first().click(), "edited.png");
  });

  await step("an input too large is refused with a clear error", async () => {
    // Real PNG bytes padded past the server's 20 MiB per-image limit.
    const big = Buffer.concat([input, Buffer.alloc(21 << 20)]);
    await page.setInputFiles("#image-input", { name: "huge.png", mimeType: "image/png", buffer: big });
    await page.fill("#prompt", "too big");
    await page.click("#generate");
    const a = await alertShows(page, "Input too large");
    assert.ok(a.message.length > 0);
    await page.locator(".preview-remove").click();
    await page.click("#alert-close");
  });

  await step("an upstream failure shows the backend's message as text", async () => {
    await page.selectOption("#model", BROKEN_MODEL);
    await page.fill("#prompt", "this will fail");
    await submit(page, () => page.click("#generate"));
    await waitStatus(page, "Failed");
    const a = await alertShows(page, "The backend failed");
    assert.ok(a.message.includes(BROKEN_TEXT), `alert "${a.message}" shows the upstream message`);
    assert.ok((await text(page, "#status")).includes(BROKEN_TEXT), "the status line shows the message");
    assert.equal(await page.locator('img[src="x"]').count(), 0, "upstream markup became an element");
    assert.equal(await page.locator("#alert b").count(), 0, "upstream markup became an element");
    await page.screenshot({ path: path.join(OUT, "upstream-error.png") });
    await page.click("#alert-close");
  });

  await step("cancel stops a running job", async () => {
    await page.selectOption("#model", GEN_MODEL);
    await page.fill("#prompt", "a long series");
    await page.fill("#n", "6");
    await submit(page, () => page.click("#generate"));
    await page.waitForFunction(() => document.getElementById("bar").value > 0, null, { timeout: WAIT });
    await page.click("#cancel");
    await waitStatus(page, "Canceled");
    const types = (await logTypes(page)).map((l) => l.type);
    assert.equal(types.at(-1), "canceled");
    assert.equal(await page.locator("#generate").isEnabled(), true);
  });

  await step("a rate limit shows the wait time", async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await arm(ctx);
    const p = await ctx.newPage();
    shown = p;
    await p.goto(`${LIMITED}/`);
    await enterKey(p, KEY);
    await p.locator("#key-panel").waitFor({ state: "hidden", timeout: WAIT });
    await p.fill("#prompt", "one too many");
    // Models, history, the submit and the event stream: the fourth
    // request of the minute is refused, whichever it is.
    await p.click("#generate");
    const a = await alertShows(p, "Rate limit reached");
    const wait = a.message.match(/Try again in (\d+) s\./);
    assert.ok(wait && Number(wait[1]) >= 1 && Number(wait[1]) <= 60, `alert "${a.message}" names the wait`);
    assert.equal(await p.locator("#generate").isDisabled(), true, "Generate waits out the limit");
    await screenshot(p, "rate-limit.png");
    await ctx.close();
    shown = page;
  });

  await step("forget removes the key from this browser", async () => {
    await page.click("#key-forget");
    await page.locator("#key-panel").waitFor({ state: "visible" });
    assert.equal(await page.evaluate(() => localStorage.getItem("easel.apiKey")), null);
    assert.equal(await page.locator("#gallery li").count(), 0);
    assert.equal(await page.locator("#history li").count(), 0);
  });

  // Screenshots at phone width (and the other colour schemes), each from a
  // fresh context where the key is typed again.
  for (const [name, viewport, scheme] of [
    ["studio-phone.png", { width: 390, height: 844 }, "dark"],
    ["studio-phone-light.png", { width: 390, height: 844 }, "light"],
    ["studio-desktop-dark.png", { width: 1280, height: 900 }, "dark"],
  ]) {
    await step(`screenshot ${name}`, async () => {
      const ctx = await browser.newContext({ viewport, colorScheme: scheme });
      await arm(ctx);
      const p = await ctx.newPage();
      shown = p;
      await p.goto(`${BASE}/`);
      await enterKey(p, KEY);
      await p.locator("#history li").first().waitFor({ timeout: WAIT });
      const done = p.locator(".history-item", { hasText: XSS_PROMPT }).first();
      await done.click();
      await waitStatus(p, "Done");
      await p.waitForFunction(() => [...document.querySelectorAll("#gallery img")].every((i) => i.complete && i.naturalWidth > 0), null, { timeout: WAIT });
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px at ${viewport.width}px`);
      await p.locator("#log li").first().waitFor({ timeout: WAIT });
      await screenshot(p, name);
      const html = await p.content();
      assert.ok(!html.includes(KEY), "the rendered page holds the key");
      await ctx.close();
      shown = page;
    });
  }

  await step("no response to the page contained the key", async () => {
    await Promise.all(bodyChecks);
    assert.ok(htmlResponses >= 4, `checked ${htmlResponses} HTML responses`);
    assert.ok(responsesChecked > 20, `only ${responsesChecked} response bodies were read`);
    console.log(`# ${responsesChecked} response bodies and all headers checked; ${responsesUnreadable} aborted streams had headers only`);
  });
} finally {
  await browser.close();
}

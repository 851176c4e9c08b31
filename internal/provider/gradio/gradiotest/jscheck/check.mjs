// Runs the official @gradio/client against easel's fake Gradio app.
// Usage: node check.mjs <base-url>
// The app must serve the ZImageTurbo and ImageEdit endpoints. Exits non-zero
// with a message on the first failure.
import { Client } from "@gradio/client";

const base = process.argv[2];

function fail(msg) {
  console.error("FAIL: " + msg);
  process.exit(1);
}

function check(cond, msg) {
  if (!cond) fail(msg);
}

// pngSize reads width and height from a PNG's IHDR chunk.
function pngSize(buf) {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  check(buf.length > 24 && sig.every((b, i) => buf[i] === b), "output is not a PNG");
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

async function fetchImage(fd, what) {
  check(fd && typeof fd === "object", `${what}: output 0 is not a file object: ${JSON.stringify(fd)}`);
  check(typeof fd.url === "string" && fd.url.startsWith(base + "/gradio_api/file="),
    `${what}: output url ${fd.url} is not an absolute file= URL under ${base}`);
  const res = await fetch(fd.url);
  check(res.ok, `${what}: fetching ${fd.url} gave HTTP ${res.status}`);
  check(res.headers.get("content-type") === "image/png", `${what}: content-type ${res.headers.get("content-type")}`);
  return new Uint8Array(await res.arrayBuffer());
}

async function main() {
  check(base, "usage: node check.mjs <base-url>");
  // Status events are only delivered when asked for.
  const app = await Client.connect(base, { events: ["data", "status"] });

  // 1. Predict by endpoint name with keyword data (mapped through /info).
  const r1 = await app.predict("/generate_image", {
    prompt: "a red fox in snow", height: 512, width: 768, num_inference_steps: 3, seed: 7, randomize_seed: false,
  });
  check(Array.isArray(r1.data) && r1.data.length === 2, `keyword predict: data ${JSON.stringify(r1.data)}`);
  const png1 = await fetchImage(r1.data[0], "keyword predict");
  const s1 = pngSize(png1);
  check(s1.width === 768 && s1.height === 512, `keyword predict: image ${s1.width}x${s1.height}, want 768x512`);
  check(r1.data[1] === 7, `keyword predict: seed ${r1.data[1]}, want 7`);

  // 2. Positional predict: height comes before width.
  const r2 = await app.predict("/generate_image", ["a cat", 640, 512, 2, 11, false]);
  const s2 = pngSize(await fetchImage(r2.data[0], "positional predict"));
  check(s2.width === 512 && s2.height === 640, `positional predict: image ${s2.width}x${s2.height}, want 512x640`);

  // 3. submit(): status events with queue position and progress, then data and complete.
  const job = app.submit("/generate_image", {
    prompt: "a lighthouse", height: 512, width: 512, num_inference_steps: 4, seed: 1, randomize_seed: false,
  });
  let sawQueue = false, sawProgress = false, sawData = false, sawComplete = false;
  for await (const msg of job) {
    if (msg.type === "status") {
      if (msg.stage === "error") fail(`submit: error status ${JSON.stringify(msg)}`);
      if (msg.stage === "pending" && typeof msg.position === "number") sawQueue = true;
      if (Array.isArray(msg.progress_data) && msg.progress_data.length > 0) sawProgress = true;
      if (msg.stage === "complete") sawComplete = true;
    } else if (msg.type === "data") {
      sawData = true;
      check(Array.isArray(msg.data) && msg.data.length === 2, `submit: data ${JSON.stringify(msg.data)}`);
    }
    if (sawComplete && sawData) break;
  }
  check(sawQueue, "submit: no pending status with a queue position");
  check(sawProgress, "submit: no status with progress_data");
  check(sawData, "submit: no data event");
  check(sawComplete, "submit: no complete status");

  // 4. Upload: a Blob image input on the edit endpoint; the output keeps the input size.
  const blob = new Blob([png1], { type: "image/png" });
  const r4 = await app.predict("/infer", {
    image: blob, prompt: "make it night", seed: 3, randomize_seed: false, true_guidance_scale: 4, num_inference_steps: 2,
  });
  const s4 = pngSize(await fetchImage(r4.data[0], "upload predict"));
  check(s4.width === 768 && s4.height === 512, `upload predict: image ${s4.width}x${s4.height}, want 768x512`);
  check(r4.data[1] === 3, `upload predict: seed ${r4.data[1]}, want 3`);

  console.log("ok: @gradio/client connect, keyword and positional predict, submit events, upload");
}

const timer = setTimeout(() => fail("timed out after 50s"), 50000);
main().then(
  () => { clearTimeout(timer); process.exit(0); },
  (err) => fail(err && err.stack ? err.stack : JSON.stringify(err)),
);

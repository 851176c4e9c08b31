// easel studio: a single page over easel's own HTTP API.
//
// Everything the page shows comes from the API with the key the user typed
// (kept in this browser's local storage). Jobs are submitted async and
// followed through GET /v1/images/jobs/{id}/events, read with fetch() and
// a stream reader because EventSource cannot send an Authorization
// header. All text from users or upstreams goes into the page through
// textContent, never as markup.

const KEY_STORAGE = "easel.apiKey";
const MODEL_STORAGE = "easel.model";
const HISTORY_PAGE = 20;
const MAX_LOG_LINES = 500;
const MAX_RECONNECTS = 5;
// Common output sizes offered for models with a free size range; each is
// kept only when the model's rule allows it.
const COMMON_SIZES = [
  [1024, 1024], [1152, 896], [896, 1152], [1216, 832], [832, 1216],
  [1344, 768], [768, 1344], [1536, 640], [640, 1536],
  [768, 768], [512, 512], [1536, 1536], [2048, 2048],
];
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

const $ = (id) => document.getElementById(id);

const el = {
  keyState: $("key-state"), keyEdit: $("key-edit"), keyForget: $("key-forget"),
  keyPanel: $("key-panel"), keyForm: $("key-form"), keyInput: $("key-input"),
  alert: $("alert"), alertTitle: $("alert-title"), alertMessage: $("alert-message"), alertClose: $("alert-close"),
  form: $("gen-form"), model: $("model"), modelDesc: $("model-desc"), modelTags: $("model-tags"),
  imagesField: $("images-field"), imagesLegend: $("images-legend"), dropzone: $("dropzone"),
  pick: $("pick-images"), imageInput: $("image-input"), previews: $("previews"),
  prompt: $("prompt"), negativeField: $("negative-field"), negative: $("negative"),
  sizeField: $("size-field"), sizeLabel: $("size-label"), size: $("size"), n: $("n"),
  seedField: $("seed-field"), seed: $("seed"), stepsField: $("steps-field"), steps: $("steps"),
  generate: $("generate"), cancel: $("cancel"),
  badge: $("job-badge"), jobPrompt: $("job-prompt"), status: $("status"), bar: $("bar"),
  factQueue: $("fact-queue"), factStep: $("fact-step"), factImages: $("fact-images"), factJob: $("fact-job"),
  log: $("log"),
  gallery: $("gallery"), galleryEmpty: $("gallery-empty"),
  history: $("history"), historyEmpty: $("history-empty"), historyMore: $("history-more"), historyRefresh: $("history-refresh"),
  viewer: $("viewer"), viewerTitle: $("viewer-title"), viewerImg: $("viewer-img"), viewerCaption: $("viewer-caption"),
  viewerDownload: $("viewer-download"), viewerCopy: $("viewer-copy"), viewerLink: $("viewer-link"), viewerClose: $("viewer-close"),
  toast: $("toast"),
};

const state = {
  key: "",
  models: [],
  images: [], // {file, url}
  job: null, // the job object shown in the progress card
  follow: null, // AbortController of the event stream being read
  lastEventId: "",
  perImage: [], // progress of each image of the followed job, 0..1
  replaying: false, // the followed job had ended before it was opened
  historyCursor: "",
  retryTimer: 0,
  keyOk: null, // whether the server accepted the key (null: not asked yet)
};

// ---------- storage ----------

function loadKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

function saveKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage may be disabled; the key then lasts for this page only.
  }
  state.key = key;
  renderKeyState();
}

function remember(name, value) {
  try {
    localStorage.setItem(name, value);
  } catch {
    // Not worth telling the user: only a preference is lost.
  }
}

function recall(name) {
  try {
    return localStorage.getItem(name) || "";
  } catch {
    return "";
  }
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, body, headers) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "";
    this.type = e.type || "";
    this.param = e.param || "";
    this.retryAfter = retryAfterSeconds(headers);
  }
}

class NetworkError extends Error {}

function retryAfterSeconds(headers) {
  if (!headers) return 0;
  const ms = Number(headers.get("retry-after-ms"));
  if (Number.isFinite(ms) && ms > 0) return Math.ceil(ms / 1000);
  const ra = headers.get("retry-after");
  if (!ra) return 0;
  const secs = Number(ra);
  if (Number.isFinite(secs)) return Math.max(0, Math.ceil(secs));
  const when = Date.parse(ra);
  return Number.isFinite(when) ? Math.max(0, Math.ceil((when - Date.now()) / 1000)) : 0;
}

function authHeaders(extra = {}) {
  const h = { ...extra };
  if (state.key) h.Authorization = `Bearer ${state.key}`;
  return h;
}

async function api(path, { method = "GET", json, form, signal } = {}) {
  const init = { method, headers: authHeaders({ Accept: "application/json" }), signal, cache: "no-store" };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new NetworkError("The server could not be reached.");
  }
  let body = null;
  const text = await resp.text();
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!resp.ok) throw new ApiError(resp.status, body, resp.headers);
  return body;
}

// sameOrigin turns a result URL minted for another host name of this same
// server (a configured public URL) into a path on the page's own origin,
// which the Content-Security-Policy allows; the signature covers the path
// and query only.
function sameOrigin(url) {
  try {
    const u = new URL(url, location.href);
    if (u.origin !== location.origin && u.pathname.startsWith("/v1/files/")) {
      return u.pathname + u.search;
    }
    return u.origin === location.origin ? u.pathname + u.search : url;
  } catch {
    return url;
  }
}

function absolute(url) {
  try {
    return new URL(url, location.href).href;
  } catch {
    return url;
  }
}

// ---------- small DOM helpers ----------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function clear(node) {
  while (node.firstChild) node.firstChild.remove();
}

function fmtTime(date) {
  const d = date instanceof Date ? date : new Date(date);
  if (Number.isNaN(d.getTime())) return "--:--:--";
  const p = (x, n = 2) => String(x).padStart(n, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function fmtAgo(unixSeconds) {
  if (!unixSeconds) return "";
  const secs = Math.round(Date.now() / 1000 - unixSeconds);
  if (secs < 45) return "just now";
  const mins = Math.round(secs / 60);
  if (mins < 60) return `${mins} min ago`;
  const hours = Math.round(mins / 60);
  if (hours < 24) return `${hours} h ago`;
  return new Date(unixSeconds * 1000).toLocaleDateString();
}

let toastTimer = 0;
function toast(text) {
  el.toast.textContent = text;
  el.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.toast.hidden = true; }, 2600);
}

// ---------- errors ----------

function showAlert(title, message, { warn = false } = {}) {
  el.alertTitle.textContent = title;
  el.alertMessage.textContent = message || "";
  el.alert.classList.toggle("is-warn", warn);
  el.alert.hidden = false;
}

function hideAlert() {
  el.alert.hidden = true;
  clearInterval(state.retryTimer);
  state.retryTimer = 0;
  syncButtons();
}

// showError explains a failed call in terms a user can act on: the key,
// the wait, the size, or what the backend said.
function showError(err, context = "") {
  if (err && err.name === "AbortError") return;
  if (err instanceof NetworkError) {
    showAlert("Cannot reach easel", "Check that the server is running and try again.");
    return;
  }
  if (!(err instanceof ApiError)) {
    showAlert("Something went wrong", (err && err.message) || String(err));
    return;
  }
  const msg = err.message;
  switch (true) {
    case err.status === 401:
      showAlert("Wrong API key", state.key
        ? "The server refused this key. Check it and save it again."
        : "This server needs an API key. Enter it above.");
      openKeyPanel();
      break;
    case err.status === 403:
      showAlert("Not allowed", msg);
      break;
    case err.status === 429:
      rateLimited(err);
      break;
    case err.status === 413:
      showAlert("Input too large", msg);
      break;
    case err.status === 404 && err.code === "job_not_found":
      showAlert("Job not found", "It may have expired or belong to another key.");
      break;
    case err.status >= 500:
      showAlert("The backend failed", msg);
      break;
    default:
      showAlert(context || "Request refused", err.param ? `${msg} (${err.param})` : msg);
  }
}

function rateLimited(err) {
  const what = {
    quota_exceeded: "Daily image quota reached",
    concurrency_limit_exceeded: "Too many jobs at once",
  }[err.code] || "Rate limit reached";
  let left = err.retryAfter;
  const render = () => {
    const wait = left > 0 ? ` Try again in ${left} s.` : " You can try again now.";
    showAlert(what, `${err.message}${wait}`, { warn: true });
  };
  clearInterval(state.retryTimer);
  render();
  if (left > 0) {
    el.generate.disabled = true;
    state.retryTimer = setInterval(() => {
      left -= 1;
      render();
      if (left <= 0) {
        clearInterval(state.retryTimer);
        state.retryTimer = 0;
        syncButtons();
      }
    }, 1000);
  }
}

// ---------- key ----------

function renderKeyState() {
  const set = Boolean(state.key);
  let label = "No API key";
  if (set) label = state.keyOk === false ? `Key …${state.key.slice(-4)} refused` : `Key …${state.key.slice(-4)} saved`;
  else if (state.keyOk) label = "Open server (no key needed)";
  el.keyState.textContent = label;
  el.keyState.classList.toggle("is-set", set && state.keyOk !== false);
  el.keyState.classList.toggle("is-bad", set && state.keyOk === false);
  el.keyForget.hidden = !set;
}

function openKeyPanel() {
  el.keyPanel.hidden = false;
  el.keyEdit.setAttribute("aria-expanded", "true");
  el.keyInput.value = "";
  el.keyInput.focus();
}

function closeKeyPanel() {
  el.keyPanel.hidden = true;
  el.keyEdit.setAttribute("aria-expanded", "false");
  el.keyInput.value = "";
}

el.keyEdit.addEventListener("click", () => {
  if (el.keyPanel.hidden) openKeyPanel();
  else closeKeyPanel();
});

el.keyForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = el.keyInput.value.trim();
  if (!key) {
    el.keyInput.setAttribute("aria-invalid", "true");
    el.keyInput.focus();
    return;
  }
  el.keyInput.removeAttribute("aria-invalid");
  hideAlert();
  // The key is stored only once the server has accepted it, so a typo
  // never replaces a working key.
  const prev = state.key;
  state.key = key;
  const err = await loadModels();
  if (!err) {
    saveKey(key);
    closeKeyPanel();
    toast("Key saved in this browser");
    el.prompt.focus();
    loadHistory();
    return;
  }
  showError(err, "Could not load models");
  el.keyInput.setAttribute("aria-invalid", String(err instanceof ApiError && err.status === 401));
  state.key = prev;
  if (prev) await loadModels();
  renderKeyState();
});

el.keyForget.addEventListener("click", () => {
  stopFollowing();
  saveKey("");
  state.keyOk = null;
  state.job = null;
  state.models = [];
  clear(el.gallery);
  clear(el.history);
  clear(el.log);
  renderGalleryEmpty();
  el.historyEmpty.hidden = false;
  el.historyMore.hidden = true;
  resetProgress();
  fillModels([]);
  hideAlert();
  toast("Key removed from this browser");
  openKeyPanel();
});

// ---------- models and the form ----------

// loadModels fills the model list and returns the error, if any, for the
// caller to explain.
async function loadModels() {
  try {
    const list = await api("/v1/models");
    state.keyOk = true;
    fillModels((list && list.data) || []);
    renderKeyState();
    return null;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) state.keyOk = false;
    fillModels([]);
    renderKeyState();
    return err;
  }
}

function caps(model) {
  return (model && model.easel && model.easel.capabilities) || {};
}

function fillModels(models) {
  state.models = models;
  clear(el.model);
  if (models.length === 0) {
    el.model.append(h("option", { value: "", text: state.keyOk === false || !state.key ? "Enter a valid API key first" : "No models" }));
    el.model.disabled = true;
    applyModel();
    return;
  }
  for (const m of models) {
    const c = caps(m);
    const kind = c.image_to_image && !c.text_to_image ? "image to image" : c.image_to_image ? "text or image" : "text to image";
    el.model.append(h("option", { value: m.id, text: `${m.id} · ${kind}` }));
  }
  el.model.disabled = false;
  const saved = recall(MODEL_STORAGE);
  if (saved && models.some((m) => m.id === saved)) el.model.value = saved;
  applyModel();
}

function currentModel() {
  return state.models.find((m) => m.id === el.model.value) || null;
}

el.model.addEventListener("change", () => {
  remember(MODEL_STORAGE, el.model.value);
  applyModel();
});

// applyModel shows only the controls the model's capabilities support.
function applyModel() {
  const m = currentModel();
  const c = caps(m);
  el.modelDesc.textContent = (m && m.easel && m.easel.description) || "";
  clear(el.modelTags);
  const tags = [];
  if (c.text_to_image) tags.push("text to image");
  if (c.image_to_image) tags.push("image to image");
  if (c.seed) tags.push("seed");
  if (c.steps) tags.push("steps");
  if (c.negative_prompt) tags.push("negative prompt");
  if (m && m.easel && m.easel.demo) tags.push("demo");
  for (const t of tags) el.modelTags.append(h("li", { text: t }));

  const takesImages = Boolean(c.image_to_image);
  const maxImages = Math.max(1, c.max_input_images || 1);
  el.imagesField.hidden = !takesImages;
  el.imageInput.multiple = maxImages > 1;
  el.imagesLegend.textContent = maxImages > 1
    ? `Input images (up to ${maxImages}${c.text_to_image ? ", optional" : ""})`
    : `Input image${c.text_to_image ? " (optional)" : ""}`;
  el.pick.textContent = maxImages > 1 ? "Choose files…" : "Choose file…";
  if (!takesImages) clearImages();
  else while (state.images.length > maxImages) removeImage(state.images.length - 1);

  el.negativeField.hidden = !c.negative_prompt;
  el.seedField.hidden = !c.seed;
  el.stepsField.hidden = !c.steps;
  if (c.steps) {
    el.steps.min = String(c.min_steps || 1);
    if (c.max_steps) el.steps.max = String(c.max_steps);
    else el.steps.removeAttribute("max");
    el.steps.placeholder = c.default_steps ? String(c.default_steps) : "Default";
    el.steps.value = "";
  }
  fillSizes(c);
  syncButtons();
}

function ratioLabel(width, height) {
  const gcd = (a, b) => (b ? gcd(b, a % b) : a);
  const g = gcd(width, height);
  let rw = width / g;
  let rh = height / g;
  if (rw > 21 || rh > 21) {
    const r = width / height;
    const known = [[1, 1], [4, 3], [3, 4], [3, 2], [2, 3], [16, 9], [9, 16], [21, 9], [9, 21], [5, 4], [4, 5], [12, 5], [5, 12], [7, 4], [4, 7]];
    [rw, rh] = known.reduce((best, k) => (Math.abs(k[0] / k[1] - r) < Math.abs(best[0] / best[1] - r) ? k : best));
    return `≈${rw}:${rh}`;
  }
  return `${rw}:${rh}`;
}

function sizeOption(width, height, note = "") {
  const shape = width === height ? "square" : width > height ? "landscape" : "portrait";
  return optionFor(`${width}x${height}`, `${width} × ${height} · ${ratioLabel(width, height)} ${shape}${note}`);
}

function optionFor(value, label) {
  return h("option", { value, text: label });
}

function fillSizes(c) {
  clear(el.size);
  const rule = c.size || {};
  el.size.name = "size";
  el.sizeLabel.textContent = "Size";
  if (Array.isArray(c.aspect_ratios) && c.aspect_ratios.length) {
    el.size.name = "aspect_ratio";
    el.sizeLabel.textContent = "Aspect ratio";
    for (const r of c.aspect_ratios) el.size.append(optionFor(r, r));
    el.sizeField.hidden = false;
    return;
  }
  if (Array.isArray(rule.choices) && rule.choices.length) {
    for (const ch of rule.choices) {
      const [w, hh] = ch.split("x").map(Number);
      el.size.append(w && hh ? sizeOption(w, hh) : optionFor(ch, ch));
    }
    el.sizeField.hidden = false;
    return;
  }
  const free = rule.min || rule.max || rule.multiple;
  if (!free) {
    el.sizeField.hidden = true;
    return;
  }
  const ok = ([w, hh]) => [w, hh].every((s) =>
    (!rule.min || s >= rule.min) && (!rule.max || s <= rule.max) && (!rule.multiple || s % rule.multiple === 0));
  const dw = rule.default_width;
  const dh = rule.default_height;
  const seen = new Set();
  if (dw && dh) {
    el.size.append(sizeOption(dw, dh, " (default)"));
    seen.add(`${dw}x${dh}`);
  }
  for (const s of COMMON_SIZES) {
    const v = `${s[0]}x${s[1]}`;
    if (seen.has(v) || !ok(s)) continue;
    seen.add(v);
    el.size.append(sizeOption(s[0], s[1]));
  }
  el.sizeField.hidden = el.size.options.length === 0;
}

// ---------- input images ----------

function acceptsImages() {
  return !el.imagesField.hidden;
}

function maxImages() {
  return Math.max(1, caps(currentModel()).max_input_images || 1);
}

function addFiles(files) {
  const imgs = [...files].filter((f) => f && f.type && f.type.startsWith("image/"));
  if (files.length && !imgs.length) {
    showAlert("Not an image", "Choose a PNG, JPEG, WebP or GIF file.");
    return;
  }
  const max = maxImages();
  for (const f of imgs) {
    if (max === 1) clearImages();
    else if (state.images.length >= max) {
      showAlert("Too many images", `This model takes up to ${max} images.`, { warn: true });
      break;
    }
    state.images.push({ file: f, url: URL.createObjectURL(f) });
  }
  renderPreviews();
}

function removeImage(i) {
  const [gone] = state.images.splice(i, 1);
  if (gone) URL.revokeObjectURL(gone.url);
}

function clearImages() {
  while (state.images.length) removeImage(0);
  renderPreviews();
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${Math.round(n / 1024)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function renderPreviews() {
  clear(el.previews);
  state.images.forEach((img, i) => {
    const name = img.file.name || `pasted image ${i + 1}`;
    const remove = h("button", {
      type: "button", class: "preview-remove", "aria-label": `Remove ${name}`, title: `Remove ${name}`, text: "×",
      onclick: () => {
        removeImage(i);
        renderPreviews();
        (el.previews.querySelector(".preview-remove") || el.pick).focus();
      },
    });
    el.previews.append(h("li", { class: "preview" },
      h("img", { src: img.url, alt: `Preview of ${name}` }),
      h("span", { class: "preview-meta", text: `${name} · ${fmtBytes(img.file.size)}` }),
      remove));
  });
}

el.pick.addEventListener("click", () => el.imageInput.click());
el.imageInput.addEventListener("change", () => {
  addFiles(el.imageInput.files || []);
  el.imageInput.value = "";
});

function hasFiles(ev) {
  return ev.dataTransfer && [...(ev.dataTransfer.types || [])].includes("Files");
}

el.dropzone.addEventListener("dragover", (ev) => {
  if (!hasFiles(ev)) return;
  ev.preventDefault();
  ev.dataTransfer.dropEffect = "copy";
  el.dropzone.classList.add("is-over");
});
el.dropzone.addEventListener("dragleave", () => el.dropzone.classList.remove("is-over"));
el.dropzone.addEventListener("drop", (ev) => {
  ev.preventDefault();
  el.dropzone.classList.remove("is-over");
  addFiles(ev.dataTransfer ? ev.dataTransfer.files : []);
});
// A file dropped beside the zone must not make the browser leave the page.
window.addEventListener("dragover", (ev) => { if (hasFiles(ev)) ev.preventDefault(); });
window.addEventListener("drop", (ev) => {
  if (!hasFiles(ev)) return;
  ev.preventDefault();
  if (acceptsImages()) addFiles(ev.dataTransfer.files);
});

document.addEventListener("paste", (ev) => {
  if (!acceptsImages() || !ev.clipboardData) return;
  const files = [...ev.clipboardData.files].filter((f) => f.type.startsWith("image/"));
  if (!files.length) return; // plain text pastes go to the focused field
  ev.preventDefault();
  addFiles(files);
  toast(files.length === 1 ? "Image pasted" : `${files.length} images pasted`);
});

// ---------- submit and cancel ----------

function syncButtons() {
  const running = Boolean(state.job && !TERMINAL.has(state.job.status));
  el.cancel.disabled = !running;
  el.generate.disabled = running || !currentModel() || Boolean(state.retryTimer);
  el.generate.textContent = running ? "Generating…" : "Generate";
}

function intField(input) {
  const v = input.value.trim();
  if (v === "") return undefined;
  const n = Number(v);
  return Number.isInteger(n) ? n : NaN;
}

function invalid(input, message) {
  input.setAttribute("aria-invalid", "true");
  input.focus();
  showAlert("Check the form", message, { warn: true });
  return null;
}

// collect reads the form into the request fields, or reports the first
// problem and returns null.
function collect() {
  for (const i of [el.prompt, el.n, el.seed, el.steps]) i.removeAttribute("aria-invalid");
  const m = currentModel();
  if (!m) return invalid(el.model, "Choose a model.");
  const c = caps(m);
  const prompt = el.prompt.value.trim();
  if (!prompt) return invalid(el.prompt, "Write a prompt.");
  const n = intField(el.n) ?? 1;
  if (!Number.isInteger(n) || n < 1 || n > Number(el.n.max || 10)) return invalid(el.n, `Images must be a whole number from 1 to ${el.n.max || 10}.`);
  const fields = { model: m.id, prompt, n };
  if (c.image_to_image && !c.text_to_image && state.images.length === 0) {
    el.pick.focus();
    showAlert("Add an image", "This model edits an image: choose, drop or paste one.", { warn: true });
    return null;
  }
  if (!el.sizeField.hidden && el.size.value) fields[el.size.name] = el.size.value;
  if (c.seed) {
    const s = intField(el.seed);
    if (Number.isNaN(s) || s < 0) return invalid(el.seed, "Seed must be a whole number of 0 or more.");
    if (s !== undefined) fields.seed = s;
  }
  if (c.steps) {
    const s = intField(el.steps);
    const lo = c.min_steps || 1;
    const hi = c.max_steps || Infinity;
    if (Number.isNaN(s) || (s !== undefined && (s < lo || s > hi))) return invalid(el.steps, `Steps must be a whole number from ${lo}${Number.isFinite(hi) ? ` to ${hi}` : " up"}.`);
    if (s !== undefined) fields.steps = s;
  }
  if (c.negative_prompt && el.negative.value.trim()) fields.negative_prompt = el.negative.value.trim();
  return fields;
}

async function submit() {
  if (state.job && !TERMINAL.has(state.job.status)) return;
  const fields = collect();
  if (!fields) return;
  hideAlert();
  el.generate.disabled = true;
  let job;
  try {
    if (state.images.length) {
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) form.append(k, String(v));
      form.append("response_format", "url");
      form.append("async", "true");
      const field = state.images.length > 1 ? "image[]" : "image";
      for (const img of state.images) form.append(field, img.file, img.file.name || "image.png");
      job = await api("/v1/images/edits", { method: "POST", form });
    } else {
      job = await api("/v1/images/generations", {
        method: "POST", json: { ...fields, response_format: "url", async: true },
      });
    }
  } catch (err) {
    syncButtons();
    showError(err, "The request was refused");
    return;
  }
  clear(el.log);
  clear(el.gallery);
  renderGalleryEmpty();
  showJob(job);
  follow(job);
  loadHistory();
}

el.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  submit();
});

el.prompt.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    submit();
  }
});

el.cancel.addEventListener("click", async () => {
  const job = state.job;
  if (!job || TERMINAL.has(job.status)) return;
  el.cancel.disabled = true;
  try {
    const j = await api(`/v1/images/jobs/${encodeURIComponent(job.id)}/cancel`, { method: "POST" });
    if (j && state.job && j.id === state.job.id) showJob(j);
  } catch (err) {
    showError(err, "Could not cancel");
    syncButtons();
  }
});

// ---------- progress ----------

function resetProgress() {
  el.badge.hidden = true;
  el.jobPrompt.hidden = true;
  el.status.textContent = "Nothing running. Write a prompt and press Generate.";
  el.bar.value = 0;
  el.factQueue.textContent = "–";
  el.factStep.textContent = "–";
  el.factImages.textContent = "–";
  el.factJob.textContent = "–";
  syncButtons();
}

const STATUS_TEXT = {
  queued: "Queued",
  running: "Running",
  succeeded: "Done",
  failed: "Failed",
  canceled: "Canceled",
};

// showJob renders a job object (from a submit, a GET, a cancel or a
// terminal event) into the progress card and the gallery.
function showJob(job) {
  state.job = job;
  const p = job.progress || {};
  el.badge.hidden = false;
  el.badge.textContent = STATUS_TEXT[job.status] || job.status;
  el.badge.className = `badge is-${job.status}`;
  el.jobPrompt.hidden = false;
  el.jobPrompt.textContent = job.prompt || "";
  el.factJob.textContent = job.id;
  el.factJob.title = job.id;
  el.bar.value = job.status === "succeeded" ? 1 : Math.max(0, Math.min(1, Number(p.fraction) || 0));
  el.factQueue.textContent = job.status === "queued" && p.queue_position ? `#${p.queue_position}` : "–";
  el.factStep.textContent = p.steps ? `${p.step || 0} of ${p.steps}` : "–";
  el.factImages.textContent = `${p.images_done || (job.data ? job.data.length : 0)} of ${job.n || 1}`;
  el.status.textContent = statusLine(job);
  for (const [i, d] of (job.data || []).entries()) addShot(job, d, i);
  syncButtons();
  markCurrentHistory();
  // Keep the job's history entry in step with what the card shows.
  const entry = el.history.querySelector(`.history-item[data-id="${CSS.escape(job.id)}"] .badge`);
  if (entry) {
    entry.textContent = STATUS_TEXT[job.status] || job.status;
    entry.className = `badge is-${job.status}`;
  }
}

function statusLine(job) {
  const p = job.progress || {};
  switch (job.status) {
    case "queued":
      return p.queue_position ? `Queued: position ${p.queue_position} in line.` : "Queued.";
    case "running":
      return p.steps ? `Running: step ${p.step || 0} of ${p.steps}.` : (p.message || "Running.");
    case "succeeded": {
      if (job.results_expired) return "Done, but its images have expired and were deleted.";
      const k = (job.data || []).length;
      return `Done: ${k} image${k === 1 ? "" : "s"}.`;
    }
    case "failed":
      return `Failed: ${(job.error && job.error.message) || "the backend gave no reason"}`;
    case "canceled":
      return "Canceled.";
    default:
      return job.status || "";
  }
}

function logLine(type, time, text) {
  const li = h("li", {},
    h("time", { datetime: new Date(time).toISOString(), text: fmtTime(time) }),
    h("span", { class: `ev ev-${type}`, text: type }),
    h("span", { text }));
  el.log.append(li);
  while (el.log.children.length > MAX_LOG_LINES) el.log.firstChild.remove();
  el.log.scrollTop = el.log.scrollHeight;
}

function describe(type, d) {
  switch (type) {
    case "queued":
      if (d.position) {
        const eta = d.eta ? `, about ${Math.ceil(d.eta)} s` : "";
        return `position ${d.position}${d.queue_size ? ` of ${d.queue_size}` : ""}${d.source === "upstream" ? " (at the backend)" : ""}${eta}`;
      }
      return d.source === "upstream" ? "waiting at the backend" : "waiting for a slot";
    case "accepted":
      return "accepted by the backend";
    case "started":
      return d.index !== undefined ? `image ${d.index + 1} started` : "started";
    case "progress":
      if (d.total) return `step ${d.step || 0} of ${d.total}${d.index !== undefined ? ` · image ${d.index + 1}` : ""}`;
      return d.fraction !== undefined ? `${Math.round(d.fraction * 100)}%` : "working";
    case "log":
      return d.message || "";
    case "image": {
      const img = d.image || {};
      return `image ${(d.index || 0) + 1} ready${img.width ? ` (${img.width} × ${img.height})` : ""}`;
    }
    case "succeeded":
      return "finished";
    case "failed":
      return (d.error && d.error.message) || d.message || "failed";
    case "canceled":
      return "canceled";
    default:
      return d.message || "";
  }
}

// imageProgress records how far one image is and sets the job's fraction
// to the mean over its n images, so the bar moves steadily across a
// multi-image job whatever scale the events' own fractions use.
function imageProgress(job, index, fraction) {
  if (typeof fraction !== "number" || !Number.isFinite(fraction)) return;
  const n = Math.max(1, job.n || 1);
  state.perImage[index] = Math.max(state.perImage[index] || 0, Math.min(1, Math.max(0, fraction)));
  const sum = state.perImage.slice(0, n).reduce((a, f) => a + (f || 0), 0);
  job.progress.fraction = Math.max(job.progress.fraction || 0, sum / n);
}

// onEvent applies one event of the job's stream to the page.
function onEvent(type, d) {
  const job = state.job;
  if (!job || d.job_id !== job.id) return;
  logLine(type, d.time || Date.now(), describe(type, d));
  const p = (job.progress = job.progress || {});
  switch (type) {
    case "queued":
      job.status = "queued";
      p.queue_position = d.position;
      break;
    case "started":
      job.status = "running";
      delete p.queue_position;
      break;
    case "progress":
      job.status = "running";
      delete p.queue_position;
      if (d.total) {
        p.step = d.step || 0;
        p.steps = d.total;
      }
      imageProgress(job, d.index || 0, d.total ? (d.step || 0) / d.total : d.fraction);
      break;
    case "log":
      p.message = d.message;
      break;
    case "image":
      if (d.image) {
        job.data = job.data || [];
        job.data[d.index || 0] = d.image;
        p.images_done = job.data.filter(Boolean).length;
      }
      imageProgress(job, d.index || 0, 1);
      break;
    default:
      break;
  }
  if (TERMINAL.has(type)) {
    const final = d.job || { ...job, status: type, error: d.error };
    showJob(final);
    if (state.replaying) return; // an old job: nothing new to announce
    if (type === "failed") {
      const e = final.error || d.error || {};
      showAlert(e.code === "rate_limit_exceeded" ? "Rate limit reached" : "The backend failed", e.message || d.message || "No reason given.");
    }
    loadHistory();
    return;
  }
  // Replaying a finished job only fills the log; its card already shows
  // the end state.
  if (!state.replaying) showJob(job);
}

function stopFollowing() {
  if (state.follow) state.follow.abort();
  state.follow = null;
}

// follow reads the job's event stream until its terminal event. Event ids
// are "<run>.<n>": a reconnect sends the last id as Last-Event-ID and the
// server resumes after it; after a server restart (another run) it
// replays from the start, and the page starts its progress over.
async function follow(job) {
  stopFollowing();
  const ctl = new AbortController();
  state.follow = ctl;
  state.lastEventId = "";
  state.perImage = [];
  state.replaying = TERMINAL.has(job.status);
  let failures = 0;
  while (!ctl.signal.aborted) {
    let ended = false;
    try {
      ended = await readEvents(job.id, ctl.signal);
      failures = 0;
    } catch (err) {
      if (ctl.signal.aborted) return;
      if (err instanceof ApiError && err.status === 429) {
        // Rate limited: say so, then pick the stream up again once the
        // wait is over (the job itself keeps running on the server).
        showError(err);
        await sleep(Math.max(1, err.retryAfter || 5) * 1000, ctl.signal);
        continue;
      }
      if (err instanceof ApiError) {
        showError(err, "Could not follow the job");
        return;
      }
      failures += 1;
    }
    if (ended || ctl.signal.aborted) break;
    if (failures > MAX_RECONNECTS) {
      logLine("error", Date.now(), "lost the event stream; showing the job's last state");
      try {
        showJob(await api(`/v1/images/jobs/${encodeURIComponent(job.id)}`));
      } catch (err) {
        showError(err);
      }
      break;
    }
    await sleep(Math.min(8000, 500 * 2 ** failures), ctl.signal);
  }
  if (state.follow === ctl) state.follow = null;
}

// sleep waits ms milliseconds, or less if signal aborts.
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// readEvents reads one connection of the event stream; it resolves true
// once a terminal event arrived.
async function readEvents(id, signal) {
  const extra = { Accept: "text/event-stream" };
  if (state.lastEventId) extra["Last-Event-ID"] = state.lastEventId;
  const resp = await fetch(`/v1/images/jobs/${encodeURIComponent(id)}/events`, {
    headers: authHeaders(extra), signal, cache: "no-store",
  });
  if (!resp.ok) {
    let body = null;
    try { body = await resp.json(); } catch { body = null; }
    throw new ApiError(resp.status, body, resp.headers);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let terminal = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    // Events end with a blank line; CRLF and CR line ends are legal too.
    buf = buf.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const ev = parseEvent(block);
      if (!ev) continue;
      if (ev.id !== null) {
        const run = ev.id.split(".")[0];
        if (state.lastEventId && run !== state.lastEventId.split(".")[0]) {
          // Another server run replays from the start.
          state.perImage = [];
          logLine("log", Date.now(), "the server restarted; replaying the job's events");
        }
        state.lastEventId = ev.id;
      }
      let data;
      try { data = JSON.parse(ev.data); } catch { continue; }
      const type = ev.event || data.type || "message";
      onEvent(type, data);
      if (TERMINAL.has(type)) terminal = true;
    }
  }
  return terminal;
}

function parseEvent(block) {
  let event = "";
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id" && /^[a-z0-9]+\.\d+$/.test(value)) id = value;
  }
  return data.length ? { event, id, data: data.join("\n") } : null;
}

// ---------- gallery and viewer ----------

function renderGalleryEmpty() {
  el.galleryEmpty.hidden = el.gallery.children.length > 0;
}

function fileName(job, i, mime) {
  const ext = { "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif" }[mime] || "png";
  return `easel-${job.id}-${i + 1}.${ext}`;
}

function addShot(job, d, i) {
  if (!d || !d.url) return;
  const key = `${job.id}:${i}`;
  if (el.gallery.querySelector(`[data-key="${CSS.escape(key)}"]`)) return;
  const src = sameOrigin(d.url);
  const name = fileName(job, i, d.mime);
  const alt = `Result ${i + 1} for: ${job.prompt || ""}`;
  const item = h("li", { class: "shot", "data-key": key },
    h("button", { type: "button", class: "shot-open", "aria-label": `View image ${i + 1} full size`,
      onclick: () => openViewer(job, d, i) },
    h("img", { src, alt, loading: "lazy", decoding: "async", width: d.width || undefined, height: d.height || undefined }),
    h("span", { class: "shot-size", "aria-hidden": "true", text: d.width ? `${d.width} × ${d.height}` : "" })),
    h("div", { class: "shot-bar" },
      h("a", { class: "button secondary small", href: src, download: name, text: "Download", "aria-label": `Download image ${i + 1}` }),
      h("button", { type: "button", class: "button ghost small", text: "Copy link", "aria-label": `Copy the link of image ${i + 1}`,
        onclick: () => copyLink(absolute(d.url)) })));
  // Keep the gallery in image order even when images finish out of order.
  const after = [...el.gallery.children].find((li) => {
    const [jid, idx] = li.dataset.key.split(":");
    return jid === job.id && Number(idx) > i;
  });
  el.gallery.insertBefore(item, after || null);
  renderGalleryEmpty();
}

let viewerReturn = null;
function openViewer(job, d, i) {
  viewerReturn = document.activeElement;
  const src = sameOrigin(d.url);
  el.viewerTitle.textContent = `Image ${i + 1} of ${job.n || 1}`;
  el.viewerImg.src = src;
  el.viewerImg.alt = `Result ${i + 1} for: ${job.prompt || ""}`;
  el.viewerCaption.textContent = [job.prompt, d.width ? `${d.width} × ${d.height}` : "", job.model].filter(Boolean).join(" · ");
  el.viewerDownload.href = src;
  el.viewerDownload.download = fileName(job, i, d.mime);
  el.viewerLink.value = absolute(d.url);
  el.viewer.showModal();
  el.viewerClose.focus();
}

el.viewerClose.addEventListener("click", () => el.viewer.close());
el.viewer.addEventListener("close", () => {
  el.viewerImg.removeAttribute("src");
  if (viewerReturn && viewerReturn.focus) viewerReturn.focus();
});
el.viewer.addEventListener("click", (ev) => {
  if (ev.target === el.viewer) el.viewer.close(); // a click on the backdrop
});
el.viewerCopy.addEventListener("click", () => copyLink(el.viewerLink.value, el.viewerLink));

async function copyLink(url, field) {
  try {
    await navigator.clipboard.writeText(url);
    toast("Link copied");
  } catch {
    // Without clipboard access (plain http on another host), select the
    // link so the user can copy it by hand.
    if (field) {
      field.focus();
      field.select();
      toast("Press Ctrl+C to copy the selected link");
    } else {
      toast("Copying is blocked here; open the image to copy its link");
    }
  }
}

// ---------- history ----------

function markCurrentHistory() {
  const id = state.job && state.job.id;
  for (const b of el.history.querySelectorAll(".history-item")) {
    const cur = b.dataset.id === id;
    b.classList.toggle("is-current", cur);
    if (cur) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
}

let historyLoading = null;
async function loadHistory(more = false) {
  if (!more && historyLoading) historyLoading.abort();
  const ctl = new AbortController();
  historyLoading = ctl;
  const q = new URLSearchParams({ limit: String(HISTORY_PAGE) });
  if (more && state.historyCursor) q.set("after", state.historyCursor);
  let list;
  try {
    list = await api(`/v1/images/jobs?${q}`, { signal: ctl.signal });
  } catch (err) {
    if (err.name !== "AbortError" && !(err instanceof ApiError && err.status === 401)) showError(err, "Could not load the history");
    return;
  } finally {
    if (historyLoading === ctl) historyLoading = null;
  }
  if (!more) clear(el.history);
  for (const job of (list && list.data) || []) el.history.append(historyItem(job));
  state.historyCursor = (list && list.next_cursor) || "";
  el.historyMore.hidden = !(list && list.has_more && state.historyCursor);
  el.historyEmpty.hidden = el.history.children.length > 0;
  markCurrentHistory();
}

function historyItem(job) {
  const first = (job.data || []).find((d) => d && d.url);
  const thumb = first
    ? h("img", { class: "history-thumb", src: sameOrigin(first.url), alt: "", loading: "lazy" })
    : h("span", { class: "history-thumb is-blank", "aria-hidden": "true" });
  const meta = [job.model, `${job.n || 1} image${job.n === 1 ? "" : "s"}`, job.results_expired ? "expired" : "", fmtAgo(job.created_at)].filter(Boolean).join(" · ");
  const badge = h("span", { class: `badge is-${job.status}`, text: STATUS_TEXT[job.status] || job.status });
  return h("li", {},
    h("button", { type: "button", class: "history-item", "data-id": job.id, onclick: () => openJob(job.id) },
      thumb,
      h("span", { class: "history-text" },
        h("span", { class: "history-prompt", text: job.prompt || "(no prompt)" }),
        h("span", { class: "history-meta", text: meta })),
      badge));
}

// openJob shows a job from the history, following it if it still runs.
async function openJob(id) {
  let job;
  try {
    job = await api(`/v1/images/jobs/${encodeURIComponent(id)}`);
  } catch (err) {
    showError(err, "Could not open the job");
    return;
  }
  stopFollowing();
  hideAlert();
  clear(el.log);
  clear(el.gallery);
  renderGalleryEmpty();
  showJob(job);
  // The event stream replays a finished job's events too, so the log
  // shows what happened whichever way the job was opened.
  follow(job);
  if (job.status === "failed" && job.error) showAlert("The backend failed", job.error.message || "");
  document.getElementById("progress-card").scrollIntoView({ block: "start", behavior: "smooth" });
}

el.historyRefresh.addEventListener("click", () => loadHistory());
el.historyMore.addEventListener("click", () => loadHistory(true));
el.alertClose.addEventListener("click", hideAlert);

// ---------- start ----------

async function start() {
  state.key = loadKey();
  renderKeyState();
  resetProgress();
  renderGalleryEmpty();
  const err = await loadModels();
  if (!err) {
    loadHistory();
    return;
  }
  if (err instanceof ApiError && err.status === 401) {
    // A first visit just asks for the key; a stored key that stopped
    // working is reported as such.
    if (state.key) showError(err);
    else openKeyPanel();
    return;
  }
  showError(err, "Could not load models");
}

start();

// The edgescribe dashboard: record, upload, live job view, nodes and history.
// Plain ES modules, no build step. Server strings only ever become text nodes (see dom.js).

import { badge, bytes, clock, h, setChildren, when } from "./dom.js";
import { RecorderPanel } from "./recorder-panel.js";
import { Review } from "./review.js";

const $ = (id) => document.getElementById(id);

const state = {
  jobs: new Map(), // id -> summary, as in GET /api/jobs
  nodes: new Map(), // node_id -> node
  job: null, // the open job (full body) or null
  uploadsInFlight: 0,
};

// ---------------------------------------------------------------- server

class ApiError extends Error {}

/** JSON from the API; throws ApiError with the server's own message on 4xx/5xx. */
async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" }, ...options });
  } catch {
    throw new ApiError("The server could not be reached.");
  }
  if (!response.ok) throw new ApiError(await errorMessage(response.status, () => response.text()));
  return response.status === 204 ? null : response.json();
}

/** A 401: the login has ended (or the token changed); the server's login page takes over. */
function loginAgain() {
  location.assign("/login");
}

async function errorMessage(status, readText) {
  if (status === 401) {
    loginAgain();
    return "Your login has ended: log in again.";
  }
  let text = "";
  try {
    text = await readText();
    const body = JSON.parse(text);
    if (body && typeof body.error === "string" && body.error) return body.error;
  } catch {
    // not JSON: fall through to a generic sentence
  }
  if (status === 413) return "The file is too large.";
  if (status === 429) return "Too many requests: wait a minute and try again.";
  return `The server answered ${status}${text && text.length < 120 && !text.includes("<") ? `: ${text}` : "."}`;
}

const jobUrl = (id) => `/api/jobs/${encodeURIComponent(id)}`;

/** The server's limits, put on <body> by the page template (absent: no check here, the server still checks). */
function limit(name) {
  const value = Number(document.body.dataset[name]);
  return Number.isFinite(value) && value > 0 ? value : Infinity;
}

// ---------------------------------------------------------------- connection (server-sent events)

function setConnection(mode, text) {
  $("connection").dataset.state = mode;
  $("connection-text").textContent = text;
}

function connect() {
  if (typeof EventSource === "undefined") {
    setConnection("offline", "No live updates in this browser");
    refreshAll();
    return;
  }
  const events = new EventSource("/api/events");
  events.addEventListener("hello", (event) => {
    // Sent on every (re)connect: anything may have changed while we were away.
    setConnection("live", "Live");
    const body = parse(event.data);
    if (body && Array.isArray(body.nodes)) setNodes(body.nodes);
    refreshAll();
  });
  events.addEventListener("resync", () => {
    // We fell behind; a fresh hello follows and reloads everything.
    setConnection("connecting", "Catching up…");
  });
  events.addEventListener("job", (event) => {
    const job = parse(event.data);
    if (job && job.id) jobChanged(job);
  });
  events.addEventListener("deleted", (event) => {
    const body = parse(event.data);
    if (body && body.id) jobDeleted(body.id);
  });
  events.addEventListener("node", (event) => {
    const node = parse(event.data);
    if (node && node.node_id) {
      state.nodes.set(node.node_id, node);
      renderNodes();
    }
  });
  events.addEventListener("error", () => {
    if (events.readyState === EventSource.CLOSED) {
      // A refused stream (401 after the login ended, among others) is not retried: ask the API why.
      setConnection("offline", "Disconnected: reload the page");
      api("/api/nodes").catch(() => {});
    } else setConnection("connecting", "Reconnecting…");
  });
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

async function refreshAll() {
  await Promise.allSettled([loadJobs(), loadNodes(), state.job ? openJob(state.job.id, { quiet: true }) : null]);
}

async function loadJobs() {
  try {
    const body = await api("/api/jobs");
    state.jobs = new Map(body.jobs.map((job) => [job.id, job]));
    renderJobList();
    for (const job of state.jobs.values()) recorder.jobChanged(job); // one may have finished while away
  } catch (error) {
    showNotice($("job-list-empty"), `Could not load the history: ${error.message}`);
  }
}

async function loadNodes() {
  try {
    setNodes((await api("/api/nodes")).nodes);
  } catch {
    // the event stream's hello carries the nodes too
  }
}

function setNodes(nodes) {
  state.nodes = new Map(nodes.map((node) => [node.node_id, node]));
  renderNodes();
}

/** A job event (or a fresh summary): update the history, the open job and the upload list. */
function jobChanged(job) {
  const old = state.jobs.get(job.id);
  state.jobs.set(job.id, { ...(old || {}), ...job });
  renderJobList();
  renderUploads();
  recorder.jobChanged(job);
  if (state.job && state.job.id === job.id) {
    const merged = { ...state.job, ...job };
    if (job.text !== state.job.text) delete merged.segments; // events carry no segments: they are stale now
    const justFinished = FINISHED.has(job.state) && !FINISHED.has(state.job.state);
    state.job = merged;
    renderJob();
    if (justFinished || (FINISHED.has(job.state) && !merged.segments)) openJob(job.id, { quiet: true }); // for the review
  }
}

function jobDeleted(id) {
  // Deleted here or in another tab: gone from the history, and closed if it is open.
  state.jobs.delete(id);
  if (state.job && state.job.id === id) {
    if (jobIdFromHash() === id) history.replaceState(null, "", location.pathname + location.search);
    closeJob();
    $("job-empty").querySelector("p").textContent = "That job was deleted.";
  } else renderJobList();
}

// ---------------------------------------------------------------- history

const FINISHED = new Set(["done", "partial", "failed"]);

function sortedJobs() {
  return [...state.jobs.values()].sort((a, b) => (b.created || 0) - (a.created || 0));
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function progressText(p, state_, open = false) {
  if (open && (!p || !p.total)) return "recording… the first words come at the first pause";
  if (open) return `recording… ${p.done} of ${plural(p.total, "chunk")} done so far`;
  if (!p || !p.total) return state_ === "failed" ? "no chunks" : "preparing…";
  const failed = p.failed ? `, ${p.failed} failed` : "";
  return `${p.done} of ${plural(p.total, "chunk")} done${failed}`;
}

/** The short form for the history: "2 chunks" once finished, "1/4 chunks" while running. */
function progressShort(p, state_, open = false) {
  if (open) return "recording…";
  if (!p || !p.total) return state_ === "failed" ? "" : "preparing…";
  const failed = p.failed ? `, ${p.failed} failed` : "";
  if (FINISHED.has(state_)) return `${plural(p.total, "chunk")}${failed}`;
  return `${p.done + p.failed}/${plural(p.total, "chunk")}${failed}`;
}

function renderJobList() {
  const list = $("job-list");
  const jobs = sortedJobs();
  const openId = state.job && state.job.id;
  setChildren(
    list,
    jobs.map((job) =>
      h(
        "li",
        {},
        h(
          "a",
          { class: "job-item", href: `#job=${encodeURIComponent(job.id)}`, "aria-current": job.id === openId ? "true" : null },
          h("span", { class: "job-item-name" }, job.name || job.id),
          badge(job.open ? "recording" : job.state),
          h(
            "span",
            { class: "job-item-meta" },
            // an open recording's duration_s lags behind (audio since the last pause is not in it yet): not shown
            [when(job.created), job.duration_s && !job.open ? clock(job.duration_s) : null,
              progressShort(job.progress, job.state, job.open)]
              .filter(Boolean)
              .join(" · "),
          ),
        ),
      ),
    ),
  );
  $("job-list-empty").hidden = jobs.length > 0;
  if (!jobs.length) $("job-list-empty").textContent = "No jobs yet.";
}

// ---------------------------------------------------------------- the open job

function jobIdFromHash() {
  const match = /^#job=(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

async function openJob(id, { quiet = false, focus = false } = {}) {
  try {
    const job = await api(jobUrl(id));
    if (!quiet || (state.job && state.job.id === id)) {
      const changed = !state.job || state.job.id !== id;
      state.job = job;
      renderJob(changed);
      renderJobList();
      if (focus) $("job-title").focus();
    }
  } catch (error) {
    if (quiet) return;
    state.job = null;
    renderJob(true);
    showNotice($("job-empty").querySelector("p"), `Could not open that job: ${error.message}`);
  }
}

function closeJob() {
  state.job = null;
  review.clear();
  renderJob(true);
  renderJobList();
}

function renderJob(fresh = false) {
  const job = state.job;
  $("job-view").hidden = !job;
  $("job-empty").hidden = Boolean(job);
  if (!job) {
    $("job-empty").querySelector("p").textContent = "Record or upload audio, or open a job from the history.";
    return;
  }
  if (fresh) {
    review.clear();
    $("transcript").replaceChildren();
    $("transcript").dataset.text = "";
    $("job-notice").textContent = "";
  }
  $("job-title").textContent = job.name || job.id;
  setChildren($("job-state"), badge(job.open ? "recording" : job.state)); // open: a live recording still growing
  renderMeta(job);
  $("job-error").hidden = !job.error;
  $("job-error").textContent = job.error || "";

  renderProgress(job);
  renderChunks(job);
  renderTranscript(job);

  for (const link of document.querySelectorAll("#job-view a[data-format]")) {
    link.href = `${jobUrl(job.id)}/transcript?format=${link.dataset.format}`;
  }
  const running = !FINISHED.has(job.state);
  $("delete").disabled = running;
  $("delete").title = running ? "A job can be deleted once it has finished" : "";
}

/** "Started today 10:31 · 0:11 of audio". A recording made on this page shows the recorder's own time, so
 * that the two never disagree; another page's open recording shows none (its chunks lag behind it). */
function renderMeta(job) {
  const recorded = recorder.secondsOf(job.id);
  let length = null;
  if (recorded !== null) length = job.open ? `recording: ${clock(recorded)} so far` : `recorded ${clock(recorded)}`;
  else if (job.open) length = "recording now";
  else if (job.duration_s) length = `${clock(job.duration_s)} of audio`;
  $("job-meta").textContent = [job.created ? `Started ${when(job.created)}` : null, length].filter(Boolean).join(" · ");
}

function renderProgress(job) {
  const p = job.progress || { done: 0, failed: 0, total: 0 };
  const total = p.total || 0;
  const donePct = total ? (100 * p.done) / total : 0;
  const failedPct = total ? (100 * p.failed) / total : 0;
  $("job-progress-done").style.width = `${donePct}%`;
  $("job-progress-failed").style.width = `${failedPct}%`;
  $("job-progress").setAttribute("aria-valuenow", String(Math.round(donePct + failedPct)));
  $("job-progress").setAttribute("aria-valuetext", progressText(p, job.state, job.open));
  $("job-progress").dataset.state = job.state;
  $("job-progress-text").textContent = progressText(p, job.state, job.open);
}

function chunkLabel(chunk) {
  const span = `${clock(chunk.start_s)}–${clock(chunk.end_s)}`;
  const where = {
    queued: "queued",
    assigned: `on ${chunk.node_id || "a node"}`,
    done: chunk.node_id ? `done by ${chunk.node_id}` : "done",
    failed: "failed",
  }[chunk.state] || chunk.state;
  return `Chunk ${chunk.seq + 1}, ${span}: ${where}`;
}

function renderChunks(job) {
  const strip = $("chunk-strip");
  const chunks = Array.isArray(job.chunks) ? job.chunks : [];
  while (strip.children.length > chunks.length) strip.lastElementChild.remove();
  while (strip.children.length < chunks.length) strip.append(h("li", {}));
  const dense = chunks.length > 24; // many chunks: even squares, not bars as wide as their time
  strip.classList.toggle("dense", dense);
  chunks.forEach((chunk, i) => {
    const cell = strip.children[i];
    const length = Math.max(0.5, (chunk.end_s || 0) - (chunk.start_s || 0));
    cell.className = `chunk chunk-${chunk.state}`;
    cell.style.flexGrow = dense ? "" : String(length);
    cell.dataset.state = chunk.state;
    const label = chunkLabel(chunk);
    if (cell.title !== label) {
      cell.title = label;
      cell.replaceChildren(h("span", { class: "visually-hidden" }, label)); // read out by screen readers
    }
  });
  strip.hidden = chunks.length === 0;
  const busy = chunks.filter((c) => c.state === "assigned");
  $("chunk-now").textContent = busy.length
    ? `Now: ${busy.map((c) => `chunk ${c.seq + 1} on ${c.node_id || "a node"}`).join(", ")}`
    : "";
}

const GAP = /\[gap (\d+(?::\d\d){1,2})-(\d+(?::\d\d){1,2}): ([^\]]*)\]/g;

/** The transcript as nodes: text, with each gap marker as a highlighted <mark>. */
function transcriptNodes(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(GAP)) {
    if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
    nodes.push(
      h("mark", { class: "gap", title: `Nothing could be transcribed from ${match[1]} to ${match[2]}: ${match[3]}` },
        `gap ${match[1]}–${match[2]}: ${match[3]}`),
    );
    last = match.index + match[0].length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

function renderTranscript(job) {
  const box = $("transcript");
  const reviewing = FINISHED.has(job.state) && Array.isArray(job.segments) && Boolean(job.text);
  $("review-hint").hidden = !reviewing;
  $("review-hint").textContent = `${job.audio ? "Click a time or a word to play from there." : "The audio of this job was not kept."}`
    + " Words with a dotted underline are the ones the engine was unsure of.";
  box.setAttribute("aria-live", reviewing ? "off" : "polite"); // a review is not news to read out
  if (reviewing) {
    review.show(job);
    box.dataset.text = "";
    return;
  }
  if (box.classList.contains("review")) {
    review.clear();
    box.replaceChildren();
  }
  const text = typeof job.text === "string" ? job.text : "";
  const shown = box.dataset.text || "";
  box.querySelector(".transcript-pending")?.remove();
  box.querySelector(".transcript-placeholder")?.remove();
  if (text !== shown) {
    // Append only the new words when the text grew at the end, so a screen reader reads just those.
    if (shown && text.startsWith(shown)) {
      box.append(...transcriptNodes(text.slice(shown.length)));
    } else {
      box.replaceChildren(...transcriptNodes(text));
    }
    box.dataset.text = text;
  }
  if (!text) {
    const msg = FINISHED.has(job.state)
      ? "No speech was heard."
      : job.open
        ? "The text appears here as you speak, a moment after each pause."
        : "The text appears here as chunks are transcribed.";
    box.append(h("span", { class: "transcript-placeholder" }, msg));
  } else if (!FINISHED.has(job.state)) {
    box.append(h("span", { class: "transcript-pending", "aria-hidden": "true" }, " …"));
  }
}

async function copyText() {
  const text = (state.job && state.job.text) || "";
  const notice = $("job-notice");
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
    } else {
      // Plain http on the LAN has no clipboard API: copy through a selected textarea.
      const area = h("textarea", { class: "visually-hidden", readonly: true });
      area.value = text;
      document.body.append(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      if (!ok) throw new Error("the browser refused");
    }
    showNotice(notice, "Copied the transcript.");
  } catch (error) {
    showNotice(notice, `Could not copy: ${error.message}. Select the text and copy it by hand.`);
  }
}

async function deleteJob() {
  const job = state.job;
  if (!job || !window.confirm(`Delete “${job.name || job.id}” and its transcript?`)) return;
  try {
    await api(jobUrl(job.id), { method: "DELETE" });
    jobDeleted(job.id);
    $("job").focus();
  } catch (error) {
    showNotice($("job-notice"), `Could not delete: ${error.message}`);
  }
}

const noticeTimers = new WeakMap();
function showNotice(el, text) {
  el.hidden = false;
  el.textContent = text;
  clearTimeout(noticeTimers.get(el));
  if (el.id === "job-notice") noticeTimers.set(el, setTimeout(() => (el.textContent = ""), 6000));
}

// ---------------------------------------------------------------- nodes

const NODE_ORDER = { online: 0, draining: 1, offline: 2 };

function jobName(id) {
  const job = state.jobs.get(id);
  return job ? job.name || id : id;
}

function nodeWork(node) {
  const chunks = Array.isArray(node.chunks) ? node.chunks : [];
  if (node.state === "offline") return "Offline";
  if (!chunks.length) return node.state === "draining" ? "Finishing, then stopping" : "Idle";
  const names = chunks.map((ref) => {
    const cut = String(ref).lastIndexOf("/");
    if (cut < 0) return String(ref);
    return `${jobName(ref.slice(0, cut))}, chunk ${Number(ref.slice(cut + 1)) + 1}`;
  });
  return `Transcribing ${names.join("; ")}`;
}

function rtfText(rtf) {
  if (typeof rtf !== "number" || !Number.isFinite(rtf)) return "—";
  return rtf.toFixed(rtf < 0.1 ? 3 : 2);
}

const RTF_HELP = "Real-time factor: seconds of work per second of audio (below 1 is faster than real time)";

function renderNodes() {
  const nodes = [...state.nodes.values()].sort(
    (a, b) => (NODE_ORDER[a.state] ?? 3) - (NODE_ORDER[b.state] ?? 3) || String(a.node_id).localeCompare(String(b.node_id)),
  );
  setChildren(
    $("node-list"),
    nodes.map((node) => {
      const busy = Array.isArray(node.chunks) && node.chunks.length > 0;
      return h(
        "li",
        { class: `node node-${node.state}`, "data-node-id": node.node_id, "data-state": node.state },
        h("div", { class: "node-head" }, h("span", { class: "node-id" }, node.node_id), badge(node.state)),
        h("div", { class: "node-engine" }, [node.engine, node.model].filter(Boolean).join(" · ") || "engine unknown"),
        h("div", { class: `node-now${busy ? " is-busy" : ""}` }, nodeWork(node)),
        h(
          "dl",
          { class: "node-stats" },
          h("div", {}, h("dt", {}, "Busy"), h("dd", {}, `${node.active ?? 0} of ${node.capacity ?? "?"}`)),
          h("div", {}, h("dt", {}, "Chunks done"), h("dd", {}, String(node.done ?? 0))),
          h(
            "div",
            { title: RTF_HELP },
            h("dt", {}, h("abbr", { title: RTF_HELP }, "RTF")),
            h("dd", { "aria-label": `real-time factor ${rtfText(node.rtf)}` }, rtfText(node.rtf)),
          ),
        ),
      );
    }),
  );
  const online = nodes.filter((n) => n.state === "online").length;
  $("nodes-count").textContent = nodes.length ? `${online} of ${nodes.length} online` : "";
  $("node-list-empty").hidden = nodes.length > 0;
}

// ---------------------------------------------------------------- uploads

const uploads = []; // {key, name, size, sent, status: sending|sent|error, message, jobId}
let uploadKey = 0;
const MAX_SHOWN_UPLOADS = 6;

/** Send one file as a new job; `onDone(jobId or null, error message)` when the server has answered. */
function upload(file, { name = "", open = false, onDone = () => {} } = {}) {
  const entry = { key: ++uploadKey, name: file.name, size: file.size, sent: 0, status: "sending", message: "", jobId: null };
  uploads.unshift(entry);
  trimUploads();
  const maxMb = limit("maxUploadMb");
  if (file.size > maxMb * 1024 * 1024) {
    entry.status = "error";
    entry.message = `${file.name} is larger than the ${maxMb} MB limit.`;
    renderUploads();
    onDone(null, entry.message);
    return;
  }
  if (!file.size) {
    entry.status = "error";
    entry.message = `${file.name} is empty.`;
    renderUploads();
    onDone(null, entry.message);
    return;
  }
  renderUploads();
  state.uploadsInFlight += 1;

  const form = new FormData();
  form.append("audio", file, file.name);
  if (name) form.append("name", name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/jobs");
  xhr.setRequestHeader("Accept", "application/json");
  xhr.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) {
      entry.sent = event.loaded / event.total;
      renderUploads();
    }
  });
  const finish = async (ok, message, jobId) => {
    state.uploadsInFlight -= 1;
    entry.status = ok ? "sent" : "error";
    entry.message = message;
    entry.jobId = jobId;
    renderUploads();
    if (ok && open) location.hash = `job=${encodeURIComponent(jobId)}`;
    onDone(ok ? jobId : null, message);
  };
  xhr.addEventListener("load", async () => {
    if (xhr.status === 201 || xhr.status === 200) {
      const body = parse(xhr.responseText);
      if (body && body.id) {
        await finish(true, "", body.id);
        loadJobs();
        return;
      }
    }
    await finish(false, await errorMessage(xhr.status, async () => xhr.responseText));
  });
  xhr.addEventListener("error", () => finish(false, "The upload failed: the server could not be reached."));
  xhr.addEventListener("abort", () => finish(false, "The upload was cancelled."));
  xhr.send(form);
}

function trimUploads() {
  // Drop the oldest finished entries beyond the limit; never one still sending.
  for (let i = uploads.length - 1; i >= 0 && uploads.length > MAX_SHOWN_UPLOADS; i -= 1) {
    if (uploads[i].status !== "sending") uploads.splice(i, 1);
  }
}

function renderUploads() {
  setChildren(
    $("uploads"),
    uploads.map((entry) => {
      const job = entry.jobId ? state.jobs.get(entry.jobId) : null;
      let status;
      if (entry.status === "sending") {
        status = h(
          "span",
          { class: "upload-status" },
          h("progress", { max: "100", value: String(Math.round(entry.sent * 100)), "aria-label": `Uploading ${entry.name}` }),
          `${Math.round(entry.sent * 100)} %`,
        );
      } else if (entry.status === "sent") {
        status = h(
          "span",
          { class: "upload-status" },
          job ? badge(job.state) : h("span", {}, "Sent"),
          h("a", { href: `#job=${encodeURIComponent(entry.jobId)}` }, "Open"),
        );
      } else {
        status = h("span", { class: "upload-error", role: "alert" }, entry.message);
      }
      return h(
        "li",
        { class: `upload is-${entry.status}` },
        h("span", { class: "upload-name" }, entry.name, h("span", { class: "upload-size" }, ` ${bytes(entry.size)}`)),
        status,
        entry.status === "sending"
          ? null
          : h("button", { type: "button", class: "icon-button", "data-dismiss": entry.key, "aria-label": `Dismiss ${entry.name}` }, "×"),
      );
    }),
  );
}

function uploadFiles(files) {
  const list = [...files];
  // No name: the server names the job after the file, and its downloads after the file's stem.
  list.forEach((file, i) => upload(file, { open: i === 0 }));
}

function setUpDropzone() {
  const zone = $("dropzone");
  const input = $("file-input");
  input.addEventListener("change", () => {
    if (input.files.length) uploadFiles(input.files);
    input.value = "";
  });
  let depth = 0;
  zone.addEventListener("dragenter", (event) => {
    event.preventDefault();
    depth += 1;
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
  });
  zone.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove("dragging");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    zone.classList.remove("dragging");
    const files = event.dataTransfer ? event.dataTransfer.files : [];
    if (files.length) uploadFiles(files);
  });
  // A file dropped elsewhere on the page must not make the browser navigate away to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  $("uploads").addEventListener("click", (event) => {
    const key = event.target.closest("[data-dismiss]")?.dataset.dismiss;
    if (!key) return;
    const i = uploads.findIndex((u) => String(u.key) === key);
    if (i >= 0) uploads.splice(i, 1);
    renderUploads();
  });
}

// ---------------------------------------------------------------- start

const recorder = new RecorderPanel({
  upload,
  describe: errorMessage,
  findJob: (id) => state.jobs.get(id),
  onTick: () => state.job && recorder.secondsOf(state.job.id) !== null && renderMeta(state.job),
  maxSeconds: () => limit("maxDurationS"),
});
const review = new Review($("transcript"), $("player"));

function start() {
  recorder.start();
  setUpDropzone();
  $("copy").addEventListener("click", copyText);
  $("delete").addEventListener("click", deleteJob);
  window.addEventListener("hashchange", () => {
    const id = jobIdFromHash();
    if (id) openJob(id, { focus: true });
    else closeJob();
  });
  window.addEventListener("beforeunload", (event) => {
    if (recorder.busy || state.uploadsInFlight) event.preventDefault();
  });
  const id = jobIdFromHash();
  if (id) openJob(id);
  renderJob(true);
  renderNodes();
  loadJobs();
  connect();
}

start();

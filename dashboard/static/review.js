// Review a finished transcript with its audio: the words as timed paragraphs next to a player.
// Clicking a paragraph's time or a word plays from there; the word being played is highlighted;
// words the engine was unsure of are underlined with dots, their confidence in a tooltip.
// The words and their times come from the job's segments (docs/api.md, GET /api/jobs/<id>).

import { clock, h } from "./dom.js";

export const UNSURE = 0.5; // a word below this confidence is marked
const BREAK_PAUSE_S = 1.5; // a pause this long always starts a new paragraph
const SENTENCES = 3; // a paragraph ends at the sentence end after this many sentences
const SOFT_WORDS = 45; // past this many words, a paragraph ends at a sentence end or a pause of ...
const SOFT_PAUSE_S = 0.5;
const HARD_WORDS = 90; // ... and at the next word past this many
const SENTENCE_END = /[.!?…]["'”’)]*$/;

/**
 * The transcript's items in order: words `{start, end, text, confidence}` and failed chunks' gaps
 * `{gap: true, start, end, reason}`. A segment without word times (some engines) gets its text's
 * words spread over its span, by length, with no confidence.
 */
export function transcriptItems(segments) {
  const items = [];
  for (const seg of Array.isArray(segments) ? segments : []) {
    if (seg.status === "failed") {
      items.push({ gap: true, start: seg.start_s, end: seg.end_s, reason: seg.reason || "failed" });
    } else if (seg.status === "ok" && Array.isArray(seg.words) && seg.words.length) {
      for (const w of seg.words) {
        if (w.text) items.push({ start: w.start_s, end: w.end_s, text: w.text, confidence: w.confidence ?? null });
      }
    } else if (seg.status === "ok" && seg.text) {
      items.push(...estimated(seg));
    }
  }
  return items;
}

function estimated(seg) {
  const words = seg.text.split(/\s+/).filter(Boolean);
  const weight = words.reduce((sum, w) => sum + w.length + 1, 0);
  const span = Math.max(0, seg.end_s - seg.start_s);
  let at = seg.start_s;
  return words.map((text) => {
    const start = at;
    at += (span * (text.length + 1)) / weight;
    return { start, end: at, text, confidence: null };
  });
}

/** Items grouped into paragraphs `{start, items}`: at long pauses, after a few sentences, never too long. */
export function paragraphs(items) {
  const out = [];
  let current = null;
  let sentences = 0;
  let previous = null;
  for (const item of items) {
    const pause = previous ? item.start - previous.end : 0;
    const words = current ? current.items.length : 0;
    const sentenceEnded = previous && !previous.gap && SENTENCE_END.test(previous.text);
    const breakHere =
      !current ||
      item.gap ||
      previous.gap ||
      pause >= BREAK_PAUSE_S ||
      (sentenceEnded && sentences >= SENTENCES) ||
      (words >= SOFT_WORDS && (sentenceEnded || pause >= SOFT_PAUSE_S)) ||
      words >= HARD_WORDS;
    if (breakHere) {
      current = { start: item.start, items: [] };
      out.push(current);
      sentences = 0;
    }
    current.items.push(item);
    if (!item.gap && SENTENCE_END.test(item.text)) sentences += 1;
    previous = item;
  }
  return out;
}

/** The review of one job in a transcript box, with the page's <audio> element. */
export class Review {
  constructor(box, player) {
    this.box = box;
    this.player = player;
    this.key = "";
    this.jobId = null;
    this.starts = []; // each word's start time, in order
    this.words = []; // the word elements, in the same order
    this.playing = -1; // index of the highlighted word
    this.frame = 0;
    box.addEventListener("click", (event) => {
      const target = event.target.closest("[data-start]");
      if (target && this.box.contains(target) && this.jobId) this.playFrom(Number(target.dataset.start));
    });
    for (const name of ["timeupdate", "seeked", "seeking"]) player.addEventListener(name, () => this.follow());
    player.addEventListener("play", () => this.#animate());
  }

  /** Show `job` (finished, with segments); its audio in the player when the store kept it. */
  show(job) {
    const key = JSON.stringify([job.id, job.state, job.text, Boolean(job.audio), job.segments?.length]);
    if (key === this.key) return;
    this.key = key;
    if (job.id !== this.jobId || this.player.dataset.audio !== String(Boolean(job.audio))) {
      this.jobId = job.id;
      this.player.dataset.audio = String(Boolean(job.audio));
      this.#load(job.audio ? `/api/jobs/${encodeURIComponent(job.id)}/audio` : "");
    }
    this.starts = [];
    this.words = [];
    this.playing = -1;
    const playable = Boolean(job.audio);
    this.box.replaceChildren(...paragraphs(transcriptItems(job.segments)).map((p) => this.#paragraph(p, playable)));
    this.box.classList.add("review");
    this.follow();
  }

  /** Leave the review: the box is the caller's again, the player stops and lets go of the audio. */
  clear() {
    this.key = "";
    this.jobId = null;
    this.starts = [];
    this.words = [];
    this.playing = -1;
    this.box.classList.remove("review");
    this.#load("");
  }

  /** Play from `seconds`, highlighting the word said there. */
  playFrom(seconds) {
    if (!this.player.getAttribute("src") || !Number.isFinite(seconds)) return;
    this.player.currentTime = Math.max(0, seconds);
    this.follow(seconds);
    this.player.play().catch(() => {}); // refused (no gesture, no sound device): the position still moved
  }

  /** Highlight the word being played at the player's time (or `at`). */
  follow(at = this.player.currentTime) {
    const i = this.#wordAt(at);
    if (i === this.playing) return;
    this.words[this.playing]?.classList.remove("playing");
    this.playing = i;
    this.words[i]?.classList.add("playing");
  }

  #wordAt(seconds) {
    // the last word that has started (10 ms of slack for the player's rounding)
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid] <= seconds + 0.01) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  #animate() {
    // timeupdate comes about 4 times a second: follow every frame while it plays, for a smooth highlight
    cancelAnimationFrame(this.frame);
    const step = () => {
      this.follow();
      if (!this.player.paused && !this.player.ended) this.frame = requestAnimationFrame(step);
    };
    this.frame = requestAnimationFrame(step);
  }

  #load(src) {
    this.player.pause();
    if (src) this.player.src = src;
    else this.player.removeAttribute("src");
    this.player.load();
    this.player.closest("[data-player]")?.toggleAttribute("hidden", !src);
  }

  #paragraph(p, playable) {
    const time = playable
      ? h("button", { type: "button", class: "para-time", "data-start": p.start, "aria-label": `Play from ${clock(p.start)}` },
        clock(p.start))
      : h("span", { class: "para-time" }, clock(p.start));
    const text = h("span", { class: "para-text" });
    p.items.forEach((item, i) => {
      if (i) text.append(" ");
      text.append(item.gap ? this.#gap(item) : this.#word(item, playable));
    });
    return h("p", { class: "para" }, time, text);
  }

  #word(item, playable) {
    const unsure = typeof item.confidence === "number" && item.confidence < UNSURE;
    const classes = ["w", unsure ? "unsure" : null].filter(Boolean).join(" ");
    const title = [clock(item.start), unsure ? `the engine was unsure (confidence ${item.confidence.toFixed(2)})` : null]
      .filter(Boolean)
      .join(": ");
    const el = h("span", { class: classes, "data-start": playable ? item.start : null, title }, item.text);
    this.starts.push(item.start);
    this.words.push(el);
    return el;
  }

  #gap(item) {
    const span = `${clock(item.start)}–${clock(item.end)}`;
    return h("mark", { class: "gap", title: `Nothing could be transcribed from ${span}: ${item.reason}` },
      `gap ${span}: ${item.reason}`);
  }
}

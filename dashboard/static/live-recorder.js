// Live recording: the microphone as 16 kHz PCM, sent to the server while the user speaks, so that
// the transcript grows during the recording (docs/api.md, "Live recording"; docs/capture.md).
//
// An AudioWorklet (pcm-worklet.js) turns the microphone into 16 kHz mono 16-bit PCM. The page sends
// it in blocks of half a second, one request at a time, in order, each with its byte offset: a block
// whose answer was lost is sent again, and the server takes what it already has only once. While the
// server cannot be reached, the audio waits here and is retried every second for up to 20 s.

import { openMicrophone, release, startMeter } from "./recorder.js";

const RATE = 16000;
const BLOCK_BYTES = RATE; // half a second of 16-bit samples
const RETRY_MS = 1000;
const GIVE_UP_MS = 20_000; // under the server's 30 s idle limit, after which it ends the session
const FLUSH_WAIT_MS = 1000;

/** True when this browser can stream: an AudioWorklet (else the page falls back to MediaRecorder). */
export function liveSupported() {
  return typeof window.AudioWorkletNode !== "undefined" && typeof window.AudioContext !== "undefined";
}

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One live recording. `onLevel(level)` and `onTick(seconds)` as in recorder.js; `onEnded({jobId,
 * seconds, error})` once, after the server has the end (or the session failed: `error` says why).
 * `describe(status, readText)` turns a refused request into the sentence to show.
 */
export class LiveRecording {
  constructor({ onLevel, onTick, onEnded, describe }) {
    this.onLevel = onLevel;
    this.onTick = onTick;
    this.onEnded = onEnded;
    this.describe = describe;
    this.jobId = null;
    this.stream = null;
    this.context = null;
    this.worklet = null;
    this.timer = null;
    this.started = 0;
    this.pending = []; // Uint8Arrays not yet acknowledged, from byte `sent` on
    this.pendingBytes = 0;
    this.sent = 0;
    this.sending = Promise.resolve();
    this.scheduled = false;
    this.error = "";
    this.stopping = null;
  }

  /** Ask for the microphone, open the job, start streaming; resolves to the job id. */
  async start(name) {
    this.stream = await openMicrophone();
    try {
      this.context = await this.#context();
      const source = this.context.createMediaStreamSource(this.stream);
      await this.context.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
      this.jobId = await this.#post("/api/live", JSON.stringify({ name }), "application/json", (r) => r.json()).then((b) => b.id);
      this.worklet = new AudioWorkletNode(this.context, "pcm-16k", { numberOfOutputs: 1, outputChannelCount: [1] });
      this.worklet.port.onmessage = (event) => this.#received(event.data);
      const mute = this.context.createGain();
      mute.gain.value = 0; // the worklet must reach the destination to be run; nothing is heard
      source.connect(this.worklet).connect(mute).connect(this.context.destination);
      this.timer = startMeter(this.context, source, (level) => {
        this.onLevel(level);
        this.onTick(this.seconds);
      });
      for (const track of this.stream.getAudioTracks()) track.addEventListener("ended", () => this.stop());
      this.context.resume().catch(() => {});
      this.started = performance.now();
      return this.jobId;
    } catch (error) {
      this.#release();
      if (this.jobId) fetch(this.#url("end"), { method: "POST" }).catch(() => {});
      throw error;
    }
  }

  get seconds() {
    return this.started ? (performance.now() - this.started) / 1000 : 0;
  }

  /** Stop the microphone, send what is left, end the session; `onEnded` follows. Safe to call twice. */
  stop() {
    if (!this.stopping) this.stopping = this.#finish();
    return this.stopping;
  }

  async #finish() {
    const seconds = this.seconds;
    if (this.stream) for (const track of this.stream.getTracks()) track.stop(); // the microphone is off at once
    if (this.worklet) {
      const flushed = new Promise((resolve) => {
        this.worklet.port.onmessage = (event) => (event.data && event.data.flushed ? resolve() : this.#received(event.data));
      });
      this.worklet.port.postMessage("flush");
      await Promise.race([flushed, wait(FLUSH_WAIT_MS)]);
    }
    this.#release();
    this.#schedule(true);
    await this.sending;
    if (this.jobId) {
      try {
        await this.#post(this.#url("end"), null, "application/json", () => null);
      } catch (error) {
        this.error ||= error.message;
      }
    }
    this.onEnded({ jobId: this.jobId, seconds, error: this.error });
  }

  async #context() {
    // 16 kHz from the start: the browser resamples the microphone. A browser that cannot connect a
    // microphone to a context of another rate gets one at its own rate; the worklet resamples.
    const context = new AudioContext({ sampleRate: RATE });
    try {
      context.createMediaStreamSource(this.stream).disconnect();
      return context;
    } catch {
      context.close().catch(() => {});
      return new AudioContext();
    }
  }

  #received(buffer) {
    if (!(buffer instanceof ArrayBuffer) || !buffer.byteLength || this.error) return;
    this.pending.push(new Uint8Array(buffer));
    this.pendingBytes += buffer.byteLength;
    if (this.pendingBytes >= BLOCK_BYTES) this.#schedule(false);
  }

  #schedule(final) {
    if (this.scheduled && !final) return;
    this.scheduled = true;
    this.sending = this.sending.then(() => {
      this.scheduled = false;
      return this.#sendBlocks(final);
    });
  }

  async #sendBlocks(final) {
    while (!this.error && (this.pendingBytes >= BLOCK_BYTES || (final && this.pendingBytes))) {
      const block = this.#peek(Math.min(BLOCK_BYTES, this.pendingBytes));
      const url = `${this.#url("audio")}?offset=${this.sent}`;
      try {
        await this.#post(url, block, "application/octet-stream", () => null);
      } catch (error) {
        this.error = error.message;
        this.#stopCapture();
        return;
      }
      this.#drop(block.byteLength);
      this.sent += block.byteLength;
    }
  }

  /** POST with retries while the server cannot be reached; throws Error(sentence) when it refuses. */
  async #post(url, body, type, read) {
    const until = performance.now() + GIVE_UP_MS;
    for (;;) {
      let response;
      try {
        response = await fetch(url, { method: "POST", body, headers: { "Content-Type": type, Accept: "application/json" } });
      } catch {
        if (performance.now() > until) throw new Error("The server could not be reached; the text so far is kept.");
        await wait(RETRY_MS);
        continue;
      }
      if (response.ok) return read(response);
      throw new Error(await this.describe(response.status, () => response.text()));
    }
  }

  #url(what) {
    return `/api/live/${encodeURIComponent(this.jobId)}/${what}`;
  }

  #peek(n) {
    const block = new Uint8Array(n);
    let at = 0;
    for (const part of this.pending) {
      if (at === n) break;
      const take = Math.min(part.byteLength, n - at);
      block.set(part.subarray(0, take), at);
      at += take;
    }
    return block;
  }

  #drop(n) {
    this.pendingBytes -= n;
    while (n > 0) {
      const first = this.pending[0];
      if (first.byteLength <= n) {
        n -= first.byteLength;
        this.pending.shift();
      } else {
        this.pending[0] = first.subarray(n);
        n = 0;
      }
    }
  }

  /** The session failed (the server refused a block): stop recording; `stop` reports it. */
  #stopCapture() {
    setTimeout(() => this.stop(), 0);
  }

  #release() {
    release(this);
    this.worklet = null;
  }
}

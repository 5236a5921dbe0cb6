// The recorder on the page: the Record/Stop button, the level meter, the timer and the status line.
// A live recording (live-recorder.js) opens its job at once and streams; without an AudioWorklet the
// page records with MediaRecorder (recorder.js) and uploads at Stop. After Stop the status line
// follows the job until it has finished, so that it always says what is true.

import { clock } from "./dom.js";
import { LiveRecording, liveSupported } from "./live-recorder.js";
import { Recording, explain, extensionFor, unsupportedReason } from "./recorder.js";

const $ = (id) => document.getElementById(id);
const FINISHED = new Set(["done", "partial", "failed"]);

/** "Recording 2026-11-24 10:31", in the browser's own time. */
function recordingName() {
  const now = new Date();
  const two = (n) => String(n).padStart(2, "0");
  return `Recording ${now.getFullYear()}-${two(now.getMonth() + 1)}-${two(now.getDate())} ${two(now.getHours())}:${two(now.getMinutes())}`;
}

/** What the status line says once the recorded job has finished. */
function finishedText(job, seconds) {
  const recorded = `Recorded ${clock(seconds)}`;
  if (job.state === "failed") return `${recorded}, but its transcription failed${job.error ? `: ${job.error}` : "."}`;
  if (!job.text) return `${recorded}: no speech was heard.`;
  if (job.state === "partial") return `${recorded}: the transcript is ready, with gaps where chunks failed.`;
  return `${recorded}: the transcript is ready.`;
}

export class RecorderPanel {
  /**
   * `upload(file, options)` sends a file as a job (app.js); `describe(status, readText)` turns a refused
   * request into a sentence; `findJob(id)` is the page's latest summary of a job, if any; `onTick()` after
   * each tick of the timer; `maxSeconds()` the longest recording the server accepts.
   */
  constructor({ upload, describe, findJob, onTick, maxSeconds }) {
    this.upload = upload;
    this.describe = describe;
    this.findJob = findJob;
    this.onTick = onTick;
    this.maxSeconds = maxSeconds;
    this.recording = null; // the recording in progress
    this.recorded = new Map(); // job id -> seconds recorded, for the jobs recorded on this page
    this.followed = null; // the job whose transcript the status line waits for
  }

  start() {
    $("record").addEventListener("click", () => this.toggle());
    const reason = unsupportedReason();
    if (reason) $("record-status").textContent = reason;
    else if (!liveSupported()) {
      $("record-status").textContent = "Uses your microphone. The recording is sent for transcription when you press Stop.";
    }
  }

  get busy() {
    return Boolean(this.recording);
  }

  /** The seconds recorded for this job on this page (the timer's, while it records), else null. */
  secondsOf(jobId) {
    if (this.recording && this.recording.jobId === jobId) return this.recording.seconds;
    return this.recorded.has(jobId) ? this.recorded.get(jobId) : null;
  }

  /** A job changed: if it is the recorded one and has finished, say so. */
  jobChanged(job) {
    if (!this.followed || job.id !== this.followed || !FINISHED.has(job.state)) return;
    this.followed = null;
    $("record-status").textContent = finishedText(job, this.recorded.get(job.id) || 0);
  }

  #follow(jobId, seconds, waiting) {
    this.recorded.set(jobId, seconds);
    this.followed = jobId;
    $("record-status").textContent = waiting;
    const known = this.findJob(jobId); // it may have finished before this line was written
    if (known) this.jobChanged(known);
  }

  async toggle() {
    if (this.recording) {
      this.recording.stop();
      return;
    }
    const reason = unsupportedReason();
    if (reason) {
      this.#error(reason);
      return;
    }
    this.#error("");
    const button = $("record");
    button.disabled = true;
    $("record-status").textContent = "Waiting for permission to use the microphone…";
    const live = liveSupported();
    const recording = live ? this.#live() : this.#uploaded();
    this.followed = null;
    try {
      $("level").dataset.peak = "0";
      $("elapsed").textContent = "0:00";
      const jobId = await recording.start(recordingName());
      this.recording = recording;
      this.#setUi(true);
      if (live) {
        location.hash = `job=${encodeURIComponent(jobId)}`;
        $("record-status").textContent = "Recording: the transcript appears as you speak. Press Stop to finish.";
      } else {
        $("record-status").textContent = "Recording. Press Stop to send it for transcription.";
      }
    } catch (error) {
      $("record-status").textContent = "";
      this.#error(explain(error));
    } finally {
      button.disabled = false;
      button.focus();
    }
  }

  /** Live: the job opens at once and its transcript grows while the user speaks. */
  #live() {
    const recording = new LiveRecording({
      onLevel: (level) => this.#level(level),
      onTick: (seconds) => this.#tick(recording, seconds),
      describe: this.describe,
      onEnded: ({ jobId, seconds, error }) => {
        this.#ended(seconds);
        if (error) {
          this.recorded.set(jobId, seconds);
          $("record-status").textContent = `The recording stopped after ${clock(seconds)}; the text so far is kept.`;
          this.#error(error);
        } else {
          this.#follow(jobId, seconds, `Recorded ${clock(seconds)}: the last words are being transcribed…`);
        }
      },
    });
    return recording;
  }

  /** The fallback (no AudioWorklet): MediaRecorder, uploaded when the user stops. */
  #uploaded() {
    const recording = new Recording({
      onLevel: (level) => this.#level(level),
      onTick: (seconds) => this.#tick(recording, seconds),
      onEnded: (blob, seconds) => {
        this.#ended(seconds);
        if (!blob.size) {
          $("record-status").textContent = "Nothing was recorded.";
          return;
        }
        const file = new File([blob], `recording.${extensionFor(blob.type)}`, { type: blob.type });
        $("record-status").textContent = `Recorded ${clock(seconds)}; sending it for transcription…`;
        this.upload(file, {
          name: recordingName(),
          open: true,
          onDone: (jobId, error) => {
            if (jobId) this.#follow(jobId, seconds, `Recorded ${clock(seconds)}: it is being transcribed…`);
            else {
              $("record-status").textContent = "The recording was not accepted.";
              this.#error(error);
            }
          },
        });
      },
    });
    return recording;
  }

  /** Stop at the longest recording the server accepts. */
  #tick(recording, seconds) {
    $("elapsed").textContent = clock(seconds);
    this.onTick();
    if (seconds >= this.maxSeconds()) {
      $("record-status").textContent = "Stopped at the longest recording the server accepts.";
      recording.stop();
    }
  }

  #ended(seconds) {
    $("elapsed").textContent = clock(seconds); // the timer shows the length that the status line says
    this.recording = null;
    this.#setUi(false);
    this.#level(0);
  }

  #level(level) {
    const meter = $("level");
    $("level-fill").style.transform = `scaleX(${level})`;
    meter.setAttribute("aria-valuenow", String(Math.round(level * 100)));
    if (level > Number(meter.dataset.peak)) meter.dataset.peak = level.toFixed(3);
  }

  #setUi(recording) {
    $("record").classList.toggle("recording", recording);
    $("record-label").textContent = recording ? "Stop" : "Record";
    $("record").setAttribute("aria-pressed", recording ? "true" : "false");
    document.body.classList.toggle("is-recording", recording);
  }

  #error(message) {
    $("record-error").hidden = !message;
    $("record-error").textContent = message || "";
  }
}

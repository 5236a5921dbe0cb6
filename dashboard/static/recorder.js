// Recording from the microphone, the fallback: MediaRecorder for the audio (the server converts any
// format), uploaded when the user stops; an AnalyserNode for the level meter. live-recorder.js is
// what browsers with an AudioWorklet use. No ScriptProcessor: it drops blocks on a busy machine.

const PREFERRED_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];

/** Why recording cannot work in this browser or page, or "" when it can. */
export function unsupportedReason() {
  if (!window.isSecureContext) {
    return "Recording needs a secure page: open the dashboard over https or on localhost. You can still upload files.";
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return "This browser cannot use a microphone. You can still upload files.";
  }
  if (typeof window.MediaRecorder === "undefined" && typeof window.AudioWorkletNode === "undefined") {
    return "This browser cannot record audio. You can still upload files.";
  }
  return "";
}

/** The microphone, as both recorders ask for it: the raw signal, for the VAD and the engines. */
export function openMicrophone() {
  return navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
}

/**
 * The level meter: `onLevel(level)` with 0..1 about 20 times a second, from `source` in `context`.
 * Returns the interval to clear.
 */
export function startMeter(context, source, onLevel) {
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  return setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const x of samples) sum += x * x;
    const rms = Math.sqrt(sum / samples.length);
    // -60 dBFS and below show as empty, 0 dBFS as full.
    onLevel(rms > 0 ? Math.min(1, Math.max(0, (20 * Math.log10(rms) + 60) / 60)) : 0);
  }, 50);
}

/** Stop a recorder's meter (`timer`), microphone (`stream`) and audio graph (`context`), and forget them. */
export function release(recorder) {
  clearInterval(recorder.timer);
  if (recorder.stream) for (const track of recorder.stream.getTracks()) track.stop();
  if (recorder.context) recorder.context.close().catch(() => {});
  recorder.timer = null;
  recorder.stream = null;
  recorder.context = null;
}

/** A user-facing sentence for a getUserMedia or MediaRecorder failure. */
export function explain(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was refused. Allow the microphone for this page in the browser's site settings, then press Record again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one (or enable it in the system settings) and press Record again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone could not be opened: another application may be using it.";
    default:
      return `Recording failed: ${(error && error.message) || error}`;
  }
}

function pickType() {
  if (typeof MediaRecorder.isTypeSupported !== "function") return "";
  return PREFERRED_TYPES.find((type) => MediaRecorder.isTypeSupported(type)) || "";
}

/** File extension for a recorded MIME type, so the upload has a sensible name. */
export function extensionFor(type) {
  if (type.startsWith("audio/ogg")) return "ogg";
  if (type.startsWith("audio/mp4") || type.startsWith("video/mp4")) return "m4a";
  return "webm";
}

/**
 * One recording session. `onLevel(level)` gets 0..1 about 20 times a second and `onTick(seconds)`
 * the elapsed time; `onEnded(blob)` is called once, when the recording stops for any reason (the
 * user pressed Stop, or the microphone went away).
 */
export class Recording {
  constructor({ onLevel, onTick, onEnded }) {
    this.onLevel = onLevel;
    this.onTick = onTick;
    this.onEnded = onEnded;
    this.parts = [];
    this.stream = null;
    this.context = null;
    this.recorder = null;
    this.timer = null;
    this.started = 0;
  }

  /** Ask for the microphone and start. Rejects with the browser's error (see `explain`). */
  async start() {
    this.stream = await openMicrophone();
    try {
      this.#startMeter();
      const type = pickType();
      this.recorder = new MediaRecorder(this.stream, type ? { mimeType: type } : {});
      this.recorder.addEventListener("dataavailable", (event) => {
        if (event.data && event.data.size) this.parts.push(event.data);
      });
      this.recorder.addEventListener("stop", () => this.#finish());
      for (const track of this.stream.getAudioTracks()) {
        track.addEventListener("ended", () => this.stop());
      }
      this.recorder.start(1000);
      this.started = performance.now();
    } catch (error) {
      this.#release();
      throw error;
    }
  }

  stop() {
    if (this.recorder && this.recorder.state !== "inactive") this.recorder.stop();
  }

  get seconds() {
    return this.started ? (performance.now() - this.started) / 1000 : 0;
  }

  #startMeter() {
    const Context = window.AudioContext || window.webkitAudioContext;
    this.context = new Context();
    this.context.resume().catch(() => {});
    this.timer = startMeter(this.context, this.context.createMediaStreamSource(this.stream), (level) => {
      this.onLevel(level);
      this.onTick(this.seconds);
    });
  }

  #finish() {
    const type = (this.recorder && this.recorder.mimeType) || this.parts[0]?.type || "audio/webm";
    const blob = new Blob(this.parts, { type });
    const seconds = this.seconds;
    this.#release();
    this.onEnded(blob, seconds);
  }

  #release() {
    release(this);
  }
}

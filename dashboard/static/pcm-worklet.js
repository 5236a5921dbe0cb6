// Runs on the browser's audio thread: the microphone in (Float32, at the context's rate), 16 kHz
// mono 16-bit little-endian PCM out, posted to the page every 100 ms as an ArrayBuffer. A context
// made at 16 kHz needs no resampling; one at another rate (a browser that makes the context follow
// the microphone) is brought down by averaging the input samples of each output sample's period.
// "flush" from the page posts what is held at once, then {flushed: true}.

const OUT_RATE = 16000;
const POST_SAMPLES = OUT_RATE / 10;

class Pcm16kProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE; // input samples per output sample (sampleRate: the context's)
    this.sum = 0;
    this.count = 0;
    this.phase = 0;
    this.out = new DataView(new ArrayBuffer(2 * POST_SAMPLES));
    this.length = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.post();
        this.port.postMessage({ flushed: true });
      }
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || !channels.length) return true;
    const frames = channels[0].length;
    for (let i = 0; i < frames; i += 1) {
      let x = 0;
      for (const channel of channels) x += channel[i];
      this.sum += x / channels.length;
      this.count += 1;
      this.phase += 1;
      if (this.phase >= this.step) {
        this.phase -= this.step;
        this.emit(this.sum / this.count);
        this.sum = 0;
        this.count = 0;
      }
    }
    return true;
  }

  emit(x) {
    const s = Math.max(-1, Math.min(1, x));
    this.out.setInt16(2 * this.length, Math.round(s < 0 ? s * 32768 : s * 32767), true); // little-endian
    this.length += 1;
    if (this.length === POST_SAMPLES) this.post();
  }

  post() {
    if (!this.length) return;
    const block = this.out.buffer.slice(0, 2 * this.length);
    this.port.postMessage(block, [block]);
    this.length = 0;
  }
}

registerProcessor("pcm-16k", Pcm16kProcessor);

"""Which voice activity detector `hub listen` should use: each one on the same speech, clean and in noise.

    python -m bench.vad                 # the table in docs/capture.md
    python -m bench.vad --manifest ../shared/corpus/manifest.tsv
    python -m bench.vad --wer sphinx    # also transcribe each utterance: word error rate per detector

The speech is every clip of the manifest up to ``--max-clip`` seconds, each followed by
``--gap`` seconds of pause, as a session at a microphone would be. It is run three ways: with
digital silence between clips, and with white noise added at 20 dB and at 10 dB below the
speech's loudness. Each detector drives the same :class:`hub.vad.Segmenter` (same hysteresis,
pre-roll, pause and maximum length), so only the speech/non-speech decision differs.

What is counted, against the speech frames of each clean clip (30 ms frames within 35 dB of
the clip's loudest):

- **missed**: speech frames outside every utterance (words the engine never hears);
- **extra**: non-speech frames inside utterances (engine time spent on silence or noise);
- **utt/clip**: utterances per clip (1 is ideal; more means a sentence cut at a short pause,
  fewer means clips merged, 0 found for a clip counts in "clips lost");
- **end**: median time from the last speech frame of a clip to the moment its utterance is
  returned (the pause that ends it, mostly);
- **cpu**: time per second of audio on this machine, classifier and segmenter together;
- **WER** (with ``--wer ENGINE``): each utterance transcribed on its own by that engine, in this
  process, the texts joined in order, against the clips' joined references (:mod:`bench.wer`).

``silero`` (only where faster-whisper, which ships its ONNX model, is installed) is scored on
probabilities computed for the whole recording at once, so its cpu figure is a batch figure.
Results go to stdout and ``bench/results/vad.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydub import AudioSegment

from bench.wer import wer
from hub.audio import SAMPLE_RATE, load_audio
from hub.vad import FRAME_BYTES, FRAME_SAMPLES, EnergyClassifier, Segmenter, VadSettings, level_db

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "vad.json"


def clips(manifest: Path, max_s: float) -> tuple[list[AudioSegment], str]:
    """The clips up to ``max_s`` seconds, and their references joined."""
    out, refs = [], []
    with manifest.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if float(row["duration_s"]) <= max_s:
                out.append(load_audio(manifest.parent / row["file"]))
                refs.append(row["reference"])
    return out, " ".join(refs)


def session(parts: list[AudioSegment], gap_s: float) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray]:
    """Samples of the clips with pauses; each clip's frame range; which frames are speech."""
    gap = np.zeros(int(gap_s * SAMPLE_RATE) // FRAME_SAMPLES * FRAME_SAMPLES, dtype=np.int16)
    pieces, bounds, truth = [gap], [], [np.zeros(len(gap) // FRAME_SAMPLES, bool)]
    frame = len(gap) // FRAME_SAMPLES
    for clip in parts:
        samples = np.frombuffer(clip.raw_data, dtype="<i2")
        samples = samples[: len(samples) // FRAME_SAMPLES * FRAME_SAMPLES]
        levels = np.array([level_db(samples[i:i + FRAME_SAMPLES].tobytes()) for i in range(0, len(samples), FRAME_SAMPLES)])
        truth += [levels >= levels.max() - 35, np.zeros(len(gap) // FRAME_SAMPLES, bool)]
        bounds.append((frame, frame + len(levels)))
        frame += len(levels) + len(gap) // FRAME_SAMPLES
        pieces += [samples, gap]
    return np.concatenate(pieces), bounds, np.concatenate(truth)


def with_noise(samples: np.ndarray, truth: np.ndarray, snr_db: float | None, seed: int = 7) -> np.ndarray:
    if snr_db is None:
        return samples
    speech = samples.reshape(-1, FRAME_SAMPLES)[truth].astype(np.float64)
    rms = float(np.sqrt(np.mean(speech ** 2)))
    noise = np.random.default_rng(seed).normal(0, rms / 10 ** (snr_db / 20), len(samples))
    return np.clip(samples + noise, -32768, 32767).astype(np.int16)


def silero_classifier(samples: np.ndarray) -> Callable[[bytes], bool] | None:
    """Frame decisions from Silero's model as faster-whisper ships it (batch), or None without it."""
    try:
        from faster_whisper.utils import get_assets_path
        from faster_whisper.vad import SileroVADModel
    except ImportError:
        return None
    model = SileroVADModel(str(Path(get_assets_path()) / "silero_vad_v6.onnx"))
    window = 512
    padded = np.concatenate([samples, np.zeros(-len(samples) % window, np.int16)]).astype(np.float32) / 32768
    began = time.perf_counter()
    probs = np.asarray(model(padded)).reshape(-1)
    batch_s = time.perf_counter() - began
    position = {"frame": 0}

    def classify(frame: bytes) -> bool:
        start = position["frame"] * FRAME_SAMPLES
        position["frame"] += 1
        lo, hi = start // window, (start + FRAME_SAMPLES - 1) // window
        return bool(np.max(probs[lo:hi + 1]) >= 0.5)

    classify.batch_s = batch_s  # type: ignore[attr-defined]
    return classify


def score(name: str, classify: Callable[[bytes], bool], samples: np.ndarray, bounds: list[tuple[int, int]],
          truth: np.ndarray, transcribe: Callable[[bytes], str] | None = None, reference: str = "",
          settings: VadSettings | None = None) -> dict[str, object]:
    segmenter = Segmenter(settings or VadSettings(vad="energy"), classifier=classify)
    pcm = samples.astype("<i2").tobytes()
    frames = len(pcm) // FRAME_BYTES
    spent = getattr(classify, "batch_s", 0.0)
    found: list[tuple[int, int, int]] = []  # start frame, end frame, frame it was returned at
    texts: list[str] = []
    for i in range(frames):
        frame = pcm[i * FRAME_BYTES:(i + 1) * FRAME_BYTES]
        began = time.perf_counter()
        returned = segmenter.push(frame)
        spent += time.perf_counter() - began
        found += [(u.spec.start_ms // 30, u.spec.end_ms // 30, i + 1) for u in returned]
        texts += [transcribe(u.audio) for u in returned] if transcribe else []
    last = segmenter.flush()
    found += [(u.spec.start_ms // 30, u.spec.end_ms // 30, frames) for u in last]
    texts += [transcribe(u.audio) for u in last] if transcribe else []
    covered = np.zeros(frames, bool)
    for start, end, _ in found:
        covered[start:end] = True
    truth = truth[:frames]
    per_clip, ends = [], []
    for lo, hi in bounds:
        mine = [u for u in found if u[1] > lo and u[0] < hi]
        per_clip.append(len(mine))
        speech = np.flatnonzero(truth[lo:hi])
        if mine and len(speech):
            ends.append((max(u[2] for u in mine) - (lo + speech[-1] + 1)) * 30)
    return {
        "vad": name,
        "missed_pct": round(100 * float(np.mean(~covered[truth])), 1),
        "extra_pct": round(100 * float(np.mean(covered[~truth])), 1),
        "utterances_per_clip": round(sum(per_clip) / len(per_clip), 2),
        "clips_lost": per_clip.count(0),
        "end_ms_median": int(statistics.median(ends)) if ends else None,
        "cpu_ms_per_s": round(1000 * spent / (frames * 0.03), 2),
        "wer_pct": round(100 * wer(reference, " ".join(texts)), 1) if transcribe else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vad", description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, default=ROOT / "tests" / "data" / "manifest.tsv")
    parser.add_argument("--max-clip", type=float, default=20.0, help="longest clip used, seconds")
    parser.add_argument("--gap", type=float, default=1.0, help="pause after each clip, seconds")
    parser.add_argument("--wer", metavar="ENGINE", help="transcribe the utterances with this engine (e.g. sphinx)")
    parser.add_argument("--end-pause", type=float, default=VadSettings().end_silence_ms / 1000,
                        help="the pause that ends an utterance, seconds (default %(default)s, as hub listen)")
    parser.add_argument("--only", nargs="*", default=None, metavar="NAME",
                        help="only these detectors (webrtc0 ... webrtc3, energy, silero) and noises (none, 20, 10)")
    args = parser.parse_args(argv)
    parts, reference = clips(args.manifest, args.max_clip)
    transcribe = _transcriber(args.wer) if args.wer else None
    clean, bounds, truth = session(parts, args.gap)
    rows = []
    print(f"{len(parts)} clips, {len(clean) / SAMPLE_RATE:.0f} s; pause {args.gap:g} s after each")
    print(f"{'noise':<10} {'vad':<10} {'missed %':>8} {'extra %':>8} {'utt/clip':>8} {'clips lost':>10} {'end ms':>7} "
          f"{'cpu ms/s':>8} {'WER %':>6}")
    settings = VadSettings(vad="energy", end_silence_ms=int(round(args.end_pause * 1000)))
    only = set(args.only or ())
    for label, snr in (("none", None), ("20 dB SNR", 20.0), ("10 dB SNR", 10.0)):
        if only & {"none", "20", "10"} and label.split()[0] not in only:
            continue
        samples = with_noise(clean, truth, snr)
        makers: dict[str, Callable[[], Callable[[bytes], bool] | None]] = {
            **{f"webrtc {mode}": (lambda mode=mode: _webrtc(mode)) for mode in (0, 1, 2, 3)},
            "energy": lambda: EnergyClassifier(12.0),
            "silero": lambda samples=samples: silero_classifier(samples),
        }
        wanted = only - {"none", "20", "10"} or {"webrtc0", "webrtc2", "webrtc3", "energy", "silero"}
        for name, make in makers.items():
            classify = make() if name.replace(" ", "") in wanted else None
            if classify is None:
                continue
            row = {"noise": label, "end_pause_s": args.end_pause,
                   **score(name, classify, samples, bounds, truth, transcribe, reference, settings)}
            rows.append(row)
            print(f"{label:<10} {name:<10} {row['missed_pct']:>8} {row['extra_pct']:>8} {row['utterances_per_clip']:>8} "
                  f"{row['clips_lost']:>10} {row['end_ms_median']!s:>7} {row['cpu_ms_per_s']:>8} {row['wer_pct']!s:>6}",
                  flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"manifest": str(args.manifest), "clips": len(parts), "gap_s": args.gap,
                                   "engine": args.wer, "rows": rows}, indent=2) + "\n")
    return 0


def _transcriber(engine_name: str) -> Callable[[bytes], str]:
    import speech_recognition as sr

    from edge_node.engines import NoSpeech, create_engine

    engine = create_engine(engine_name)

    def transcribe(pcm: bytes) -> str:
        try:
            return engine.transcribe(sr.AudioData(pcm, SAMPLE_RATE, 2))
        except NoSpeech:
            return ""

    return transcribe


def _webrtc(mode: int) -> Callable[[bytes], bool]:
    import webrtcvad

    vad = webrtcvad.Vad(mode)
    return lambda frame: vad.is_speech(frame, SAMPLE_RATE)


if __name__ == "__main__":
    raise SystemExit(main())

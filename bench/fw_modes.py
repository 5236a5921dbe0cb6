"""faster-whisper's own best single-machine modes, for bench.cost to compare with the distributed chain.

    python -m bench.fw_modes FILE --mode vad|batched --model DIR_OR_NAME [--threads 2] [--batch-size 4]

``vad``: ``WhisperModel.transcribe(vad_filter=True)``, one decoding after another, silences skipped.
``batched``: ``BatchedInferencePipeline.transcribe(batch_size=N)``, which cuts the speech found by
the same VAD into pieces of up to 30 s and decodes N of them at once. Both as a user would call
them: CPU, int8, beam size 5, English, no word timestamps. The text goes to stdout, one line.
"""

from __future__ import annotations

import argparse
import sys

MODES = ("vad", "batched")
DEFAULT_THREADS = 2
#: On two cores a batch of 4 windows keeps both busy with little padding waste; larger batches
#: buy nothing on a CPU this small and only grow memory.
DEFAULT_BATCH_SIZE = 4


def transcribe(path: str, mode: str, model: str, threads: int, batch_size: int) -> str:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    whisper = WhisperModel(model, device="cpu", compute_type="int8", cpu_threads=threads)
    options = {"language": "en", "beam_size": 5, "word_timestamps": False}
    if mode == "vad":
        segments, _ = whisper.transcribe(path, vad_filter=True, **options)
    else:
        segments, _ = BatchedInferencePipeline(whisper).transcribe(path, batch_size=batch_size, **options)
    return " ".join(s.text.strip() for s in segments if s.text.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fw_modes", description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--model", required=True, help="local CTranslate2 model directory or model name")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="CTranslate2 CPU threads")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="windows per batch (batched)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.batch_size < 1:
        parser.error("--threads and --batch-size must be at least 1")
    print(transcribe(args.file, args.mode, args.model, args.threads, args.batch_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())

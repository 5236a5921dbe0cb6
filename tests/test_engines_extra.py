"""The vosk and google engines.

No package ships an English Vosk model, so the tests that decode real speech with Vosk run only when
``EDGESCRIBE_VOSK_MODEL`` names a model directory. Google's web API needs the internet: the tests that
reach it are marked ``internet`` and run only with ``EDGESCRIBE_TEST_INTERNET=1`` (or ``-m internet``);
the rest replaces the web call.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import threading

import pytest
import speech_recognition as sr

from bench.wer import wer
from edge_node.engines import ENGINES, EngineError, EngineUnavailable, NoSpeech, create_engine
from tests.chainkit import speech
from tests.test_cli import one_line_error, run

needs_vosk = pytest.mark.skipif(
    importlib.util.find_spec("vosk") is None, reason="the vosk package (requirements-dev.txt) is not installed",
)


def audio_data(corpus, name: str) -> sr.AudioData:
    audio, _ = speech(corpus, [name])
    return sr.AudioData(audio.raw_data, audio.frame_rate, audio.sample_width)


def test_both_engines_are_offered():
    assert {"vosk", "google"} <= set(ENGINES)


# --- vosk ---


@needs_vosk
@pytest.mark.parametrize("kind", ["empty", "missing", "file", "not-a-model", "model-name"])
def test_vosk_misconfiguration_fails_at_start_with_one_line(tmp_path, kind):
    (tmp_path / "file.txt").write_text("not a model\n")
    model = {
        "empty": "", "missing": str(tmp_path / "nope"), "file": str(tmp_path / "file.txt"),
        "not-a-model": str(tmp_path), "model-name": "vosk-model-small-en-us-0.15",
    }[kind]
    with pytest.raises(EngineUnavailable) as exc:
        create_engine("vosk", model)
    reason = str(exc.value)
    assert "\n" not in reason and reason.startswith("engine vosk")
    assert "directory" in reason and model in reason
    if kind in ("empty", "missing", "file", "model-name"):
        assert "model names are not supported" in reason


@needs_vosk
def test_vosk_a_broken_model_is_one_line_with_kaldis_reason(tmp_path, capfd):
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "final.mdl").write_bytes(b"not a Kaldi model")
    with pytest.raises(EngineUnavailable) as exc:
        create_engine("vosk", str(tmp_path))
    assert "\n" not in str(exc.value) and str(exc.value).startswith(f"engine vosk could not load model {tmp_path}: ")
    assert "ERROR" not in capfd.readouterr().err  # Kaldi's own complaint went into the reason, not to stderr


def test_vosk_without_the_package_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vosk" else real(name, *a))
    with pytest.raises(EngineUnavailable, match=r"^engine vosk needs the vosk package: pip install vosk==0\.3\.45$"):
        create_engine("vosk", "/some/model")


def test_vosk_results_keep_kaldis_word_confidences():
    from edge_node.engines.vosk import _span

    said = '{"result": [{"conf": 1.0, "end": 0.9, "start": 0.42, "word": "ask"}, {"conf": 0.53, "end": 1.2, "start": 0.9, "word": "not"}],' \
        ' "text": "ask not"}'
    span = _span(said)
    assert span is not None and [(w.text, w.confidence) for w in span.words] == [("ask", 1.0), ("not", 0.53)]
    assert _span('{"result": [{"end": 1.0, "start": 0.5, "word": "x"}], "text": "x"}').words[0].confidence is None


@pytest.fixture(scope="module")
def vosk_engine():
    model = os.environ.get("EDGESCRIBE_VOSK_MODEL", "")
    if not model or not os.path.isdir(model):
        pytest.skip("no Vosk model: set EDGESCRIBE_VOSK_MODEL to a model directory (none ships in a package)")
    if importlib.util.find_spec("vosk") is None:
        pytest.skip("the vosk package (requirements-dev.txt) is not installed")
    return create_engine("vosk", model)


def test_vosk_transcribes_speech_accurately(vosk_engine, corpus):
    """Needs an English model in EDGESCRIBE_VOSK_MODEL (vosk-model-small-en-us-0.15 will do)."""
    _, reference = corpus["jfk"]
    text = vosk_engine.transcribe(audio_data(corpus, "jfk"))
    assert wer(reference, text) < 0.3, text


def test_vosk_times_its_words_and_hears_no_speech_in_silence(vosk_engine, corpus):
    """Holds for a model of any language."""
    audio = audio_data(corpus, "jfk")
    text, spans = vosk_engine.transcribe_timed(audio)
    words = [w for s in spans for w in s.words]
    assert words and " ".join(s.text for s in spans) == text
    assert all(s.start_s == s.words[0].start_s and s.end_s == s.words[-1].end_s for s in spans)
    times = [t for w in words for t in (w.start_s, w.end_s)]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= 11.5
    assert all(t == round(t, 2) for t in times)
    assert all(w.confidence is not None and 0.0 <= w.confidence <= 1.0 for w in words)
    with pytest.raises(NoSpeech):
        vosk_engine.transcribe(sr.AudioData(bytes(2 * 16000 * 2), 16000, 2))


# --- google ---


def online(host: str = "www.google.com", port: int = 80, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout``; bounded even when DNS hangs."""
    opened: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(opened)


def test_google_is_created_without_the_network_and_never_publishes_the_key(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network was used while creating the engine")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    assert create_engine("google").model == "default-key"
    engine = create_engine("google", "SECRET-KEY", "en-GB")
    assert engine.model == "own-key" and engine.language == "en-GB"


def test_google_outcomes_with_the_web_call_replaced(monkeypatch):
    engine = create_engine("google", "k")
    audio = sr.AudioData(bytes(2 * 40_000), 16000, 2)  # 2.5 s
    calls = []

    def answer(text):
        def fake(audio_data, key=None, language="en-US", **kwargs):
            calls.append((key, language))
            if isinstance(text, Exception):
                raise text
            return text
        return fake

    said = "ask not what your country can do"
    best = {"transcript": said, "confidence": 0.91}
    monkeypatch.setattr(engine._recognizer, "recognize_google", answer({"alternative": [best, {"transcript": "ask knot"}], "final": True}))
    text, spans = engine.transcribe_timed(audio)
    assert text == said
    assert [(s.start_s, s.end_s, s.text, s.words, s.confidence) for s in spans] == [(0.0, 2.5, said, (), 0.91)]
    assert calls == [("k", "en-US")]

    # Google may leave the confidence out: then there is none, not a made-up 0.5
    monkeypatch.setattr(engine._recognizer, "recognize_google", answer({"alternative": [{"transcript": said}]}))
    assert engine.transcribe_timed(audio)[1][0].confidence is None
    for empty in ([], {"alternative": []}, {"alternative": [{"transcript": "  "}]}):
        monkeypatch.setattr(engine._recognizer, "recognize_google", answer(empty))
        with pytest.raises(NoSpeech):
            engine.transcribe(audio)

    monkeypatch.setattr(engine._recognizer, "recognize_google", answer(sr.UnknownValueError()))
    with pytest.raises(NoSpeech):
        engine.transcribe(audio)

    failure = sr.RequestError("recognition connection failed: [Errno -3]\nTemporary failure in name resolution")
    monkeypatch.setattr(engine._recognizer, "recognize_google", answer(failure))
    with pytest.raises(EngineError) as exc:
        engine.transcribe(audio)
    assert str(exc.value) == "engine google: recognition connection failed: [Errno -3] Temporary failure in name resolution"


@pytest.mark.internet
def test_google_transcribes_speech_when_online(corpus):
    if not online():
        pytest.skip("offline: www.google.com:80 cannot be reached within 2 s")
    try:
        text, spans = create_engine("google").transcribe_timed(audio_data(corpus, "jfk"))
    except EngineError as exc:
        pytest.skip(f"Google's web API refused or failed: {exc}")
    assert {"fellow", "americans", "country"} <= set(text.lower().replace(",", " ").split()), text
    assert len(spans) == 1 and spans[0].start_s == 0.0 and abs(spans[0].end_s - 11.0) < 0.1


# --- command line ---


@pytest.mark.parametrize("command", [["transcribe", "tests/data/jfk.wav"], ["--broker", "mqtt://127.0.0.1:1"]])
def test_edge_node_with_vosk_and_no_model_directory_exits_with_one_line(command):
    proc = run("-m", "edge_node", *command, "--engine", "vosk", "--model", "/nonexistent", timeout=120)
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert line.startswith("edge_node: ") and "vosk" in line
    if importlib.util.find_spec("vosk") is not None:
        assert "/nonexistent not found" in line


@pytest.mark.internet  # it looks for www.google.com, then the engine tries Google's web API
def test_edge_node_transcribe_with_google_offline_exits_with_one_line():
    if online():
        pytest.skip("online: this checks the offline failure")
    proc = run("-m", "edge_node", "transcribe", "tests/data/jfk.wav", "--engine", "google", timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert one_line_error(proc).startswith("edge_node: engine google: ")

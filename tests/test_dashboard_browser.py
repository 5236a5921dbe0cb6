"""The dashboard's page in a real browser: headless Debian Chromium (/usr/bin/chromium) driven by Playwright.

One dashboard (``python -m dashboard``: a private broker, 2 local PocketSphinx nodes, a store in a
temporary directory) serves every test here. The browser's fake microphone plays tests/data's
ps_goforward.wav and jfk.wav, each followed by 1.5 s of silence (:func:`fake_microphone`), once
(``%noloop``) from the moment a page opens it, then silence. No browser is downloaded: Playwright
drives the system's Chromium (scripts/install puts it there).

Screenshots of each step go to tests/artifacts/browser/ (git-ignored): look at them after changing
the page, at laptop (1280x800) and phone (390x844) sizes.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hub.procs import processes_with_env, wait_gone
from tests.chainkit import processes_tagged, tagged_env, unique_prefix

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is absent: run scripts/install (apt chromium) for the browser tests",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
expect = sync_api.expect

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
ARTIFACTS = Path(__file__).parent / "artifacts" / "browser"
MICROPHONE_CLIPS = ("ps_goforward.wav", "jfk.wav")  # 2.8 s, then 11 s: the first text comes early
PAUSE_S = 1.5  # after each clip: longer than the 0.8 s pause that ends an utterance
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
NODES = ("dashboard-node1", "dashboard-node2")  # local nodes are named <name>-nodeN by hub.launch
CHROMIUM_ARGS = [
    "--use-fake-ui-for-media-stream",  # grant the microphone without asking
    "--use-fake-device-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


@dataclass
class Dashboard:
    """The running ``python -m dashboard`` and the lines it printed on stderr."""

    proc: subprocess.Popen
    tag: str
    url: str = ""
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def read(self) -> None:  # the reader thread
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_line(self, pattern: str, timeout: float) -> re.Match:
        """Bounded wait for a stderr line matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    tail = "".join(self.lines[-20:])
                    raise AssertionError(f"no line matching {pattern!r} on the dashboard's stderr:\n{tail}")
                self.changed.wait(left)

    def api(self, path: str) -> str:
        return self.url.rstrip("/") + path


@contextmanager
def running_dashboard(store: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Dashboard]:
    """``python -m dashboard`` on a free port with ``args``, until it has printed its URL; stopped on leaving."""
    tag = unique_prefix()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--port", "0", "--store", str(store), "--log-level", "WARNING", *args],
        cwd=ROOT, env={**tagged_env(tag), **(env or {})}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )
    dash = Dashboard(proc, tag)
    threading.Thread(target=dash.read, name="dashboard-stderr", daemon=True).start()
    try:
        dash.url = dash.wait_line(r"edgescribe dashboard: (http://\S+)", 60).group(1)
        yield dash
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    assert wait_gone(processes_tagged(tag), 30) == set(), "the dashboard left processes behind"


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    # PocketSphinx: the tests expect its words (e.g. "ill disposed" in ps_librivox_0880)
    with running_dashboard(tmp_path_factory.mktemp("dashboard-store"), "--local-nodes", "2", "--engine", "sphinx",
                           "--max-chunk", "10") as dash:
        for node in NODES:
            dash.wait_line(rf"node {node}: online", 60)
        yield dash


def fake_microphone(directory: Path) -> Path:
    """The fake microphone's file: each clip then a pause, as 16-bit PCM (the fake device gives silence
    for 24-bit, MP3 or a missing file)."""
    path = directory / "microphone.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        for name in MICROPHONE_CLIPS:
            with wave.open(str(DATA / name), "rb") as clip:
                assert (clip.getframerate(), clip.getnchannels(), clip.getsampwidth()) == (16000, 1, 2), name
                out.writeframes(clip.readframes(clip.getnframes()))
            out.writeframes(bytes(int(2 * 16000 * PAUSE_S)))
    return path


def clip_seconds(name: str) -> float:
    with wave.open(str(DATA / name), "rb") as clip:
        return clip.getnframes() / clip.getframerate()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    microphone = fake_microphone(tmp_path_factory.mktemp("microphone"))
    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={microphone}%noloop"]
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, viewport: dict[str, int], **options) -> tuple[object, object, list[str]]:
    """A fresh context and page; the list collects uncaught script errors."""
    context = browser.new_context(viewport=viewport, accept_downloads=True, **options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


@pytest.fixture
def page(browser) -> Iterator[object]:
    context, page, errors = open_page(browser, LAPTOP)
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"script errors on the page: {errors}"


def shot(page, name: str) -> None:
    """Save a screenshot of the whole page as tests/artifacts/browser/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, animations="disabled")


def goto(page, dashboard: Dashboard) -> None:
    page.goto(dashboard.url)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def assert_no_horizontal_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page is {width} px wide, wider than the screen"


def small_tap_targets(page) -> list[str]:
    """Every visible control of the page under 44 px tall, described."""
    return page.evaluate("""() => [...document.querySelectorAll(
            'button, a[href]:not(.skip-link), input:not(.visually-hidden), select, audio, label')]
        .filter((el) => el.getClientRects().length && !el.closest('[hidden]'))
        .filter((el) => el.getBoundingClientRect().height < 44)
        .map((el) => `${el.tagName} #${el.id} .${el.className} "${el.textContent.trim().slice(0, 20)}"`
                     + ` ${el.getBoundingClientRect().height.toFixed(1)} px`)""")


def upload_as(clip: Path, name: str) -> dict[str, object]:
    """A file for set_input_files: the clip under another name."""
    return {"name": name, "mimeType": "audio/wav", "buffer": clip.read_bytes()}


def job_id_of(page) -> str:
    return page.evaluate("decodeURIComponent(location.hash.slice('#job='.length))")


def history_item(page, name: str):
    return page.locator("#job-list .job-item", has=page.locator(".job-item-name", has_text=re.compile(f"^{re.escape(name)}$")))


# ------------------------------------------------------------------------------------------------ tests


def test_record_through_the_microphone_and_see_the_words(page, dashboard):
    goto(page, dashboard)
    expect(page.locator("#node-list .node[data-state=online]")).to_have_count(2)
    page.click("#record")
    clicked = time.monotonic()
    expect(page.locator("#record-label")).to_have_text("Stop")
    # the live recording's job opens at once, and shows that it is recording
    expect(page.locator("#job-title")).to_have_text(re.compile("^Recording "))
    expect(page.locator("#job-state")).to_have_text("Recording")
    # The meter must move: an unreadable fake-microphone file records silence without any error.
    page.wait_for_function("Number(document.getElementById('level').dataset.peak) > 0.3", timeout=10_000)
    shot(page, "laptop-1-recording")
    # the first clip's words come while the recording goes on: the page streams as it records
    expect(page.locator("#transcript")).to_contain_text("forward", timeout=30_000)
    heard = time.monotonic()
    expect(page.locator("#record-label")).to_have_text("Stop")
    expect(page.locator("#job-progress-text")).to_contain_text("recording…")
    # the job's line and the recorder's timer say the same time (read in one go: both change on each tick)
    assert page.evaluate("document.getElementById('job-meta').textContent.includes("
                         "'recording: ' + document.getElementById('elapsed').textContent + ' so far')"), \
        (page.locator("#job-meta").inner_text(), page.locator("#elapsed").inner_text())
    first_end = clip_seconds(MICROPHONE_CLIPS[0])
    print(f"live recording: the first clip's words on the page {heard - clicked - first_end:.1f} s after it ended")
    shot(page, "laptop-2-transcribing")
    # stop when the page's own clock has passed both clips and their pauses
    total = sum(clip_seconds(name) + PAUSE_S for name in MICROPHONE_CLIPS)
    page.wait_for_function(
        "(() => { const [m, s] = document.getElementById('elapsed').textContent.split(':').map(Number);"
        f" return m * 60 + s >= {total:.0f}; }})()",
        timeout=40_000,
    )
    page.click("#record")
    expect(page.locator("#record-label")).to_have_text("Record")
    recorded = page.locator("#elapsed").inner_text()
    expect(page.locator("#job-state")).to_have_text("Done", timeout=90_000)
    # after Stop the status line follows the job: once it is done, it says so
    expect(page.locator("#record-status")).to_have_text(f"Recorded {recorded}: the transcript is ready.")
    expect(page.locator("#job-meta")).to_contain_text(f"recorded {recorded}")
    expect(page.locator("#chunk-strip .chunk-done")).to_have_count(page.locator("#chunk-strip .chunk").count())
    assert page.locator("#chunk-strip .chunk").count() >= 2  # one chunk per utterance at least
    # the live recording's review: timed paragraphs and its audio
    expect(page.locator("#transcript .para").first).to_be_visible()
    expect(page.locator("#player")).to_have_attribute("src", f"/api/jobs/{job_id_of(page)}/audio")
    text = page.locator("#transcript").inner_text().lower()
    assert "forward" in text and "country" in text and "fellow americans" in text, text
    expect(page.locator("#record-error")).to_be_hidden()
    shot(page, "laptop-3-recorded")


def test_without_an_audio_worklet_the_recording_is_uploaded_at_stop(browser, dashboard):
    context, page, errors = open_page(browser, LAPTOP)
    try:
        page.add_init_script("delete window.AudioWorkletNode;")  # a browser without one: MediaRecorder
        goto(page, dashboard)
        expect(page.locator("#record-status")).to_contain_text("sent for transcription when you press Stop")
        page.click("#record")
        expect(page.locator("#record-label")).to_have_text("Stop")
        expect(page.locator("#job-view")).to_be_hidden()  # no job until the upload
        page.wait_for_function(
            "(() => { const [m, s] = document.getElementById('elapsed').textContent.split(':').map(Number);"
            f" return m * 60 + s >= {clip_seconds(MICROPHONE_CLIPS[0]) + PAUSE_S:.0f}; }})()",
            timeout=20_000,
        )
        page.click("#record")
        expect(page.locator("#job-title")).to_have_text(re.compile("^Recording "), timeout=20_000)
        expect(page.locator("#job-state")).to_have_text("Done", timeout=90_000)
        expect(page.locator("#transcript")).to_contain_text("forward")
    finally:
        context.close()
    assert errors == []


def test_upload_by_picker_then_copy_and_download(browser, dashboard, tmp_path):
    context, page, errors = open_page(browser, LAPTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=dashboard.url.rstrip("/"))
    try:
        goto(page, dashboard)
        clip = DATA / "lhotse_2412-153948-0000.wav"  # 11.7 s: two chunks or more
        page.set_input_files("#file-input", str(clip))
        expect(page.locator("#job-title")).to_have_text(clip.name, timeout=20_000)
        expect(page.locator("#job-state")).to_have_text("Done", timeout=90_000)
        chunks = page.locator("#chunk-strip .chunk")
        assert chunks.count() >= 2
        expect(page.locator("#chunk-strip .chunk-done")).to_have_count(chunks.count())
        expect(page.locator("#job-progress")).to_have_attribute("aria-valuenow", "100")
        expect(page.locator("#transcript")).to_contain_text("native country")
        expect(history_item(page, clip.name)).to_have_attribute("aria-current", "true")
        shot(page, "laptop-4-uploaded")

        page.click("#copy")
        expect(page.locator("#job-notice")).to_have_text("Copied the transcript.")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert "native country" in copied

        with page.expect_download() as download_info:
            page.click("#download-txt")
        download = download_info.value
        assert download.suggested_filename == f"{clip.stem}.txt"
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        assert saved.read_text(encoding="utf-8").strip() == copied.strip()
    finally:
        context.close()
    assert errors == []


WATCH_HIGHLIGHTS = """() => {
    window.highlighted = [];  // every word given the highlight, in order, as its index among the words
    const words = [...document.querySelectorAll('#transcript .w')];
    new MutationObserver((changes) => {
        for (const change of changes) {
            if (change.target.classList.contains('playing')) window.highlighted.push(words.indexOf(change.target));
        }
    }).observe(document.getElementById('transcript'), {subtree: true, attributes: true, attributeFilter: ['class']});
}"""


def test_review_a_transcript_with_its_audio(browser, dashboard, tmp_path):
    """An upload's transcript as timed paragraphs: a click on a word plays from it and highlights it."""
    context, page, errors = open_page(browser, LAPTOP)
    try:
        goto(page, dashboard)
        # 11 s, 22 words; under a name of its own: the other tests find their jobs in the history by name
        page.set_input_files("#file-input", files=[upload_as(DATA / "jfk.wav", "review-jfk.wav")])
        expect(page.locator("#job-title")).to_have_text("review-jfk.wav", timeout=20_000)
        expect(page.locator("#job-state")).to_have_text("Done", timeout=90_000)
        job_id = job_id_of(page)
        body = page.request.get(dashboard.api(f"/api/jobs/{job_id}")).json()
        words = [w for seg in body["segments"] for w in seg["words"]]
        assert len(words) >= 15 and body["audio"] is True

        # the words in order, in paragraphs that each start with their time
        shown = page.locator("#transcript .w")
        expect(shown).to_have_count(len(words))
        assert shown.all_inner_texts() == [w["text"] for w in words]
        starts = [float(x) for x in shown.evaluate_all("(els) => els.map((el) => el.dataset.start)")]
        assert starts == [w["start_s"] for w in words]
        paragraphs = page.locator("#transcript .para")
        times = paragraphs.locator(".para-time").all_inner_texts()
        assert len(times) == paragraphs.count() >= 1 and all(re.fullmatch(r"\d+:\d\d", t) for t in times), times
        assert times[0] == f"0:{int(words[0]['start_s']):02d}"
        # unsure words are marked, with their confidence in the tooltip
        unsure = [w for w in words if w["confidence"] is not None and w["confidence"] < 0.5]
        expect(page.locator("#transcript .w.unsure")).to_have_count(len(unsure))
        for w in page.locator("#transcript .w.unsure").all()[:3]:
            assert "unsure (confidence 0." in w.get_attribute("title")
        expect(page.locator("#review-hint")).to_contain_text("Click a time or a word")

        # the player has the job's audio, all 11 s of it
        player = page.locator("#player")
        expect(player).to_have_attribute("src", f"/api/jobs/{job_id}/audio")
        page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=10_000)
        assert abs(player.evaluate("(el) => el.duration") - 11.0) < 0.05

        # a click on a word in the middle: the audio goes there, that word lights up, then the next ones
        page.evaluate(WATCH_HIGHLIGHTS)
        index = next(i for i in range(len(words) // 2, len(words) - 1) if words[i + 1]["start_s"] > words[i]["start_s"])
        shown.nth(index).click()
        page.wait_for_function("window.highlighted.length > 0", timeout=10_000)
        assert page.evaluate("window.highlighted[0]") == index
        at = player.evaluate("(el) => el.currentTime")
        assert words[index]["start_s"] - 0.02 <= at < words[index]["start_s"] + 3, (at, words[index])
        page.wait_for_function(f"window.highlighted.some((i) => i > {index})", timeout=10_000)  # it plays on
        expect(page.locator("#transcript .w.playing")).to_have_count(1)
        page.screenshot(path=str(tmp_path / "review-laptop.png"), full_page=True, animations="disabled")
        shot(page, "laptop-11-review")

        # a paragraph's time plays from the paragraph's start
        player.evaluate("(el) => el.pause()")
        paragraphs.last.locator(".para-time").click()
        start = float(paragraphs.last.locator(".para-time").get_attribute("data-start"))
        page.wait_for_function(f"document.getElementById('player').currentTime >= {start - 0.02}", timeout=10_000)
        assert player.evaluate("(el) => el.currentTime") < start + 3
        player.evaluate("(el) => el.pause()")
    finally:
        context.close()
    assert errors == []

    # the same on a phone: uploaded there, reviewed there, every control big enough for a finger
    context, page, errors = open_page(browser, PHONE, is_mobile=True, has_touch=True)
    try:
        goto(page, dashboard)
        page.set_input_files("#file-input", files=[upload_as(DATA / "ps_goforward.wav", "review-phone.wav")])
        expect(page.locator("#job-title")).to_have_text("review-phone.wav", timeout=20_000)
        expect(page.locator("#job-state")).to_have_text("Done", timeout=90_000)
        words = page.locator("#transcript .w")
        expect(words.first).to_be_visible()
        assert_no_horizontal_scroll(page)
        assert small_tap_targets(page) == []
        page.evaluate(WATCH_HIGHLIGHTS)
        words.last.tap()
        page.wait_for_function("window.highlighted.length > 0", timeout=10_000)
        assert page.evaluate("window.highlighted[0]") == words.count() - 1
        page.locator("#player").evaluate("(el) => el.pause()")
        page.locator("#job").scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "review-phone.png"), animations="disabled")
        page.screenshot(path=str(tmp_path / "review-phone-whole.png"), full_page=True, animations="disabled")
        shot(page, "phone-5-review")
    finally:
        context.close()
    assert errors == []
    print(f"screenshots: {tmp_path}")


def test_drop_two_files_at_once_open_one_by_keyboard_and_delete_it(page, dashboard):
    goto(page, dashboard)
    clips = [DATA / "ps_goforward.wav", DATA / "ps_librivox_0880.wav"]
    files = [(clip.name, base64.b64encode(clip.read_bytes()).decode()) for clip in clips]
    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, b64] of files) {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, { type: "audio/wav" }));
            }
            return transfer;
        }""",
        files,
    )
    page.dispatch_event("#dropzone", "dragenter", {"dataTransfer": transfer})
    expect(page.locator("#dropzone")).to_have_class(re.compile(r"\bdragging\b"))
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    expect(page.locator("#uploads .upload")).to_have_count(2)
    for clip in clips:
        expect(history_item(page, clip.name).locator(".badge")).to_have_text("Done", timeout=90_000)
    expect(page.locator("#uploads .upload .badge", has_text="Done")).to_have_count(2)

    # open the second one from the history with the keyboard only
    item = history_item(page, clips[1].name)
    item.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#job-title")).to_have_text(clips[1].name)
    expect(page.locator("#job-title")).to_be_focused()
    expect(page.locator("#transcript")).to_contain_text("ill disposed")
    job_id = page.evaluate("decodeURIComponent(location.hash.slice('#job='.length))")

    # a second tab shows the same job; deleting it in the first closes it there too
    other = page.context.new_page()
    other.goto(f"{dashboard.url}#job={job_id}")
    expect(other.locator("#job-title")).to_have_text(clips[1].name)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete")
    expect(history_item(page, clips[1].name)).to_have_count(0)
    expect(page.locator("#job-view")).to_be_hidden()
    assert page.request.get(dashboard.api(f"/api/jobs/{job_id}")).status == 404
    expect(history_item(other, clips[1].name)).to_have_count(0)
    expect(other.locator("#job-view")).to_be_hidden()
    expect(other.locator("#job-empty")).to_contain_text("That job was deleted.")
    expect(history_item(other, clips[0].name)).to_have_count(1)
    other.close()


def test_a_file_that_is_not_audio_shows_the_servers_message(page, dashboard):
    goto(page, dashboard)
    junk = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"These are meeting notes, not audio.\n"}
    answer = page.request.post(dashboard.api("/api/jobs"), multipart={"audio": junk})
    assert answer.status == 400
    message = answer.json()["error"]
    assert message

    page.set_input_files("#file-input", files=[junk])
    error = page.locator("#uploads .upload-error")
    expect(error).to_have_text(message)
    expect(error).to_have_attribute("role", "alert")
    shot(page, "laptop-5-not-audio")
    page.click("#uploads [data-dismiss]")
    expect(page.locator("#uploads .upload")).to_have_count(0)


@pytest.mark.parametrize(
    ("error", "words"),
    [("NotAllowedError", "refused"), ("NotFoundError", "No microphone")],
)
def test_a_refused_or_missing_microphone_is_explained(browser, dashboard, error, words):
    context, page, errors = open_page(browser, LAPTOP)
    try:
        # the browser's answer when the user says no, or when there is no input device
        page.add_init_script(
            "navigator.mediaDevices.getUserMedia = () =>"
            f" Promise.reject(new DOMException('test', {error!r}));"
        )
        goto(page, dashboard)
        page.click("#record")
        expect(page.locator("#record-error")).to_contain_text(words)
        expect(page.locator("#record-label")).to_have_text("Record")
        if error == "NotAllowedError":
            shot(page, "laptop-6-microphone-refused")
    finally:
        context.close()
    assert errors == []


def test_phone_layout_has_no_horizontal_scroll(browser, dashboard):
    context, page, errors = open_page(browser, PHONE, is_mobile=True, has_touch=True)
    try:
        clip = DATA / "ps_librivox_0890.wav"
        audio = {"name": clip.name, "mimeType": "audio/wav", "buffer": clip.read_bytes()}
        answer = page.request.post(dashboard.api("/api/jobs"), multipart={"audio": audio, "name": "On the phone"})
        assert answer.status == 201, answer.text()
        goto(page, dashboard)
        assert_no_horizontal_scroll(page)
        shot(page, "phone-1-top")
        history_item(page, "On the phone").tap()
        expect(page.locator("#job-title")).to_have_text("On the phone")
        expect(page.locator("#job-state .badge")).to_have_text("Done", timeout=90_000)
        expect(page.locator("#transcript .para").first).to_be_visible()
        assert_no_horizontal_scroll(page)
        assert small_tap_targets(page) == []
        page.locator("#job").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "phone-2-job.png"), animations="disabled")
        shot(page, "phone-3-whole-page")
        page.emulate_media(color_scheme="dark")
        shot(page, "phone-4-dark")
    finally:
        context.close()
    assert errors == []


def test_nodes_panel_shows_a_node_that_stops(page, dashboard):
    goto(page, dashboard)
    node = page.locator('#node-list .node[data-node-id="dashboard-node2"]')
    expect(node).to_have_attribute("data-state", "online")
    expect(node.locator(".node-engine")).to_contain_text("sphinx")
    expect(page.locator("#node-list .node")).to_have_count(2)

    (pid,) = [pid for pid, cmd in processes_with_env("EDGESCRIBE_TEST_TAG", dashboard.tag).items()
              if "--node-id dashboard-node2" in cmd and "-m edge_node" in cmd]
    os.kill(pid, signal.SIGTERM)  # a clean stop: the node says draining, then offline
    expect(node).to_have_attribute("data-state", re.compile("^(offline|draining)$"), timeout=20_000)
    shot(page, "laptop-7-node-stopped")
    # the dashboard restarts its local nodes; the panel follows without a reload
    expect(node).to_have_attribute("data-state", "online", timeout=60_000)
    expect(page.locator("#nodes-count")).to_have_text("2 of 2 online")


def test_with_a_token_the_page_asks_for_it_first(browser, broker, tmp_path):
    token = "browser-test-token-0123456789"
    args = ("--broker", broker.url, "--prefix", unique_prefix(), "--host", "0.0.0.0")
    with running_dashboard(tmp_path / "store", *args, env={"EDGESCRIBE_DASHBOARD_TOKEN": token}) as dashboard:
        context, page, errors = open_page(browser, LAPTOP)
        try:
            page.goto(dashboard.url)
            expect(page).to_have_url(dashboard.api("/login"))
            expect(page.locator("#token")).to_be_focused()
            shot(page, "laptop-8-login")
            page.fill("#token", token + "x")
            page.click("#login")
            expect(page.locator("#login-error")).to_have_text("That is not the dashboard's token.")
            shot(page, "laptop-9-login-refused")
            page.fill("#token", token)
            page.click("#login")
            expect(page).to_have_url(dashboard.url)
            expect(page.locator("#connection")).to_have_attribute("data-state", "live")
            expect(page.locator("#job-list-empty")).to_have_text("No jobs yet.")
            shot(page, "laptop-10-logged-in")
            page.click("#logout")
            expect(page).to_have_url(dashboard.api("/login"))
            assert page.request.get(dashboard.api("/api/jobs")).status == 401
        finally:
            context.close()
        assert errors == []

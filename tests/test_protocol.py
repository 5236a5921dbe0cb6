"""Wire messages: a round trip for each, and hostile input that must be refused cleanly."""

from __future__ import annotations

import dataclasses
import io
import json
import wave

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import PROTOCOL_VERSION
from protocol.broker import BrokerAddress
from protocol.errors import ProtocolError
from protocol.messages import MAX_CHUNK_BYTES, Chunk, NodeState, NodeStatus, Result, ResultStatus, Span, Word
from protocol.topics import Topics


def wav(samples: int = 1600, rate: int = 16000, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(range(256)) * (samples * 2 * channels // 256) + b"\0" * (samples * 2 * channels % 256))
    return buf.getvalue()


CHUNK = Chunk(
    job_id="job1", seq=3, hub_id="hub-a", attempt=2, offset_s=40.25, duration_s=19.5,
    sample_rate=16000, deadline=1_800_000_000.5, lease_s=75.5, audio=wav(), language="en-GB", context_s=4.5,
)
RESULT = Result(
    job_id="job1", seq=3, attempt=2, node_id="pi-4", status=ResultStatus.ERROR, text="héllo\nworld",
    reason="engine crashed", engine="sphinx", model="m", seconds=1.25,
    spans=(
        Span(0.5, 2.25, "héllo world", (Word(0.5, 1.0, "héllo", 0.875), Word(1.1, 2.25, "world")), 0.5),
        Span(3.0, 4.0, "untimed"),
    ),
)
STATUS = NodeStatus(
    node_id="pi-4", state=NodeState.ONLINE, engine="sphinx", model="m", language="en-US",
    capacity=2, active=1, done=7, rtf=0.45, hostname="pi", software="edgescribe-node/0.1.0", reads_context=False,
)


@pytest.mark.parametrize("message", [CHUNK, RESULT, STATUS], ids=lambda m: type(m).__name__)
def test_round_trip_keeps_every_field(message):
    decoded = type(message).decode(message.encode())
    assert decoded == message
    # every field set to a non-default value above, so a dropped field would show
    for f in dataclasses.fields(message):
        if f.default is not dataclasses.MISSING and f.name != "audio_format":  # WAV is the only format yet
            assert getattr(message, f.name) != f.default, f.name


def test_a_result_without_confidences_from_an_older_node_still_decodes():
    header = json.loads(RESULT.encode().split(b"\n", 1)[0])
    for span in header["spans"]:
        del span["confidence"]
        for word in span["words"]:
            del word["confidence"]
    decoded = Result.decode(json.dumps(header).encode() + b"\n")
    assert decoded.spans[0].words[0] == Word(0.5, 1.0, "héllo")
    assert all(s.confidence is None for s in decoded.spans)


def test_every_message_carries_type_and_version():
    for message in (CHUNK, RESULT, STATUS):
        header = json.loads(message.encode().split(b"\n", 1)[0])
        assert header["v"] == PROTOCOL_VERSION
        assert header["type"] == message.TYPE


def test_chunk_audio_is_raw_bytes_after_the_header():
    data = CHUNK.encode()
    head, audio = data.split(b"\n", 1)
    assert audio == CHUNK.audio
    assert b"RIFF" not in head and len(head) < 400


def test_a_status_from_a_node_older_than_reads_context_says_it_decodes_the_context():
    """Such nodes decode every second they are sent, so the hub's lease must cover it all."""
    assert NodeStatus.decode(_header_with(STATUS, reads_context=_DELETE)).reads_context is True


def test_node_status_without_rtf():
    status = dataclasses.replace(STATUS, rtf=None)
    assert NodeStatus.decode(status.encode()).rtf is None


def _header_with(message, **changes) -> bytes:
    head, sep, rest = message.encode().partition(b"\n")
    header = json.loads(head)
    header.update(changes)
    for key, value in changes.items():
        if value is _DELETE:
            del header[key]
    return json.dumps(header).encode() + sep + rest


_DELETE = object()


@pytest.mark.parametrize(
    "message,changes,match",
    [
        (RESULT, {"v": 2}, "version"),
        (RESULT, {"v": True}, "version"),
        (RESULT, {"type": "chunk"}, "expected"),
        (RESULT, {"job_id": "../etc"}, "job id"),
        (RESULT, {"job_id": "a/#"}, "job id"),
        (RESULT, {"seq": -1}, "seq"),
        (RESULT, {"seq": 1.5}, "seq"),
        (RESULT, {"seq": "3"}, "seq"),
        (RESULT, {"status": "done"}, "status"),
        (RESULT, {"text": 5}, "text"),
        (RESULT, {"text": "x" * 100_001}, "longer"),
        (RESULT, {"seconds": 1e300}, "seconds"),
        (RESULT, {"node_id": _DELETE}, "node id"),
        (RESULT, {"spans": {"start_s": 1}}, "spans"),
        (RESULT, {"spans": [[1, 2, "x"]]}, "span must be an object"),
        (RESULT, {"spans": [{"start_s": -1, "end_s": 1, "text": "x"}]}, "start_s"),
        (RESULT, {"spans": [{"start_s": 0, "end_s": 1, "text": "x", "words": "x"}]}, "words must be a list"),
        (RESULT, {"spans": [{"start_s": 0, "end_s": 1, "text": "x", "words": [{"start_s": 0, "end_s": "1", "text": "x"}]}]}, "end_s"),
        (RESULT, {"spans": [{"start_s": 0, "end_s": 1}] * 1001}, "at most 1000"),
        (RESULT, {"spans": [{"start_s": 0, "end_s": 1, "text": "x", "confidence": 1.5}]}, "confidence"),
        (RESULT, {"spans": [{"start_s": 0, "end_s": 1, "text": "x", "words": [{"start_s": 0, "end_s": 1, "text": "x", "confidence": "high"}]}]}, "confidence"),
        (STATUS, {"capacity": 0}, "capacity"),
        (STATUS, {"state": "sleeping"}, "state"),
        (STATUS, {"rtf": "fast"}, "rtf"),
        (STATUS, {"reads_context": "no"}, "reads_context"),
        (STATUS, {"reads_context": 0}, "reads_context"),
        (CHUNK, {"audio_bytes": 10}, "audio length"),
        (CHUNK, {"context_s": 20.0}, "longer than the chunk"),
        (CHUNK, {"context_s": -1}, "context_s"),
        (CHUNK, {"sample_rate": 8}, "sample_rate"),
        (CHUNK, {"sample_rate": 8000}, "declared sample rate"),
        (CHUNK, {"audio_format": "mp3"}, "audio_format"),
        (CHUNK, {"hub_id": "+"}, "hub id"),
    ],
)
def test_bad_fields_are_refused(message, changes, match):
    with pytest.raises(ProtocolError, match=match):
        type(message).decode(_header_with(message, **changes))


@pytest.mark.parametrize(
    "payload",
    [b"", b"\n", b"null", b"[]", b'"x"', b"{", b"\xff\xfe", b"NaN", b'{"v":1,"type":"result","seconds":NaN}', b"{}" + b" " * 20000,
     b'{"v":1,"type":"result","seconds":' + b"9" * 5000 + b"}"],  # more digits than Python converts to an int
)
def test_garbage_is_refused(payload):
    for cls in (Result, NodeStatus, Chunk):
        with pytest.raises(ProtocolError):
            cls.decode(payload)


def test_chunk_audio_must_be_wav_of_the_declared_shape():
    with pytest.raises(ProtocolError, match="not a WAV"):
        Chunk.decode(dataclasses.replace(CHUNK, audio=b"RIFF....garbage").encode())
    with pytest.raises(ProtocolError, match="16-bit mono"):
        Chunk.decode(dataclasses.replace(CHUNK, audio=wav(channels=2)).encode())


def test_oversized_messages_are_refused_before_parsing():
    with pytest.raises(ProtocolError, match="limit"):
        Result.decode(b"{" + b" " * 1_100_000 + b"}")
    big = dataclasses.replace(CHUNK, audio=b"\0" * (MAX_CHUNK_BYTES + 1))
    with pytest.raises(ProtocolError, match="limit"):
        big.encode()
    with pytest.raises(ProtocolError, match="limit"):
        Chunk.decode(CHUNK.encode(), max_bytes=100)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes_never_escape_as_other_errors(data):
    for cls in (Result, NodeStatus, Chunk):
        try:
            cls.decode(data)
        except ProtocolError:
            pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([CHUNK, RESULT, STATUS]), st.dictionaries(st.sampled_from(
    ["v", "type", "job_id", "seq", "attempt", "node_id", "hub_id", "status", "text", "state", "capacity", "active",
     "rtf", "audio_bytes", "sample_rate", "deadline", "offset_s", "duration_s", "seconds", "language"]), _json, max_size=4))
def test_fuzz_mutated_headers_decode_or_raise_protocol_error(message, changes):
    try:
        decoded = type(message).decode(_header_with(message, **changes))
    except ProtocolError:
        return
    assert type(decoded) is type(message)


def test_topics_build_and_parse_in_one_place():
    t = Topics("site/a")
    assert t.node_status("pi-1") == "site/a/node/pi-1/status"
    assert t.node_chunks("pi-1") == "site/a/node/pi-1/chunk"
    assert t.hub_results("hub-1", "pi-1") == "site/a/hub/hub-1/result/pi-1"
    assert t.all_hub_results("hub-1") == "site/a/hub/hub-1/result/+"
    assert t.parse_node_status("site/a/node/pi-1/status") == "pi-1"
    assert t.parse_hub_results("site/a/hub/hub-1/result/pi-1") == ("hub-1", "pi-1")
    for bad in ("site/a/hub/hub-1/result", "site/a/hub/hub-1/result/+", "site/a/hub/hub-1/status/pi-1",
                "site/a/hub/hub-1/result/pi-1/x", "other/hub/hub-1/result/pi-1", "site/a/hub//result/pi-1"):
        with pytest.raises(ProtocolError):
            t.parse_hub_results(bad)
    for bad in ("site/a/node/pi-1/chunk", "other/node/x/status", "site/a/node/a/b/status", "site/a/node//status"):
        with pytest.raises(ProtocolError):
            t.parse_node_status(bad)
    for bad_id in ("+", "#", "a/b", "", "x" * 65, "-a"):
        with pytest.raises(ProtocolError):
            t.node_chunks(bad_id)
    for bad_prefix in ("", "a/+", "a//b", "/a"):
        with pytest.raises(ValueError):
            Topics(bad_prefix)


def test_broker_urls():
    b = BrokerAddress.parse("mqtt://user:s3cret@10.0.0.5:1884")
    assert (b.host, b.port, b.tls, b.username, b.password) == ("10.0.0.5", 1884, False, "user", "s3cret")
    assert "s3cret" not in str(b) and "s3cret" not in repr(b)
    assert BrokerAddress.parse("localhost").port == 1883
    assert BrokerAddress.parse("mqtts://h").port == 8883
    for bad in ("http://h", "mqtt://", "mqtt://h:99999"):
        with pytest.raises(ValueError):
            BrokerAddress.parse(bad)

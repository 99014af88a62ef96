"""The board wire codec: framing, integrity checks, payload layouts, and fuzzing."""

import contextlib
import itertools
import struct
import zlib

import numpy as np
import pytest
from cobs import cobs
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from drivers import protocol as proto
from mock_hw.devices import PulseKind, PulseLimits

FUZZ = settings(max_examples=1500, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
PROPERTY = settings(FUZZ, max_examples=400)  # properties of valid inputs: fewer cases do

frames = st.builds(
    proto.Frame,
    opcode=st.sampled_from(list(proto.Opcode)),
    seq=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=600),
    status=st.sampled_from(list(proto.Status)),
    reply=st.booleans(),
)


def raw_frame(
    version=proto.PROTOCOL_VERSION,
    opcode=proto.Opcode.CLOCK,
    flags=0,
    status=0,
    seq=5,
    payload=b"",
    length=None,
):
    """Wire bytes (without delimiter) of a frame with any header, and a valid CRC."""
    n = len(payload) if length is None else length
    body = struct.pack("<BBBBII", version, opcode, flags, status, seq, n) + payload
    return cobs.encode(body + struct.pack("<I", zlib.crc32(body)))


@FUZZ
@given(frames)
def test_frames_round_trip_and_contain_no_zero_but_the_delimiter(frame):
    wire = proto.encode_frame(frame)
    assert wire.endswith(b"\x00")
    assert wire.count(0) == 1
    assert proto.decode_frame(wire[:-1]) == frame


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_protocol_errors(data):
    with contextlib.suppress(proto.ProtocolError):
        proto.decode_frame(data)


@FUZZ
@given(frames, st.data())
@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_mutated_frames_are_rejected_or_unchanged(frame, data):
    wire = bytearray(proto.encode_frame(frame)[:-1])
    mutation = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    i = data.draw(st.integers(0, len(wire) - 1))
    if mutation == "flip":
        wire[i] ^= 1 << data.draw(st.integers(0, 7))
    elif mutation == "truncate":
        del wire[i:]
    elif mutation == "insert":
        wire.insert(i, data.draw(st.integers(1, 255)))
    else:
        del wire[i]
    with contextlib.suppress(proto.ProtocolError):
        assert proto.decode_frame(bytes(wire)) == frame


@FUZZ
@given(
    st.sampled_from([*proto.REQUESTS.values(), *proto.REPLIES.values()]), st.binary(max_size=300)
)
def test_random_payloads_raise_only_payload_errors(layout, data):
    with contextlib.suppress(proto.PayloadError):
        proto.decode_payload(layout, data)


@settings(max_examples=300, deadline=1000)
@given(
    st.lists(st.binary(max_size=50), max_size=5),
    st.lists(frames, min_size=1, max_size=4),
    st.lists(st.integers(1, 64), min_size=1, max_size=8),
)
def test_splitter_resyncs_after_garbage_in_any_chunking(garbage, msgs, cuts):
    stream = b"".join(
        g + b"\x00" + proto.encode_frame(m) for g, m in zip(garbage, msgs, strict=False)
    )
    stream += b"".join(proto.encode_frame(m) for m in msgs[len(garbage) :])
    splitter, got, pos = proto.FrameSplitter(), [], 0
    while pos < len(stream):
        step = cuts[len(got) % len(cuts)]
        got += splitter.feed(stream[pos : pos + step])
        pos += step
    decoded = []
    for body in got:
        with contextlib.suppress(proto.ProtocolError):
            decoded.append(proto.decode_frame(body))
    assert decoded[-len(msgs) :] == msgs


def test_splitter_discards_an_overlong_frame_and_recovers():
    splitter = proto.FrameSplitter()
    junk = b"\x01" * (proto.MAX_WIRE_FRAME // 2)
    assert splitter.feed(junk) == []
    assert splitter.feed(junk + b"\x01" * 10) == []
    assert splitter.overflows == 1
    good = proto.encode_frame(proto.Frame(proto.Opcode.CLOCK, 1))
    assert splitter.feed(b"more junk\x00" + good) == [good[:-1]]


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (b"\x05\x01\x02", proto.FramingError),  # COBS block longer than the data
        (cobs.encode(b"\x01\x02\x03"), proto.FramingError),  # too short for header and CRC
        (raw_frame(payload=b"abc", length=2), proto.LengthError),
        (raw_frame(version=1), proto.VersionError),  # protocol 1 had no operation ids
        (raw_frame(opcode=0x7E), proto.UnknownOpcodeError),
        (raw_frame(flags=0x80), proto.FramingError),
        (raw_frame(status=99), proto.FramingError),
    ],
)
def test_each_check_has_its_own_error(wire, error):
    with pytest.raises(error):
        proto.decode_frame(wire)


def test_crc_error_keeps_the_untrusted_seq_for_a_resend_request():
    wire = bytearray(cobs.decode(proto.encode_frame(proto.Frame(proto.Opcode.CLOCK, 1234))[:-1]))
    wire[-1] ^= 0xFF
    with pytest.raises(proto.CrcError) as exc:
        proto.decode_frame(cobs.encode(bytes(wire)))
    assert exc.value.seq == 1234


def test_oversized_payload_is_refused_by_the_encoder():
    with pytest.raises(ValueError, match="exceeds"):
        proto.encode_frame(proto.Frame(proto.Opcode.MVM, 1, bytes(proto.MAX_PAYLOAD + 1)))


def test_every_opcode_has_request_and_reply_layouts():
    assert set(proto.REQUESTS) == set(proto.Opcode) == set(proto.REPLIES)


def test_payload_layouts_round_trip_arrays_and_json():
    layout = proto.REQUESTS[proto.Opcode.APPLY_PULSES]
    arrays = [
        np.array([1, 2], "<u2"),
        np.array([3, 4], ">u2"),  # big-endian input is sent little-endian
        np.array([0, 3], "u1"),
        np.array([1, 0], "u1"),
        np.array([1.5, 2.0]),
        np.array([1e-7, 2e-7]),
    ]
    values = (2**64 - 1, 7, 0, 2)  # op id, core, offset, total
    out = proto.decode_payload(layout, proto.encode_payload(layout, values, arrays))
    assert out.values == values
    for spec, a in zip(layout.arrays, arrays, strict=True):
        np.testing.assert_array_equal(out.arrays[spec.name], a)
    cfg = proto.REQUESTS[proto.Opcode.SET_CONFIG]
    out = proto.decode_payload(cfg, proto.encode_payload(cfg, (3,), obj={"adc_bits": 8}))
    assert out.values == (3,) and out.obj == {"adc_bits": 8}


@pytest.mark.parametrize(
    ("array", "match"),
    [(np.zeros((2, 2), np.float32), "inputs"), (np.zeros(4, np.int8), "inputs")],
)
def test_encoder_refuses_arrays_outside_the_layout(array, match):
    with pytest.raises(ValueError, match=match):
        proto.encode_payload(proto.REQUESTS[proto.Opcode.MVM], (1, 0, 0, 2, 0, 0, 0, 0, 1), [array])


MVM_FIELDS = struct.pack("<QHIIIIHHH", 5, 0, 0, 1, 0, 1, 0, 0, 1)  # ids, batch, window


@pytest.mark.parametrize(
    "payload",
    [
        MVM_FIELDS[:-2],  # fixed fields cut short
        MVM_FIELDS + b"\x07\x02" + struct.pack("<II", 2, 2) + b"\x00" * 4,  # float inputs
        MVM_FIELDS + b"\x00\x01" + struct.pack("<I", 2) + b"\x00\x00",  # 1-D inputs
        MVM_FIELDS + b"\x00\x02" + struct.pack("<II", 1000, 1000) + b"\x00" * 8,  # short
        MVM_FIELDS + b"\x00\x02" + struct.pack("<II", 1, 1) + b"\x00\xff",  # trailing byte
    ],
)
def test_malformed_payloads_raise_payload_error(payload):
    assert len(MVM_FIELDS) == proto.REQUESTS[proto.Opcode.MVM].fixed.size
    with pytest.raises(proto.PayloadError):
        proto.decode_payload(proto.REQUESTS[proto.Opcode.MVM], payload)


@pytest.mark.parametrize("data", [b"[1, 2]", b"\xff\xfe", b"{", b"[" * 100_000])
def test_json_payload_must_be_an_object(data):
    with pytest.raises(proto.PayloadError):
        proto.decode_payload(proto.REPLIES[proto.Opcode.IDENTIFY], data)


def test_pulse_kind_codes_name_the_limits_the_simulator_enforces():
    limits = PulseLimits("V", 1.0, 2.0, 3.0, 1e-9, 1e-6, 0.5)
    for kind in PulseKind:
        assert getattr(limits, proto.PULSE_KIND_LIMIT[kind]) == limits.amplitude_max(kind)
    assert len(proto.PULSE_KIND_LIMIT) == len(PulseKind)


def test_a_board_sized_frame_of_int8_vectors_costs_under_one_percent_of_overhead():
    # 255 vectors of 256 int8 codes: what one frame of the default 64 KiB holds.
    n = (proto.BOARD_PAYLOAD - proto.PAYLOAD_MARGIN) // 256
    inputs = np.random.default_rng(0).integers(-127, 128, (n, 256), dtype=np.int8)
    layout = proto.REQUESTS[proto.Opcode.MVM]
    payload = proto.encode_payload(layout, (9, 0, 0, n, 0, 0, 0, 0, 256), [inputs])
    assert len(payload) <= proto.BOARD_PAYLOAD
    wire = proto.encode_frame(proto.Frame(proto.Opcode.MVM, 1, payload))
    assert inputs.nbytes / len(wire) >= 0.99


@PROPERTY
@given(frames)
def test_a_view_decode_holds_the_same_payload_as_a_copy_and_is_read_only(frame):
    body = proto.encode_frame(frame)[:-1]
    view = proto.decode_frame(body, view=True)
    assert isinstance(view.payload, memoryview) and view.payload.readonly
    assert bytes(view.payload) == proto.decode_frame(body).payload == frame.payload


@PROPERTY
@given(frames, st.lists(st.integers(0, 600), max_size=4))
def test_a_frame_encoded_from_parts_is_the_frame_of_their_concatenation(frame, cuts):
    payload = frame.payload
    bounds = [0, *sorted(c for c in cuts if c <= len(payload)), len(payload)]
    parts = [memoryview(payload)[a:b] for a, b in itertools.pairwise(bounds)]
    wire = proto.encode_message(frame.opcode, frame.seq, parts, frame.status, frame.reply)
    assert wire == proto.encode_frame(frame)


def test_payload_parts_view_little_endian_contiguous_arrays_and_convert_the_rest():
    layout = proto.REPLIES[proto.Opcode.READ_CONDUCTANCE]
    g = np.arange(2 * 3 * 8, dtype="<f4").reshape(2, 3, 8)
    for a in (g, g.astype(">f4"), g[:, :, ::2], g[:, :0]):
        parts = proto.payload_parts(layout, (), [a])
        wire = proto.encode_message(proto.Opcode.READ_CONDUCTANCE, 3, parts, reply=True)
        frame = proto.decode_frame(wire[:-1], view=True)
        out = proto.decode_payload(layout, frame.payload).arrays["g"]
        np.testing.assert_array_equal(out, a)
        assert out.dtype == np.dtype("<f4") and out.shape == a.shape
    # A little-endian C-contiguous array is sent from its own memory, not copied first.
    assert np.shares_memory(np.frombuffer(proto.payload_parts(layout, (), [g])[-1], "<f4"), g)


LIMITS = {
    "amplitude_unit": "uA",
    "set_max": 300.0,
    "reset_max": 600.0,
    "form_max": 500.0,
    "width_min": 1e-8,
    "width_max": 1e-5,
}


def first_violation(limits, kind, amplitude, width):
    """Element by element: the index and field of the first pulse outside the limits."""
    for i, k in enumerate(kind):
        if not 0 <= amplitude[i] <= limits[proto.PULSE_KIND_LIMIT[k]]:
            return f"amplitude[{i}] "
    for i in range(len(width)):
        if not limits["width_min"] <= width[i] <= limits["width_max"]:
            return f"width[{i}] "
    return None


amplitudes = st.one_of(
    st.sampled_from([0.0, -0.0, 300.0, 300.0001, 500.0, 600.0, 600.5, -1e-9]),
    st.floats(-10, 700),
    st.sampled_from([np.nan, np.inf, -np.inf]),
)
widths = st.one_of(
    st.sampled_from([1e-8, 1e-5, 9.99e-9, 1.0001e-5]),
    st.floats(0, 2e-5),
    st.sampled_from([np.nan, np.inf]),
)


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, 2), amplitudes, widths), max_size=12))
@example([(1, 500.0, 1e-6), (0, 500.0, 1e-6)])  # inside RESET's limit, outside SET's
@example([(2, 500.0, 1e-6), (1, 600.0, 1e-5), (0, 300.0, 1e-8)])  # every limit, exactly
@example([(0, 1.0, 1e-6), (1, np.nan, 1e-6)])
@example([(0, 1.0, 1e-6), (1, 2.0, np.nan)])
@example([(0, -0.0, 1e-6), (0, -1e-9, 1e-6)])
def test_pulse_limit_check_finds_exactly_the_first_pulse_outside_its_kinds_limits(pulses):
    kind = np.array([p[0] for p in pulses], np.uint8)
    amplitude = np.array([p[1] for p in pulses], np.float64)
    width = np.array([p[2] for p in pulses], np.float64)
    message = proto.pulse_limit_violation(LIMITS, kind, amplitude, width)
    expected = first_violation(LIMITS, kind, amplitude, width)
    if expected is None:
        assert message is None
    else:
        assert message is not None and message.startswith(expected)

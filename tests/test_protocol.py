"""Wire protocol: every message round-trips; garbage never gets past the decoder."""
from __future__ import annotations

import dataclasses

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.protocol import ProtocolError, decode, decode_frames, encode
from engine.protocol.engine_state import WARMING_UP_LINE, is_warming_up, ready_address, ready_line
from engine.protocol.messages import (
    ALL_MESSAGES,
    MAX_HEADER_BYTES,
    MAX_PORTRAIT_BYTES,
    Audio,
    Frames,
    OpenSession,
    SessionSettings,
    settings_from_dict,
    settings_to_dict,
)
from engine.protocol.stages import Stage, StageGroup, dit_step, is_known_stage, stage_group


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.TYPE)
def test_every_message_round_trips_with_its_defaults(cls):
    msg = cls(session="abc", seq=7)
    back = decode([bytes(p) for p in encode(msg)])
    assert type(back) is cls
    assert dataclasses.asdict(back) == dataclasses.asdict(msg)


def test_frames_carry_payloads_as_separate_parts():
    msg = Frames(session="s", chunk=3, first_frame=84, count=2, width=4, height=2,
                 timings={Stage.WARP: 1.5, dit_step(0): 2.0}, rgb=bytes(range(48)), audio=b"\0" * 5120)
    parts = encode(msg)
    assert len(parts) == 3 and parts[1] == msg.rgb and parts[2] == msg.audio
    back = decode(parts)
    assert back.rgb == msg.rgb and back.timings == {"warp": 1.5, "dit_step_0": 2.0} and back.first_frame == 84
    assert stage_group(next(iter(back.timings))) is StageGroup.RENDER  # the name survives the wire typed


def test_decode_frames_gives_the_frames_and_their_audio():
    rgb = np.arange(2 * 3 * 4 * 3, dtype=np.uint8)
    pcm = np.linspace(-1, 1, 2 * 640, dtype=np.float32)
    msg = decode(encode(Frames(count=2, width=4, height=3, rgb=rgb.tobytes(), audio=pcm.tobytes())))
    frames, audio = decode_frames(msg)
    assert frames.shape == (2, 3, 4, 3) and frames.dtype == np.uint8
    assert frames[1, 2, 3].tolist() == rgb.reshape(2, 3, 4, 3)[1, 2, 3].tolist()
    assert audio.dtype == np.float32 and np.array_equal(audio, pcm)


def test_decode_frames_refuses_buffers_that_do_not_match_the_header():
    with pytest.raises(ProtocolError, match="36 bytes of RGB for 2 frames of 4x3"):
        decode_frames(Frames(count=2, width=4, height=3, rgb=bytes(36)))
    with pytest.raises(ProtocolError, match="no whole number of float32"):
        decode_frames(Frames(count=1, width=1, height=1, rgb=bytes(3), audio=bytes(6)))


def test_stage_groups_cover_every_per_chunk_stage():
    grouped = {stage for stage in Stage if stage_group(stage) is not None}
    assert grouped == set(Stage) - {Stage.CHUNK_TOTAL, Stage.TEXT_ENCODER, Stage.CLIP, Stage.VAE_COND,
                                    Stage.MEASURING_SPEED}
    assert stage_group(dit_step(11)) is StageGroup.DENOISE and stage_group("dit_step_x") is None
    assert stage_group("queue_wait") is None and not is_known_stage("render")


def test_ready_and_warming_up_lines():
    assert ready_address(ready_line("ipc:///run/e.sock")) == "ipc:///run/e.sock"
    assert ready_address("ready") is None and ready_address("already running") is None
    assert is_warming_up(WARMING_UP_LINE) and not is_warming_up("warm-up: 3.0 s")


def test_wrong_field_type_is_rejected_with_one_line():
    header = msgpack.packb({"type": "audio", "sample_rate": "fast"})
    with pytest.raises(ProtocolError, match="audio.sample_rate: expected int, got str"):
        decode([header, b""])


def test_unknown_type_unknown_field_and_part_count():
    with pytest.raises(ProtocolError, match="unknown message type"):
        decode([msgpack.packb({"type": "launch_missiles"})])
    with pytest.raises(ProtocolError, match="unexpected field"):
        decode([msgpack.packb({"type": "heartbeat", "evil": 1})])
    with pytest.raises(ProtocolError, match="needs 2 parts"):
        decode([msgpack.packb({"type": "audio"})])


def test_oversized_header_and_blob_are_refused_before_decoding():
    with pytest.raises(ProtocolError, match="exceeds"):
        decode([b"\x80" * (MAX_HEADER_BYTES + 1)])
    header = encode(OpenSession())[0]
    with pytest.raises(ProtocolError, match="portrait of .* exceeds"):
        decode([header, b"\0" * (MAX_PORTRAIT_BYTES + 1)])


def test_bool_is_not_accepted_as_int():
    with pytest.raises(ProtocolError):
        decode([msgpack.packb({"type": "heartbeat", "nonce": True})])


def test_settings_validation():
    s = SessionSettings(width=512, height=512, seed=3, mode="file", color_correction=1)
    assert settings_from_dict(settings_to_dict(s)) == SessionSettings(
        width=512, height=512, seed=3, mode="file", color_correction=1.0)
    with pytest.raises(ValueError, match="unknown session setting"):
        settings_from_dict({"colour": 1})
    with pytest.raises(ValueError, match="wrong type"):
        settings_from_dict({"width": "512"})
    with pytest.raises(ValueError, match="mode"):
        settings_from_dict({"mode": "batch"})
    for key in ("width", "height", "steps", "chunk_frames", "motion_frames"):
        with pytest.raises(ValueError, match=f"'{key}' must be 1 or more"):
            settings_from_dict({key: 0})
    assert settings_from_dict({"seed": 0}).seed == 0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=4))
def test_fuzz_random_bytes_only_raise_protocol_error(parts):
    try:
        decode(parts)
    except ProtocolError:
        pass


_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=20)
                       | st.binary(max_size=20),
                       lambda inner: (st.lists(inner, max_size=4)
                                      | st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=10)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([c.TYPE for c in ALL_MESSAGES]), st.dictionaries(st.text(max_size=12), _values, max_size=6),
       st.integers(0, 3))
def test_fuzz_structured_headers_only_raise_protocol_error(kind, fields, blobs):
    header = msgpack.packb({"type": kind, **fields}, use_bin_type=True)
    try:
        msg = decode([header] + [b"x"] * blobs)
    except ProtocolError:
        return
    assert msg.TYPE == kind  # whatever decodes is a well-typed message of that type


def test_audio_defaults_describe_16k_mono():
    a = Audio()
    assert (a.sample_rate, a.channels) == (16_000, 1)

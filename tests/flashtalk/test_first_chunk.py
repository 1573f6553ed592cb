"""A live session's short first chunk (issue 14, lever 4), on the tiny checkpoint on the CPU.

The first chunk of a live session makes --first-chunk-frames new frames (default 4: 9 frames, 3
latent frames) so its frames come sooner; every later chunk is full length, the motion frames hand
over as between any two chunks, and the timeline stays exact. File sessions never shorten.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avkit.timeline import Timeline  # noqa: E402
from engine.backends.base import BackendOptions  # noqa: E402
from engine.flashtalk.pipeline.settings import StreamSettings  # noqa: E402
from engine.flashtalk.weights.checkpoint_layout import MODEL_FOLDER  # noqa: E402
from engine.protocol.engine_options import DEFAULT_FIRST_CHUNK_FRAMES  # noqa: E402
from engine.protocol.messages import QUALITY_FIXED, SessionSettings  # noqa: E402
from engine.session.audio_ring import AudioRing  # noqa: E402
from engine.session.chunk_audio import context_window  # noqa: E402
from engine.session.live_session import LiveSession, SessionLimits  # noqa: E402
from tests.conftest import ROOT, wait_for  # noqa: E402
from tests.flashtalk.cli_in_process import flashtalk_in_process  # noqa: E402

LIVE = SessionSettings(width=64, height=64, seed=4, mode="live")
SPF = Timeline().samples_per_frame



def _ring(speech: np.ndarray) -> AudioRing:
    ring = AudioRing(capacity=speech.size, sample_rate=Timeline().sample_rate)
    ring.append(speech)
    return ring


def _chunk(stream, ring: AudioRing, first: int) -> np.ndarray:
    n = stream.next_chunk_frames
    return stream.generate(context_window(ring, first, n, stream.context_samples, Timeline())).frames


def test_settings_make_a_short_first_chunk_of_whole_latent_frames():
    s = StreamSettings(first_chunk_frames=4).validate()
    assert s.for_chunk(0).frame_num == 9 and s.for_chunk(0).latent_frames == 3
    assert [s.new_frames_of_chunk(i) for i in range(3)] == [4, 28, 28]
    assert s.for_chunk(1) is s and StreamSettings().for_chunk(0).frame_num == 33
    for bad in (3, 28, 30):  # not 4k+1 frames with the 5 motion frames; not shorter than the others
        with pytest.raises(ValueError, match="first chunk"):
            StreamSettings(first_chunk_frames=bad).validate()


def test_the_short_first_chunk_is_the_models_own_short_chunk_and_hands_its_motion_on(backend, portrait, speech):
    """Its frames are bit-identical to a file session of 4-frame chunks (9 frames encoded from the
    portrait + 8 zero frames: the full chunk's leading latent frames are exactly those), and the
    second chunk goes on from its last 5 frames at full length."""
    ring = _ring(speech)
    live = backend.open_stream(portrait, LIVE)
    assert live.chunk_frames == 28 and live.next_chunk_frames == DEFAULT_FIRST_CHUNK_FRAMES == 4
    first = _chunk(live, ring, 0)
    assert first.shape == (4, 64, 64, 3)
    motion = live.runtime.pipeline.motion_latents  # the latents the next chunk starts from
    assert motion(live.state).shape[2] == 2 and live.next_chunk_frames == 28

    short = backend.open_stream(portrait, replace(LIVE, mode="file", chunk_frames=4))
    assert short.state.cond.shape[2] == 3 and live.state.cond.shape[2] == 9
    np.testing.assert_array_equal(_chunk(short, ring, 0), first)
    assert torch.equal(motion(short.state), motion(live.state))

    second = _chunk(live, ring, 4)
    assert second.shape == (28, 64, 64, 3) and live.state.chunks == 2
    full = backend.open_stream(portrait, replace(LIVE, mode="file"))  # the reference's way: 28 from the start
    assert full.next_chunk_frames == 28 and _chunk(full, ring, 0).shape == (28, 64, 64, 3)
    for stream in (live, short, full):
        stream.close()


def test_a_live_session_shows_every_sample_once_from_a_short_first_chunk(backend, portrait, speech):
    """The session cuts its timeline by the stream: frames [0, 4) show samples [0, 4*640), then
    28-frame chunks follow on; the short chunk is not taken as a measure of a regular one."""
    settings = replace(LIVE, quality=QUALITY_FIXED, target_latency_s=120.0)  # nothing is skipped
    session = LiveSession("first", backend, portrait, settings, limits=SessionLimits(idle_gap_s=600.0))
    audio = speech[:SPF * 40]
    session.push_audio(audio[:SPF * 6], 16000, 1, capture_t=0.0)  # the first chunk's audio, not the second's
    first = wait_for(session.pop_chunk, timeout=120)
    assert (first.first_frame, len(first.frames)) == (0, 4)
    assert session.governor.measured_rtf == 0.0  # observed nothing yet: the short chunk tells nothing
    session.push_audio(audio[SPF * 6:], 16000, 1, capture_t=0.0)
    session.end_audio()
    got = [first]
    while not session.finished.is_set() or session.outbox_frames():
        chunk = session.pop_chunk()
        if chunk is None:
            session.finished.wait(0.05)
        else:
            got.append(chunk)
    session.close()
    assert session.error is None, session.error
    assert [(c.first_frame, len(c.frames)) for c in got] == [(0, 4), (4, 28), (32, 8)]
    np.testing.assert_array_equal(np.concatenate([c.audio for c in got]), audio)
    assert session.governor.measured_rtf > 0  # the full chunk was observed


def test_first_frames_are_measured_on_the_warm_engine(tiny_root, backend, portrait, speech):
    from engine.backends.flashtalk import FlashTalkBackend
    from engine.cli.bench import measure_first_frames
    short = measure_first_frames(backend, portrait, speech, LIVE, Timeline())
    assert short["first_chunk_frames"] == 4 and short["first_frames_s"] > short["first_frames_prepare_s"] > 0
    assert {"dit_step_0", "vae_decode"} <= short["first_frames_stages_ms"].keys()
    full_length = FlashTalkBackend(BackendOptions(model_dir=tiny_root / MODEL_FOLDER, device="cpu",
                                                  first_chunk_frames=0))
    assert measure_first_frames(full_length, portrait, speech, LIVE, Timeline())["first_chunk_frames"] == 28


def test_bench_reports_start_and_first_frames_and_refuses_a_bad_first_chunk(tiny_root, tmp_path, capfd):
    model = str(tiny_root / MODEL_FOLDER)
    base = ["bench", "--backend", "flashtalk", "--model", model, "--device", "cpu", "--size", "64x64", "--chunks", "1"]
    # the refusal through the CLI's own `main` in-process (a traceback would fail the test), the run
    # through a real `python -m engine`
    bad = flashtalk_in_process(capfd, *base, "--first-chunk-frames", "6")
    assert bad.returncode == 2 and "--first-chunk-frames must be 0 (full length) or a multiple of 4" in bad.stderr
    assert "Traceback" not in bad.stderr
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "engine", *base, "--warm-up", "--json", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["first_chunk_frames"] == 4 and result["chunk_frames"] == 28
    assert result["warm_up_s"] > 0 and result["start_s"] == pytest.approx(result["load_s"] + result["warm_up_s"])
    assert result["compiled"] is False and result["first_frames_s"] > 0
    assert "live first frames" in run.stdout

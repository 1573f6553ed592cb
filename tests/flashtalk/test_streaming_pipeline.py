"""The streaming FlashTalk pipeline on a tiny official-layout checkpoint, on the CPU."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avkit.mp4_writer import probe_mp4  # noqa: E402
from engine.backends.base import BackendOptions, BackendUnavailable, SettingsError  # noqa: E402
from engine.flashtalk.pipeline.color_correction import lab_to_rgb, match_colors, rgb_to_lab  # noqa: E402
from engine.flashtalk.pipeline.timesteps import sampling_timesteps  # noqa: E402
from engine.flashtalk.weights.checkpoint_layout import MODEL_FOLDER  # noqa: E402
from engine.protocol.messages import SessionSettings  # noqa: E402
from tests.conftest import ASSETS, ROOT  # noqa: E402

SIZE = dict(width=64, height=64, mode="file")  # full chunks from the first (test_first_chunk.py: live)



def _windows(stream, speech, chunks):
    n, ctx = stream.chunk_frames, stream.context_samples
    for i in range(chunks):
        end = (i + 1) * n * 640
        window = speech[max(0, end - ctx):end]
        yield np.pad(window, (ctx - window.size, 0))


def test_official_timesteps():
    assert sampling_timesteps(4, 5.0) == pytest.approx([1000, 937.5, 833.3333, 625, 0], abs=1e-3)


def test_color_correction_roundtrip_and_matching():
    rgb = torch.rand(2, 5, 7, 3, dtype=torch.float64)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4)
    ref = torch.rand(1, 3, 1, 16, 16) * 2 - 1
    video = (ref.repeat(1, 1, 3, 1, 1) * 0.5 + 0.3).clamp(-1, 1)  # a colour-shifted copy
    fixed = match_colors(video, ref, 1.0)
    assert (fixed - ref).abs().mean() < (video - ref).abs().mean() / 3
    assert torch.equal(match_colors(video, ref, 0.0), video)


def test_chunks_stream_from_motion_latents_and_repeat_with_the_seed(backend, portrait, speech):
    outs = []
    for _ in range(2):
        stream = backend.open_stream(portrait, SessionSettings(seed=7, **SIZE))
        assert stream.state.motion.shape[2] == 1  # chunk 0: the portrait's latent only
        chunks = []
        for i, window in enumerate(_windows(stream, speech, 3)):
            res = stream.generate(window)
            assert res.frames.shape == (28, 64, 64, 3) and res.frames.dtype == np.uint8
            assert {"audio_features", "dit_step_3", "vae_decode"} <= res.timings.keys()
            # A chunk's last 5 frames are encoded when the next chunk starts, before its first
            # step: the frames of a chunk never wait for that encode.
            stages = list(res.timings)
            assert ("vae_encode" in stages) == (i > 0), stages
            assert i == 0 or stages.index("vae_encode") < stages.index("dit_step_0")
            assert stream.state.motion is None and stream.state.motion_pixels.shape[2] == 5
            chunks.append(res.frames)
        assert stream.runtime.pipeline.motion_latents(stream.state).shape[2] == 2  # 5 frames -> 2 latents
        outs.append(np.stack(chunks))
    np.testing.assert_array_equal(outs[0], outs[1])
    other = backend.open_stream(portrait, SessionSettings(seed=8, **SIZE))
    assert not np.array_equal(other.generate(next(_windows(other, speech, 1))).frames, outs[0][0])


def test_every_stage_it_times_is_on_the_studio_graph(backend, portrait, speech):
    from tests.test_stage_names import check_every_stage_is_graphed
    stream = backend.open_stream(portrait, SessionSettings(**SIZE))
    timings = stream.generate(next(_windows(stream, speech, 1))).timings
    assert "host_copy" in timings  # grouped nowhere before the stage names had one home
    check_every_stage_is_graphed(timings)


def test_motion_latents_carry_over_between_chunks(backend, portrait, speech):
    stream = backend.open_stream(portrait, SessionSettings(seed=1, **SIZE))
    windows = list(_windows(stream, speech, 2))
    stream.generate(windows[0])
    gen_state = stream.state.generator.get_state()
    carried = stream.runtime.pipeline.motion_latents(stream.state).clone()
    second = stream.generate(windows[1]).frames
    stream.state.generator.set_state(gen_state)  # same noise, different motion latents
    stream.state.motion = torch.zeros_like(carried)
    assert not np.array_equal(stream.generate(windows[1]).frames, second)


@pytest.mark.slow  # a soak: 8 chunks; one session's memory over minutes is tests/test_reliability.py's
def test_many_chunks_keep_memory_flat(backend, portrait):
    import psutil
    stream = backend.open_stream(portrait, SessionSettings(**SIZE))
    silence = np.zeros(stream.context_samples, np.float32)
    rss = []
    for _ in range(8):
        stream.generate(silence)
        rss.append(psutil.Process().memory_info().rss)
    assert rss[-1] - rss[2] < 64 * 2**20


def test_bad_settings_are_one_line_errors(backend, portrait):
    with pytest.raises(SettingsError, match="multiple of 16"):
        backend.open_stream(portrait, SessionSettings(width=70, height=64, mode="file"))
    with pytest.raises(SettingsError, match="4k\\+1"):
        backend.open_stream(portrait, SessionSettings(chunk_frames=27, **SIZE))


def test_stream_settings_come_with_each_session_only(backend):
    """The pipeline once kept engine-wide `defaults` that nothing read; each session brings its own."""
    from engine.flashtalk.pipeline.streaming import StreamingPipeline
    assert "defaults" not in inspect.signature(StreamingPipeline).parameters
    assert not hasattr(backend.runtime.pipeline, "defaults")


def test_missing_model_dir_is_a_clear_error(tmp_path):
    from engine.backends.flashtalk import FlashTalkBackend
    with pytest.raises(BackendUnavailable, match="--model"):
        FlashTalkBackend(BackendOptions())
    with pytest.raises(BackendUnavailable):
        FlashTalkBackend(BackendOptions(model_dir=tmp_path / "nothing", device="cpu"))


def test_render_through_the_flashtalk_backend(tiny_root, tmp_path):
    speech = tmp_path / "short.wav"
    subprocess.run(["sox", str(ASSETS / "speech.wav"), str(speech), "trim", "0", "2.5"], check=True)
    out, metrics = tmp_path / "ft.mp4", tmp_path / "ft.json"
    result = subprocess.run([sys.executable, "-m", "engine", "render", "--quiet", "--backend", "flashtalk",
                             "--model", str(tiny_root / MODEL_FOLDER), "--device", "cpu",
                             "--size", "64x64", "--audio", str(speech), "--out", str(out),
                             "--metrics-json", str(metrics)], capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    plan = next(line for line in result.stderr.splitlines() if line.startswith("memory plan:"))
    assert "GPU" not in plan and "in the CPU's memory" in plan, plan  # a CPU engine says where it is
    info = probe_mp4(out)
    assert info.video_frames == 63 and (info.width, info.height) == (64, 64)
    assert abs(info.audio_samples / 16000 - 2.5) < 0.1
    stages = json.loads(metrics.read_text())["stages"]
    assert {"dit_step_0", "vae_decode", "color_correction"} <= stages.keys()


def test_a_profile_switch_keeps_the_output_size_and_carries_the_motion(backend, portrait, speech):
    settings = SessionSettings(seed=5, width=64, height=64, chunk_frames=8, mode="file")
    names = [p.name for p in backend.plan(settings).profiles]
    assert names == ["64x64/4", "64x64/3", "64x64/2", "48x48/2", "32x32/2", "32x32/1"]
    stream = backend.open_stream(portrait, settings)
    windows = list(_windows(stream, speech, 3))
    assert stream.generate(windows[0]).frames.shape == (8, 64, 64, 3)
    state = stream.state
    top = state.conditions[(64, 64)]
    stream.use_profile("32x32/2")
    assert stream.profile.name == "32x32/2" and len(state.t_steps) == 2
    assert state.motion.shape == (1, 16, 2, 4, 4)  # the last chunk's motion frames, at the new size
    assert not torch.equal(state.motion[:, :, :1], state.conditions[(32, 32)].first_motion)
    low = stream.generate(windows[1])
    assert low.frames.shape == (8, 64, 64, 3)  # made at 32x32, shown at the session's size
    assert {k for k in low.timings if k.startswith("dit_step")} == {"dit_step_0", "dit_step_1"}
    stream.use_profile("64x64/4")  # back up: the top's conditions were kept, not encoded again
    assert state.clip is top.clip and state.cond is top.cond and len(state.t_steps) == 4
    assert stream.generate(windows[2]).frames.shape == (8, 64, 64, 3)
    with pytest.raises(SettingsError, match="unknown quality profile"):
        stream.use_profile("65x64/4")


def test_one_measured_chunk_predicts_every_step_count_at_its_size(backend, portrait):
    settings = SessionSettings(width=64, height=64, chunk_frames=8)
    known = backend.measure_profile(portrait, settings, "64x64/4")
    assert known["64x64/4"] > known["64x64/3"] > known["64x64/2"] > 0
    assert backend.known_chunk_seconds(settings) == known


def test_the_ladder_keeps_the_aspect_on_the_grid_and_a_compiled_one_keeps_its_size():
    from engine.flashtalk.pipeline.profiles import ladder
    rungs = ladder(448, 768, 4)
    assert [r.name for r in rungs] == ["448x768/4", "448x768/3", "448x768/2", "400x672/2", "336x576/2",
                                       "288x480/2", "224x384/2", "224x384/1"]
    for r in rungs:
        assert r.width % 16 == 0 and r.height % 16 == 0
        assert abs(r.width / r.height / (448 / 768) - 1) < 0.03
    assert [r.name for r in ladder(448, 768, 4, one_size=True)] == ["448x768/4", "448x768/3", "448x768/2",
                                                                    "448x768/1"]

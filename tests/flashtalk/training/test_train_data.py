"""The clip cache: what a shard holds, resuming, and one-line errors for unusable data."""
from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avkit.audio_decode import load_audio  # noqa: E402
from avkit.mp4_writer import Mp4Writer, read_mp4_frames  # noqa: E402
from engine.flashtalk.pipeline.audio_window import chunk_frame_indices  # noqa: E402
from engine.flashtalk.training.clip_source import DatasetError, decode_clip, list_clip_sources  # noqa: E402
from engine.flashtalk.training.latent_cache import SHARD_DIR, build_cache  # noqa: E402
from engine.flashtalk.training.toy_run import TOY_SETTINGS  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.flashtalk.cli_in_process import flashtalk_in_process  # noqa: E402


def test_a_shard_holds_per_chunk_latents_and_the_clip_conditions(cache, clip_folder, encoders):
    s = cache.settings
    assert len(cache) == 3 and cache.segments == [6, 6, 6]  # 55 frames -> chunks at 0, 8, ..., 40
    assert cache.widths == {"text_dim": 64, "clip_dim": 160, "audio_layers": 2, "audio_dim": 32}
    window = cache.window(1, 2, 3)
    assert window.latents.shape == (3, 16, 4, 8, 8) and window.audio.shape == (3, 13, 5, 2, 32)
    assert window.ref_cond.shape == (16, 4, 8, 8) and window.clip_tokens.shape == (257, 160)
    # each chunk is VAE-encoded on its own, from frame 8 * index
    clip = list_clip_sources(clip_folder)[1]
    decoded = decode_clip(clip, s.frame_num)
    video = torch.from_numpy(decoded.frames[3 * 8:3 * 8 + 13]).permute(3, 0, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(window.latents[1], encoders.encode_video(video[None])[0])
    # the chunk's audio windows are clamped at the chunk's end, as in the streaming window
    features = encoders.encode_audio(decoded.audio, len(decoded.frames), s.sample_rate)
    torch.testing.assert_close(window.audio[0], features[chunk_frame_indices(2 * 8 + 13, 13)])
    rms = np.sqrt((decoded.audio[16 * 640:29 * 640].reshape(13, 640).astype(np.float64) ** 2).mean(1))
    np.testing.assert_allclose(window.audio_rms[0].numpy(), rms, rtol=1e-5)
    assert clip.reference == clip.video.with_suffix(".png")  # the puppet's framed portrait


def test_rebuilding_resumes_and_keeps_finished_shards(tmp_path, clip_folder, encoders):
    clips = list_clip_sources(clip_folder)[:2]
    shards = build_cache(clips, encoders, TOY_SETTINGS, tmp_path, progress=False)
    stamps = [p.stat().st_mtime_ns for p in shards]
    shards[1].unlink()
    (tmp_path / SHARD_DIR / f".{shards[1].name}.partial").write_bytes(b"half a shard")  # a killed run
    again = build_cache(clips, encoders, TOY_SETTINGS, tmp_path, progress=False)
    assert again == shards and shards[0].stat().st_mtime_ns == stamps[0]
    assert shards[1].is_file() and not list((tmp_path / SHARD_DIR).glob(".*"))
    with pytest.raises(DatasetError, match="other settings .*frame_num 13 vs 17"):
        build_cache(clips, encoders, TOY_SETTINGS.with_overrides(frame_num=17), tmp_path, progress=False)


def _video_only_mp4(path, frames=30):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.time_base = Fraction(1, 25)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 8, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _data_args(tmp_path, tiny_model, source) -> list[str]:
    return ["train", "data", "--clips", str(source), "--model", str(tiny_model[0]), "--out", str(tmp_path / "cache"),
            "--device", "cpu", "--quiet"]


def _train_data(tmp_path, tiny_model, source):
    return subprocess.run([sys.executable, "-m", "engine", *_data_args(tmp_path, tiny_model, source)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def _one_line(result, expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_bad_datasets_are_one_line_errors(tmp_path, tiny_model, clip_folder, capfd):
    """The first through a real `python -m engine`, the others through the same `main` in-process."""
    in_process = lambda source: flashtalk_in_process(capfd, *_data_args(tmp_path, tiny_model, source))  # noqa: E731
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no clips here")
    _one_line(_train_data(tmp_path, tiny_model, empty), "no usable clips")
    silent = tmp_path / "silent"
    silent.mkdir()
    _video_only_mp4(silent / "mute.mp4")
    _one_line(in_process(silent), "mute.mp4: no audio track")
    assert not (tmp_path / "cache" / SHARD_DIR).exists() or not any((tmp_path / "cache" / SHARD_DIR).iterdir())
    short = tmp_path / "short"
    short.mkdir()
    _first_frames(clip_folder / "clip_000.mp4", short / "c.mp4")
    _one_line(in_process(short), "a training chunk needs 13")
    _one_line(in_process(tmp_path / "missing"), "not found")


def _first_frames(source, target, frames=8):
    """The first `frames` frames of a clip with their audio, re-encoded."""
    video = read_mp4_frames(source)[:frames]
    writer = Mp4Writer(target, 64, 64)
    writer.write_frames(video)
    writer.write_audio(load_audio(source)[:frames * 640])
    writer.close()

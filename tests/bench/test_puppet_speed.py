"""Frames per second of the puppet's generate() at 512x512 on one CPU thread.

Timing runs only with `pytest tests/bench --benchmark-enable` (the default run disables
benchmarks and just executes the body once); frames/s lands in the benchmark's extra_info.
Nothing here asserts a time: that depends on the machine.
"""
from __future__ import annotations

import cv2
import pytest

from avkit.audio_decode import load_audio
from avkit.portrait_image import load_portrait
from engine.backends import create_backend
from engine.protocol.messages import SessionSettings
from tests.conftest import ASSETS


@pytest.fixture
def one_cpu_thread():
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(threads)


def test_puppet_frames_per_second_512(benchmark, one_cpu_thread):
    portrait = load_portrait(ASSETS / "portrait.png")
    speech = load_audio(ASSETS / "speech.wav")
    stream = create_backend("puppet").open_stream(portrait, SessionSettings(width=512, height=512))
    context, n = stream.context_samples, stream.chunk_frames
    windows = [speech[end - context:end] for end in range(context, speech.size, n * 640)]
    position = iter(range(10 ** 9))

    def next_chunk():  # walks through the speech so mouth, blinks and head all move
        return stream.generate(windows[next(position) % len(windows)])

    result = benchmark(next_chunk)
    assert result.frames.shape == (n, 512, 512, 3)
    if benchmark.stats is not None:
        benchmark.extra_info["frames_per_second"] = n / benchmark.stats.stats.mean
        print(f"\npuppet 512x512, 1 thread: {n / benchmark.stats.stats.mean:.0f} frames/s")

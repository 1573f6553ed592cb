"""`flashtalk bench` feeds a backend the very audio windows a session does (engine/session/chunk_audio.py).

A real LiveSession (file mode) and bench's `measure` both drive a real puppet backend over the
sample speech; every generate() call's audio is recorded and the two sequences must be equal.
"""
from __future__ import annotations

import numpy as np

from avkit.portrait_image import load_portrait
from avkit.timeline import Timeline
from engine.backends.puppet import PuppetBackend
from engine.cli.bench import measure
from engine.protocol.messages import SessionSettings
from engine.session import LiveSession
from tests.conftest import ASSETS, wait_for

SETTINGS = SessionSettings(width=128, height=128, chunk_frames=12, mode="file")
CHUNKS = 6  # bench times 6 chunks after the first: 7 windows, all inside the 9.9 s of speech


class RecordingPuppet(PuppetBackend):
    """The puppet, keeping a copy of the audio each generate() call is given."""

    def __init__(self):
        super().__init__()
        self.windows: list[np.ndarray] = []

    def open_stream(self, portrait, settings, on_stage=None, profile=None):
        stream = super().open_stream(portrait, settings, on_stage, profile)
        generate = stream.generate

        def recorded(audio, idle=False):
            self.windows.append(np.array(audio, np.float32))
            return generate(audio, idle)
        stream.generate = recorded
        return stream


def test_bench_cuts_the_windows_a_session_cuts(speech):
    portrait = load_portrait(ASSETS / "portrait.png")
    in_session = RecordingPuppet()
    session = LiveSession("s1", in_session, portrait, SETTINGS)
    session.push_audio(speech, Timeline().sample_rate, 1, capture_t=0.0)
    session.end_audio()
    wait_for(lambda: session.pop_chunk() is None and session.finished.is_set(), timeout=120)  # the client reads
    assert session.error is None, session.error

    in_bench = RecordingPuppet()
    result = measure(in_bench, portrait, speech, SETTINGS, CHUNKS, Timeline())
    assert result["chunk_frames"] == SETTINGS.chunk_frames
    assert len(in_bench.windows) == CHUNKS + 1 and len(in_session.windows) > CHUNKS + 1
    for i, (bench_window, session_window) in enumerate(zip(in_bench.windows, in_session.windows)):
        assert np.array_equal(bench_window, session_window), f"chunk {i}"
    assert np.count_nonzero(in_bench.windows[0]) and not np.array_equal(in_bench.windows[0], in_bench.windows[1])

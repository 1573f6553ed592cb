"""Drive a backend stream with the sample speech the way a session does: one window per chunk."""
from __future__ import annotations

import numpy as np

from avkit.audio_decode import load_audio
from avkit.portrait_image import load_portrait
from avkit.timeline import Timeline
from engine.protocol.messages import SessionSettings
from engine.session.audio_ring import AudioRing
from engine.session.chunk_audio import context_window
from tests.conftest import ASSETS


def stream_speech_frames(backend, settings: SessionSettings, chunks: int) -> np.ndarray:
    """-> uint8 [frames, H, W, 3], `chunks` chunks of the default portrait saying assets/speech.wav,
    each cut from the timeline where the last one ended (a live session's first chunk may be short)."""
    timeline = Timeline()
    speech = load_audio(ASSETS / "speech.wav")
    ring = AudioRing(capacity=speech.size, sample_rate=timeline.sample_rate)
    ring.append(speech)
    stream = backend.open_stream(load_portrait(ASSETS / "portrait.png"), settings)
    out, first = [], 0
    for _ in range(chunks):
        n = stream.next_chunk_frames
        out.append(stream.generate(context_window(ring, first, n, stream.context_samples, timeline)).frames)
        first += n
    stream.close()
    return np.concatenate(out)

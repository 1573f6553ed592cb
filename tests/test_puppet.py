"""The CPU puppet backend on the shipped assets: landmarks, errors, lip sync measured by dlib on
the output frames, untouched background, determinism, chunking, idle life, audio drive."""
from __future__ import annotations

import numpy as np
import pytest

from avkit.audio_decode import load_audio
from avkit.portrait_image import load_portrait
from engine.backends import create_backend
from engine.backends.base import PortraitError, SettingsError
from engine.backends.puppet import PuppetBackend
from engine.backends.puppet.audio_drive import AudioDrive
from engine.backends.puppet.face_landmarks import (
    detect_face_box,
    detect_landmarks,
    landmarks_in_box,
    mouth_opening,
)
from engine.protocol.messages import SessionSettings
from tests.conftest import ASSETS

SPF = 640  # samples per frame at 16 kHz / 25 fps


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return load_portrait(ASSETS / "portrait.png")


@pytest.fixture(scope="module")
def speech_audio() -> np.ndarray:
    return load_audio(ASSETS / "speech.wav")


@pytest.fixture(scope="module")
def backend() -> PuppetBackend:
    return create_backend("puppet")


def render(stream, audio: np.ndarray, frames: int | None = None) -> np.ndarray:
    """Drive a stream the way the session does: chunk k ends at its last frame's last sample,
    the window is zero-padded before the session start. -> uint8 [frames, H, W, 3]."""
    frames = audio.size // SPF if frames is None else frames
    n, context = stream.chunk_frames, stream.context_samples
    padded = np.concatenate([np.zeros(context, np.float32), audio,
                             np.zeros(n * SPF, np.float32)])
    out = []
    for first in range(0, frames, n):
        end = context + (first + n) * SPF
        chunk = stream.generate(padded[end - context:end]).frames
        assert chunk.shape[0] == n
        out.append(chunk)
    return np.concatenate(out)[:frames]


def eye_openness(marks: np.ndarray) -> float:
    """Mean eye aspect ratio: lid gap over eye width (about 0.3 open, under 0.15 closed)."""
    ratios = [(np.linalg.norm(marks[a + 1] - marks[a + 5]) + np.linalg.norm(marks[a + 2] - marks[a + 4]))
              / (2 * np.linalg.norm(marks[a] - marks[a + 3])) for a in (36, 42)]
    return float(np.mean(ratios))


def same_frames(a: np.ndarray, b: np.ndarray) -> bool:
    """Equality without pytest printing two videos when it fails."""
    return bool(np.array_equal(a, b))


@pytest.fixture(scope="module")
def spoken(backend, portrait, speech_audio):
    stream = backend.open_stream(portrait, SessionSettings())
    return stream, render(stream, speech_audio)


def test_registry_gives_the_puppet():
    assert isinstance(create_backend("puppet"), PuppetBackend)


def test_landmarks_found_on_default_portrait(portrait):
    marks = detect_landmarks(portrait)
    assert marks.shape == (68, 2) and marks.dtype == np.float32
    x0, y0, x1, y1 = detect_face_box(portrait)
    assert (marks >= np.float32([x0, y0]) - 20).all() and (marks <= np.float32([x1, y1]) + 20).all()
    assert marks[36:48, 1].mean() < marks[48:68, 1].mean() < marks[8, 1]  # eyes above mouth above chin
    assert 0.02 < mouth_opening(marks) < 0.3  # she smiles with her teeth showing


@pytest.mark.parametrize("kind", ["blank", "noise", "tiny"])
def test_portrait_without_face_is_a_clear_error(backend, kind):
    rng = np.random.default_rng(1)
    image = {"blank": np.full((300, 300, 3), 128, np.uint8),
             "noise": rng.integers(0, 256, (300, 300, 3), dtype=np.uint8),
             "tiny": np.full((8, 8, 3), 200, np.uint8)}[kind]
    with pytest.raises(PortraitError, match="no face found in the portrait") as info:
        backend.open_stream(image, SessionSettings())
    assert "\n" not in str(info.value)


def test_portrait_that_is_not_rgb_is_refused(backend, portrait):
    with pytest.raises(PortraitError, match="RGB"):
        backend.open_stream(portrait[..., 0], SessionSettings())


@pytest.mark.parametrize("settings", [SessionSettings(width=511, height=512),
                                      SessionSettings(width=32, height=32),
                                      SessionSettings(width=4096),
                                      SessionSettings(chunk_frames=0)])
def test_bad_settings_are_refused(backend, portrait, settings):
    with pytest.raises(SettingsError) as info:
        backend.open_stream(portrait, settings)
    assert "\n" not in str(info.value)


def test_output_shape_and_stream_attributes(backend, portrait, speech_audio):
    stream = backend.open_stream(portrait, SessionSettings(width=256, height=320))
    assert (stream.width, stream.height, stream.chunk_frames) == (256, 320, 2)
    assert stream.context_samples >= 2 * SPF
    result = stream.generate(speech_audio[SPF * 20:SPF * 20 + stream.context_samples])
    assert result.frames.shape == (2, 320, 256, 3) and result.frames.dtype == np.uint8
    assert set(result.timings) >= {"audio_features", "warp"}
    x0, y0, x1, y1 = stream.face_box
    assert 0 <= x0 < x1 <= portrait.shape[1] and 0 <= y0 < y1 <= portrait.shape[0]
    assert detect_landmarks(result.frames[0]) is not None  # the face stays in the narrower frame


def test_small_face_in_a_large_photo_is_framed(backend, portrait):
    """A wide photo with a small face: the output crops in around the face."""
    canvas = np.full((900, 1600, 3), 90, np.uint8)
    canvas[500:756, 1100:1356] = portrait[::2, ::2]
    stream = backend.open_stream(canvas, SessionSettings(width=384, height=384))
    frame = stream.generate(np.zeros(stream.context_samples, np.float32)).frames[0]
    marks = detect_landmarks(frame)
    assert marks is not None
    assert np.ptp(marks[:, 0]) > 0.2 * 384  # zoomed in: the face is a good part of the frame


def test_several_faces_take_the_largest(backend, portrait):
    canvas = np.full((560, 900, 3), 140, np.uint8)
    canvas[20:532, 20:532] = portrait
    canvas[150:406, 600:856] = portrait[::2, ::2]
    x0, y0, x1, y1 = backend.open_stream(canvas, SessionSettings(width=256, height=256)).face_box
    assert 20 <= x0 < x1 <= 532 and 20 <= y0 < y1 <= 532


def test_mouth_follows_speech_and_rests_in_silence(spoken, speech_audio):
    stream, frames = spoken
    box = detect_face_box(frames[0])
    openings = np.array([mouth_opening(landmarks_in_box(frame, box)) for frame in frames])
    n = frames.shape[0]
    envelope = np.sqrt((speech_audio[:n * SPF].reshape(n, SPF) ** 2).mean(axis=1))
    smooth = np.convolve(envelope, np.ones(3) / 3, mode="same")
    r = np.corrcoef(openings, smooth)[0, 1]
    assert r >= 0.5, f"mouth opening vs audio envelope r={r:.2f}"
    rest = mouth_opening(detect_landmarks(stream.background))
    silent, loud = smooth < 0.005, smooth > 0.05
    assert silent.sum() > 20 and loud.sum() > 20
    assert abs(np.median(openings[silent]) - rest) < 0.02
    assert np.median(openings[loud]) > rest + 0.06


def test_pixels_far_from_the_face_never_change(spoken):
    stream, frames = spoken
    marks = detect_landmarks(stream.background)
    lo, hi = marks.min(axis=0), marks.max(axis=0)
    pad = 0.3 * (hi - lo)
    x0, y0 = np.floor(lo - pad).astype(int)
    x1, y1 = np.ceil(hi + pad).astype(int)
    x0, y0 = max(x0, 0), max(y0, 0)
    strips = [np.s_[:, :y0], np.s_[:, y1:], np.s_[:, y0:y1, :x0], np.s_[:, y0:y1, x1:]]  # around the box
    assert sum(stream.background[s[1:]].size for s in strips) > 0.5 * stream.background.size
    for strip in strips:
        assert (frames[strip] == stream.background[strip[1:]]).all()
    assert (frames != stream.background).any(axis=(1, 2, 3)).mean() > 0.9  # the face does move


def test_same_seed_same_frames_other_seed_other_motion(backend, portrait, speech_audio, spoken):
    _, frames = spoken
    again = render(backend.open_stream(portrait, SessionSettings(seed=0)), speech_audio, 100)
    assert same_frames(again, frames[:100])
    other = render(backend.open_stream(portrait, SessionSettings(seed=7)), speech_audio, 100)
    assert not same_frames(other, frames[:100])


@pytest.mark.parametrize("chunk", [1, 5, 7])
def test_chunk_size_does_not_change_the_video(backend, portrait, speech_audio, spoken, chunk):
    """Smoothing state carries across chunks, so any chunking gives the same frames as the
    default: consecutive chunks join exactly as frames inside one chunk do."""
    _, frames = spoken
    stream = backend.open_stream(portrait, SessionSettings(chunk_frames=chunk))
    assert stream.chunk_frames == chunk
    assert same_frames(render(stream, speech_audio, 70), frames[:70])


def test_silence_keeps_the_face_alive_with_blinks(backend, portrait):
    stream = backend.open_stream(portrait, SessionSettings())
    frames = []
    for _ in range(125):  # 10 s of idle chunks
        frames.append(stream.generate(np.zeros(stream.context_samples, np.float32), idle=True).frames)
    frames = np.concatenate(frames)
    marks = detect_landmarks(stream.background)
    box = detect_face_box(frames[0])
    eyes = np.array([eye_openness(landmarks_in_box(frame, box)) for frame in frames])
    closed = eyes < 0.75 * eye_openness(marks)  # dlib never reads a painted-over eye as fully shut
    starts = np.flatnonzero(closed[1:] & ~closed[:-1])
    assert 1 <= len(starts) <= 6, f"blinks in 10 s: {len(starts)}"
    assert closed.mean() < 0.15
    openings = [mouth_opening(landmarks_in_box(frame, box)) for frame in frames[::5]]
    rest = mouth_opening(marks)
    assert max(abs(o - rest) for o in openings) < 0.03  # the mouth stays at rest


def test_voice_gate_ignores_quiet_noise_and_closes_after_speech(speech_audio):
    drive = AudioDrive()
    rng = np.random.default_rng(0)
    noise = (0.001 * rng.standard_normal(50 * SPF)).astype(np.float32)  # about -60 dBFS
    talk = speech_audio[:int(2.2 * 16000)]
    audio = np.concatenate([np.zeros(drive.history_samples, np.float32), noise, talk, noise])
    pose = drive.process(audio, (audio.size - drive.history_samples) // SPF)
    speech_frames = slice(50, 50 + talk.size // SPF)
    assert (pose.jaw[:50] == 0).all()
    assert pose.jaw[speech_frames].max() > 0.6
    assert (pose.jaw[-35:] == 0).all()  # closed within 0.6 s of the last word


def test_spectral_shape_picks_round_or_wide_lips():
    """A low voiced tone reads as a rounded vowel, hiss as spread lips with teeth together."""
    t = np.arange(40 * SPF) / 16000
    hum = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220, 440, 660), 1)) * 0.1
    rng = np.random.default_rng(0)
    high_pass = np.fft.rfftfreq(t.size, 1 / 16000) > 4000
    hiss = np.fft.irfft(np.fft.rfft(rng.standard_normal(t.size)) * high_pass)
    results = {}
    for name, signal in (("hum", hum), ("hiss", 0.3 * hiss / hiss.std() * 0.1)):
        drive = AudioDrive()
        audio = np.concatenate([np.zeros(drive.history_samples), signal]).astype(np.float32)
        pose = drive.process(audio, 40)
        results[name] = (pose.jaw[10:].mean(), pose.wide[10:].mean(), pose.round[10:].mean())
    (hum_jaw, hum_wide, hum_round), (hiss_jaw, hiss_wide, hiss_round) = results["hum"], results["hiss"]
    assert hum_round > 0.5 > hum_wide
    assert hiss_wide > 0.5 > hiss_round and hiss_jaw < hum_jaw

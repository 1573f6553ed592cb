"""H.264 + AAC MP4 files on the shared timeline, written so that no broken file is ever left behind.

The writer encodes into `<name>.partial-<pid>.mp4` beside the target and renames it at `close()`;
`abort()` (or an exception inside a `with` block) deletes the partial file. With
`fragmented=True` the partial file is a fragmented MP4 that stays playable up to its last fragment
even if the process is killed (what live recording needs).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avkit.disk_space import DiskFullError, is_disk_full
from avkit.timeline import FPS, SAMPLE_RATE

AAC_FRAME = 1024  # samples per AAC frame


def _disk_full_is_clear(method):
    """A full disk (ENOSPC, EDQUOT, EFBIG) surfaces as DiskFullError naming the target, not errno 28."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            if is_disk_full(exc) and not isinstance(exc, DiskFullError):
                raise DiskFullError(exc.errno, self.path) from None
            raise
    return wrapper


@dataclass(frozen=True)
class Mp4Info:
    video_frames: int
    width: int
    height: int
    fps: float
    audio_samples: int
    audio_rate: int
    duration: float  # seconds, of the longer stream


class Mp4Writer:
    def __init__(self, path: str | Path, width: int, height: int, fps: int = FPS,
                 sample_rate: int = SAMPLE_RATE, *, crf: int = 18, fragmented: bool = False,
                 audio_bitrate: int = 96_000):
        if width % 2 or height % 2:
            raise ValueError(f"H.264 needs even frame sizes, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height, self.fps, self.sample_rate = width, height, fps, sample_rate
        self.partial = self.path.with_name(f"{self.path.stem}.partial-{os.getpid()}{self.path.suffix or '.mp4'}")
        # Fragmented: a self-contained fragment per keyframe (1 s), flushed to disk as it is made.
        # delay_moov writes the index with the first fragment, once the AAC priming (1024 samples
        # before audio pts 0) is known, so it gets an edit list that trims it. Without it the muxer
        # shifts both tracks 64 ms late and players decode the priming as audio.
        options = ({"movflags": "frag_keyframe+empty_moov+delay_moov+default_base_moof", "flush_packets": "1"}
                   if fragmented else {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = av.open(str(self.partial), mode="w", format="mp4", options=options)
        self._video = self._out.add_stream("libx264", rate=fps)
        self._video.time_base = Fraction(1, fps)
        self._video.width, self._video.height = width, height
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": "veryfast",
                               **({"g": str(fps), "tune": "zerolatency"} if fragmented else {})}
        self._audio = self._out.add_stream("aac", rate=sample_rate)
        self._audio.layout = "mono"
        self._audio.bit_rate = audio_bitrate
        self._frames = 0
        self._samples = 0
        self._pending = np.zeros(0, np.float32)
        self._closed = False

    @property
    def frames_written(self) -> int:
        return self._frames

    @_disk_full_is_clear
    def write_frames(self, frames: np.ndarray) -> None:
        """frames: uint8 RGB [N, H, W, 3] (or one [H, W, 3])."""
        frames = frames[None] if frames.ndim == 3 else frames
        if frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"frame shape {frames.shape[1:]} != ({self.height}, {self.width}, 3)")
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = self._frames
            frame.time_base = Fraction(1, self.fps)
            self._out.mux(self._video.encode(frame))
            self._frames += 1

    @_disk_full_is_clear
    def write_audio(self, pcm: np.ndarray) -> None:
        """pcm: float32 mono samples at `sample_rate`, appended to the audio track."""
        self._pending = np.concatenate([self._pending, np.asarray(pcm, np.float32).reshape(-1)])
        whole = (self._pending.size // AAC_FRAME) * AAC_FRAME
        if whole:
            self._encode_audio(self._pending[:whole])
            self._pending = self._pending[whole:]

    def _encode_audio(self, pcm: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.reshape(1, -1)), format="flt",
                                           layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._samples
        frame.time_base = Fraction(1, self.sample_rate)
        self._out.mux(self._audio.encode(frame))
        self._samples += pcm.size

    @_disk_full_is_clear
    def close(self) -> Path:
        """Flush encoders, finish the file and move it into place."""
        if self._closed:
            return self.path
        if self._pending.size:
            self._encode_audio(self._pending)
            self._pending = np.zeros(0, np.float32)
        self._out.mux(self._video.encode(None))
        self._out.mux(self._audio.encode(None))
        self._out.close()
        self._closed = True
        os.replace(self.partial, self.path)
        return self.path

    def abort(self, keep_partial: bool = False) -> None:
        """Stop writing and delete the partial file; `keep_partial` leaves it (fragmented: playable
        up to its last whole fragment) for the caller to salvage after a write failure."""
        if not self._closed:
            self._closed = True
            try:
                self._out.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away (or salvaged) anyway
                pass
        if not keep_partial:
            self.partial.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def probe_mp4(path: str | Path) -> Mp4Info:
    """Decode both streams fully (exact counts, not container metadata)."""
    with av.open(str(path)) as container:
        vstream = container.streams.video[0] if container.streams.video else None
        astream = container.streams.audio[0] if container.streams.audio else None
        fps = float(vstream.average_rate or vstream.guessed_rate or 0) if vstream else 0.0
        width, height = (vstream.width, vstream.height) if vstream else (0, 0)
        frames = sum(1 for _ in container.decode(vstream)) if vstream else 0
    samples, rate = 0, 0
    if astream is not None:
        with av.open(str(path)) as container:
            for f in container.decode(container.streams.audio[0]):
                samples += f.samples
                rate = f.sample_rate
    duration = max(frames / fps if fps else 0.0, samples / rate if rate else 0.0)
    return Mp4Info(video_frames=frames, width=width, height=height, fps=fps, audio_samples=samples,
                   audio_rate=rate, duration=duration)


def read_mp4_frames(path: str | Path) -> np.ndarray:
    """All video frames as uint8 RGB [N, H, W, 3] (tests and tools)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def read_mp4_audio(path: str | Path) -> np.ndarray:
    """The audio track as float32 mono."""
    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])

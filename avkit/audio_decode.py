"""Decode an audio file (WAV/FLAC/MP3/OGG/...) to mono float32 at the timeline rate.

`AudioFileReader` decodes a block at a time, so a file of hours costs the memory of one decoded
frame plus the block asked for; it seeks to the exact sample. `load_audio` reads a whole (short)
file through it.
"""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from avkit.resample import StreamResampler
from avkit.timeline import SAMPLE_RATE

MAX_AUDIO_SECONDS = 4 * 3600  # longer files are refused before decoding them
FORMATS_HINT = "use a WAV, FLAC, MP3 or OGG file"


class AudioFileError(ValueError):
    """An audio file we cannot use; str() is one line saying what to do."""


class AudioFileReader:
    """Mono float32 blocks at `sample_rate` from one file, in order, from wherever `seek` put it.

    Opening decodes the first frame, so a file that is not audio fails here, not when it plays.
    Not thread-safe: one thread reads (and seeks).
    """

    def __init__(self, path: str | Path, sample_rate: int = SAMPLE_RATE, max_seconds: float = MAX_AUDIO_SECONDS):
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._container = _open(self.path)
        try:
            if not self._container.streams.audio:
                raise AudioFileError(f"{self.path.name} has no audio stream: {FORMATS_HINT}")
            self._stream = self._container.streams.audio[0]
            self.duration_s = _duration_s(self._container, self._stream)  # 0.0: the file does not say
            if self.duration_s > max_seconds:
                raise AudioFileError(f"{self.path.name} is longer than {max_seconds / 3600:.0f} h: "
                                     "split it into shorter files")
            self._max_samples = int(max_seconds * sample_rate)
            self._restart(0.0)
            if self._fill(1) == 0:
                raise AudioFileError(f"{self.path.name} contains no audio samples")
        except BaseException:
            self._container.close()
            raise

    @property
    def held_samples(self) -> int:
        """Decoded samples waiting to be read: the reader's memory, bounded by one frame + one read."""
        return sum(block.size for block in self._pending)

    @property
    def position(self) -> int:
        """The next sample `read` returns, on the file's timeline at `sample_rate`."""
        return self._position

    def read(self, n: int) -> np.ndarray:
        """Up to `n` next samples [<= n] float32; fewer only at the end of the file (empty: the end)."""
        self._fill(n)
        out = np.empty(min(n, self.held_samples), np.float32)
        filled = 0
        while filled < out.size:
            block = self._pending[0]
            take = min(block.size, out.size - filled)
            out[filled:filled + take] = block[:take]
            filled += take
            if take == block.size:
                self._pending.pop(0)
            else:
                self._pending[0] = block[take:]
        self._position += out.size
        if self._position > self._max_samples:
            hours = self._max_samples / self.sample_rate / 3600
            raise AudioFileError(f"{self.path.name} is longer than {hours:.0f} h: split it into shorter files")
        return out

    def seek(self, seconds: float) -> None:
        """The next read starts at `seconds` (clamped to the file), to the sample."""
        seconds = max(0.0, seconds)
        if self.duration_s:
            seconds = min(seconds, self.duration_s)
        base = self._stream.time_base
        target = int(seconds / base) if base else 0
        try:
            self._container.seek(target, stream=self._stream, backward=True)
        except av.error.FFmpegError as exc:
            raise AudioFileError(f"cannot seek in {self.path.name} ({_reason(exc)}): re-export it") from None
        self._restart(seconds)

    def close(self) -> None:
        self._container.close()
        self._pending = []

    def __enter__(self) -> AudioFileReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- decoding --------------------------------------------------------------------------------
    def _restart(self, seconds: float) -> None:
        """Decode from the container's current place; drop what comes before `seconds`."""
        self._frames = self._container.decode(self._stream)
        self._pending: list[np.ndarray] = []
        self._resampler: StreamResampler | None = None
        self._downmix = None
        self._skip_to_s = seconds
        self._position = round(seconds * self.sample_rate)
        self._ended = False

    def _fill(self, n: int) -> int:
        """Decode until `n` samples wait (or the file ends); returns how many wait."""
        while self.held_samples < n and not self._ended:
            try:
                frame = next(self._frames, None)
            except av.error.FFmpegError as exc:
                raise AudioFileError(f"{self.path.name} is damaged ({_reason(exc)}): re-export it") from None
            if frame is None:
                self._ended = True
                if self._resampler is not None:
                    self._keep(self._resampler.flush())
                break
            self._decode_frame(frame)
        return self.held_samples

    def _decode_frame(self, frame: av.AudioFrame) -> None:
        if self._resampler is None:
            try:
                self._resampler = StreamResampler(frame.sample_rate, 1, self.sample_rate)
            except ValueError as exc:  # rate/channel checks
                raise AudioFileError(f"{self.path.name}: {exc}") from None
            # Downmix with libswresample at the source rate, then resample with our stream resampler.
            self._downmix = av.AudioResampler(format="flt", layout="mono", rate=frame.sample_rate)
        skip = 0
        if self._skip_to_s and frame.time is not None:  # after a seek: the frame may start early
            skip = max(0, round((self._skip_to_s - frame.time) * frame.sample_rate))
        for mono in self._downmix.resample(frame):
            pcm = mono.to_ndarray().reshape(-1)  # [samples] at the source rate
            if skip:
                dropped = min(skip, pcm.size)
                pcm, skip = pcm[dropped:], skip - dropped
            if pcm.size:
                self._skip_to_s = 0.0
                self._keep(self._resampler.push(pcm))

    def _keep(self, block: np.ndarray) -> None:
        if block.size:
            self._pending.append(block.astype(np.float32, copy=False))


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE,
               max_seconds: float = MAX_AUDIO_SECONDS) -> np.ndarray:
    """The whole file as float32 [N] (short files: speech clips, renders, tests)."""
    with AudioFileReader(path, sample_rate, max_seconds) as reader:
        pieces = []
        while (block := reader.read(sample_rate * 10)).size:
            pieces.append(block)
    return np.concatenate(pieces)


def _open(path: Path):
    if not path.is_file():
        raise AudioFileError(f"audio file not found: {path}")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path.name} is empty (0 bytes): choose another audio file")
    try:
        return av.open(str(path), mode="r")
    except av.error.InvalidDataError:
        raise AudioFileError(f"cannot read {path.name} as audio: it is not an audio file, or it is damaged; "
                             f"{FORMATS_HINT}") from None
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioFileError(f"cannot read {path.name} as audio ({_reason(exc)}): {FORMATS_HINT}") from None


def _duration_s(container, stream) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _reason(exc: Exception) -> str:
    """FFmpeg's words without its errno ("[Errno 1094995529] Invalid data found ..." -> "invalid data found ...")."""
    text = getattr(exc, "strerror", None) or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return text[:120].rstrip(".").lower()

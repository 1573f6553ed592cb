"""Record the session to an MP4 (H.264 + AAC) on a background thread.

The writer opens with the first chunk's frame size; encoding never runs on the UI thread. While
recording, the file is a fragmented MP4 (`<name>.partial-<pid>.mp4`, one fragment per second) so a
crash or kill loses at most the last second; on close it is remuxed into a regular MP4 (index up
front) at the target path. When the disk fills up, recording stops (`failed`, one-line `error`)
and the file is cut after its last whole fragment and moved to the target path: everything up to
that second stays playable. Further chunks are dropped until `close()`.
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from avkit.disk_space import DiskFullError, is_disk_full
from avkit.mp4_writer import Mp4Writer
from studio.outputs.mp4_remux import remux_to_regular_mp4
from studio.outputs.recorder_salvage import cut_after_last_fragment, video_seconds

_CLOSE = object()
MAX_QUEUED_CHUNKS = 256


class Recorder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = f"recorder ({self.path.name})"
        self.frames_written = 0
        self.error = ""
        self.failed = False  # recording stopped for good (error says why); the studio polls this
        self._queue: queue.Queue = queue.Queue(maxsize=MAX_QUEUED_CHUNKS)
        self._on_closed = None
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        try:
            self._queue.put_nowait((frames, audio))
        except queue.Full:
            self.error = self.error or "the recorder fell behind and dropped frames"

    def close(self, on_closed) -> None:
        self._on_closed = on_closed
        self._queue.put(_CLOSE)

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        writer: Mp4Writer | None = None
        try:
            while (item := self._queue.get()) is not _CLOSE:
                frames, audio = item
                if writer is None:
                    height, width = frames.shape[1:3]
                    writer = Mp4Writer(self.path, width - width % 2, height - height % 2, fragmented=True)
                writer.write_frames(frames[:, :writer.height, :writer.width])
                writer.write_audio(audio)
                self.frames_written += len(frames)
            if writer is not None:
                remux_to_regular_mp4(writer.close())
            elif not self.error:
                self.error = f"nothing was recorded to {self.path}: no frames arrived"
        except Exception as exc:  # noqa: BLE001 - any encoder failure must reach the user, not kill the thread
            if is_disk_full(exc):
                self.error = self._keep_after_disk_full(writer, exc)
            else:
                if writer is not None:
                    writer.abort()
                self.error = f"recording to {self.path} failed: {exc}"
            self.failed = True
            while self._queue.get() is not _CLOSE:  # keep accepting until close()
                pass
        if self._on_closed is not None:
            self._on_closed(self.error)

    def _keep_after_disk_full(self, writer: Mp4Writer | None, exc: OSError) -> str:
        """Cut the fragmented file after its last whole second and put it at the target path."""
        reason = f"the disk is full ({DiskFullError(exc.errno, self.path).strerror})"
        advice = "free some disk space or choose another folder"
        kept = 0.0
        if writer is not None:
            writer.abort(keep_partial=True)
            try:
                if writer.partial.exists() and cut_after_last_fragment(writer.partial):
                    kept = video_seconds(writer.partial)
            except OSError:  # cannot even truncate it: nothing worth keeping
                kept = 0.0
            if kept > 0:
                writer.partial.replace(self.path)
            else:
                writer.partial.unlink(missing_ok=True)
        if kept > 0:
            return f"recording stopped, {reason}: the first {kept:.0f} s are in {self.path}; {advice}"
        return f"recording to {self.path} stopped, {reason}: nothing could be kept; {advice}"

"""Send the generated video to a virtual camera (pyvirtualcam) so video-call apps can use the avatar.

The camera has a fixed size and rate; each generated frame is letterboxed into it (never
stretched). Frames arrive in bursts (one chunk at a time); a thread of its own plays them out at
the timeline rate and sends a frame every camera period, repeating the last one between chunks
so a call never sees a frozen or dropped camera.
"""
from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
import pyvirtualcam

from avkit.timeline import FPS

LINUX_HINT = ('load the v4l2loopback kernel module: sudo modprobe v4l2loopback exclusive_caps=1 '
              'card_label="FlashTalk" (install it with: sudo apt install v4l2loopback-dkms), '
              'then turn the virtual camera on again')
OBS_HINT = ('install OBS Studio (https://obsproject.com), start its Virtual Camera once '
            '(Start Virtual Camera, then stop it and quit OBS), then turn the virtual camera on again')


class VirtualCameraUnavailable(RuntimeError):
    """No virtual camera device could be opened; the message says how to get one (one line)."""


@dataclass(frozen=True)
class VirtualCameraConfig:
    width: int = 1280
    height: int = 720
    fps: int = 30
    backend: str | None = None  # None: every backend pyvirtualcam knows on this OS
    device: str | None = None  # e.g. /dev/video10; None: the backend's first free one
    max_backlog_s: float = 1.0  # frames queued beyond this are dropped (bounds the camera's delay)


def setup_hint(platform: str = sys.platform) -> str:
    """What the user must do on `platform` to get a virtual camera device."""
    return LINUX_HINT if platform.startswith("linux") else OBS_HINT


def letterbox(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fit uint8 RGB [h, w, 3] inside a black [height, width, 3] canvas, keeping the aspect ratio."""
    h, w = frame.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if (new_w, new_h) != (w, h):
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frame = cv2.resize(frame, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = frame
    return canvas


def _open_camera(config: VirtualCameraConfig) -> pyvirtualcam.Camera:
    if config.backend is not None and config.backend not in pyvirtualcam.camera.BACKENDS:
        known = ", ".join(sorted(pyvirtualcam.camera.BACKENDS)) or "none"
        raise VirtualCameraUnavailable(f"unknown virtual camera backend {config.backend!r} (known: {known})")
    try:
        return pyvirtualcam.Camera(config.width, config.height, config.fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                   backend=config.backend, device=config.device)
    except (RuntimeError, ValueError, OSError) as exc:
        reason = " ".join(str(exc).split()) or "no backend available"
        raise VirtualCameraUnavailable(f"no virtual camera device ({reason}): {setup_hint()}") from None


class VirtualCamera:
    """A fan-out output; opening it raises VirtualCameraUnavailable with what to do."""

    def __init__(self, config: VirtualCameraConfig = VirtualCameraConfig(), source_fps: int = FPS):
        self.config = config
        self.source_fps = source_fps
        self._camera = _open_camera(config)
        self.name = f"virtual camera ({self._camera.device})"
        self.device: str = self._camera.device
        self.frames_sent = 0
        self.frames_dropped = 0
        self.error = ""
        self._pending: collections.deque[np.ndarray] = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._on_closed = None
        self._finished = False
        self._showing = np.zeros((config.height, config.width, 3), np.uint8)  # black until the first frame
        self._thread = threading.Thread(target=self._run, name="virtual-camera", daemon=True)
        self._thread.start()

    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        """frames uint8 RGB [N, H, W, 3]; queued for playout at the source rate (audio unused)."""
        limit = max(1, int(self.config.max_backlog_s * self.source_fps))
        with self._lock:
            self._pending.extend(frames)
            while len(self._pending) > limit:
                self._pending.popleft()
                self.frames_dropped += 1

    def close(self, on_closed=None) -> None:
        """Stop sending and release the device; on_closed(error_or_empty) once it is released."""
        with self._lock:
            self._on_closed = on_closed
            finished = self._finished
        self._stop.set()
        if finished and on_closed is not None:
            on_closed(self.error)

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _next_source_frame(self, now: float, started: list[float | None]) -> np.ndarray | None:
        """The newest source frame due at `now`, or None when none is due (source-rate playout)."""
        with self._lock:
            if not self._pending:
                started[0] = None  # a gap: restart the source clock on the next chunk
                return None
            if started[0] is None:
                started[0], started[1] = now, 0
            due = int((now - started[0]) * self.source_fps) + 1 - started[1]
            frame = None
            for _ in range(min(due, len(self._pending))):
                frame = self._pending.popleft()
                started[1] += 1
            return frame

    def _run(self) -> None:
        period = 1.0 / self.config.fps
        next_t = time.monotonic()
        source_clock: list = [None, 0]  # [start time, source frames taken since then]
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                frame = self._next_source_frame(now, source_clock)
                if frame is not None:
                    self._showing = letterbox(frame, self.config.width, self.config.height)
                self._camera.send(self._showing)
                self.frames_sent += 1
                next_t += period
                if next_t < time.monotonic() - period:  # fell behind (loaded machine): no burst to catch up
                    next_t = time.monotonic() + period
                self._stop.wait(max(0.0, next_t - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - a device that vanished must reach the user, not kill the app
            self.error = f"virtual camera {self.device} stopped: {exc}"
        finally:
            self._camera.close()
        with self._lock:
            self._finished = True
            on_closed = self._on_closed
        if on_closed is not None:
            on_closed(self.error)

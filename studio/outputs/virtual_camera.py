"""Send the generated video to a virtual camera (pyvirtualcam) so video-call apps can use the avatar.

The camera has a fixed size and rate; each generated frame is letterboxed into it (never
stretched). The camera follows the display, not the engine: the session model hands it each frame
when the playout clock presents it (`show`, the moment its audio is heard), and a thread of its
own sends it at once, so the call gets lips in step with the voice it hears. Between frames
(before a session, while catching up) it repeats the last one at the camera's rate, so a call
never sees a frozen or vanished camera.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import pyvirtualcam

from avkit.timeline import FPS

LINUX_COMMANDS = ("sudo apt install v4l2loopback-dkms",
                  'sudo modprobe v4l2loopback exclusive_caps=1 card_label="FlashTalk"')
LINUX_HINT = (f"load the v4l2loopback kernel module: {LINUX_COMMANDS[1]} (install it with: {LINUX_COMMANDS[0]}), "
              "then turn the virtual camera on again")
OBS_HINT = ('install OBS Studio (https://obsproject.com), start its Virtual Camera once '
            '(Start Virtual Camera, then stop it and quit OBS), then turn the virtual camera on again')
SYSTEM_BACKEND = {"linux": "v4l2loopback", "win32": "obs", "darwin": "obs"}  # pyvirtualcam's, per OS


class VirtualCameraUnavailable(RuntimeError):
    """No virtual camera device could be opened; the message says why and how to get one (one line).

    `reason` (what the device layer said) and `hint` (what to do) are also kept apart: the doctor
    prints them as its detail and fix lines."""

    def __init__(self, message: str, reason: str = "", hint: str = "", commands: tuple[str, ...] = ()):
        super().__init__(message)
        self.reason = reason or message
        self.hint = hint
        self.commands = commands  # the hint's shell commands, in the order to run them


@dataclass(frozen=True)
class VirtualCameraConfig:
    width: int = 1280
    height: int = 720
    fps: int = 30
    backend: str | None = None  # None: every backend pyvirtualcam knows on this OS
    device: str | None = None  # e.g. /dev/video10; None: the backend's first free one


def setup_hint(platform: str = sys.platform) -> str:
    """What the user must do on `platform` to get a virtual camera device."""
    return LINUX_HINT if platform.startswith("linux") else OBS_HINT


def setup_commands(platform: str = sys.platform) -> tuple[str, ...]:
    """The shell commands of `setup_hint` (none where the fix is an installer)."""
    return LINUX_COMMANDS if platform.startswith("linux") else ()


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


def open_camera(config: VirtualCameraConfig) -> pyvirtualcam.Camera:
    """The device, opened; raises VirtualCameraUnavailable with what to do."""
    if config.backend is not None and config.backend not in pyvirtualcam.camera.BACKENDS:
        known = ", ".join(sorted(pyvirtualcam.camera.BACKENDS)) or "none"
        raise VirtualCameraUnavailable(f"unknown virtual camera backend {config.backend!r} (known: {known})")
    try:
        return pyvirtualcam.Camera(config.width, config.height, config.fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                   backend=config.backend, device=config.device)
    except (RuntimeError, ValueError, OSError) as exc:
        reason, hint = " ".join(str(exc).split()) or "no backend available", setup_hint()
        raise VirtualCameraUnavailable(f"no virtual camera device ({reason}): {hint}", reason, hint,
                                       setup_commands()) from None


class VirtualCamera:
    """A display-following output; opening it raises VirtualCameraUnavailable with what to do."""

    follows_display = True  # OutputFanout hands it presented frames (show), not arriving chunks

    def __init__(self, config: VirtualCameraConfig = VirtualCameraConfig(), source_fps: int = FPS):
        self.config = config
        self.source_fps = source_fps
        self._camera = open_camera(config)
        self.name = f"virtual camera ({self._camera.device})"
        self.device: str = self._camera.device
        self.frames_sent = 0
        self.frames_skipped = 0  # presented frames replaced by a newer one before they could go out
        self.sent_index = -1  # timeline index of the frame sent last (-1: none yet)
        self.error = ""
        self._new: tuple[int, np.ndarray] | None = None  # presented, not yet sent
        self._wake = threading.Condition()
        self._stop = False
        self._on_closed = None
        self._finished = False
        self._showing = np.zeros((config.height, config.width, 3), np.uint8)  # black until the first frame
        self._thread = threading.Thread(target=self._run, name="virtual-camera", daemon=True)
        self._thread.start()

    def show(self, index: int, frame: np.ndarray) -> None:
        """Frame `index` (uint8 RGB [H, W, 3]) is presented now; send it at once (UI thread, no copy)."""
        with self._wake:
            if self._new is not None:
                self.frames_skipped += 1
            self._new = (index, frame)
            self._wake.notify()

    def close(self, on_closed=None) -> None:
        """Stop sending and release the device; on_closed(error_or_empty) once it is released."""
        with self._wake:
            self._on_closed = on_closed
            finished = self._finished
            self._stop = True
            self._wake.notify()
        if finished and on_closed is not None:
            on_closed(self.error)

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _next(self, timeout: float) -> tuple[int, np.ndarray] | None:
        """The next presented frame, or None when `timeout` passed without one (or on stop)."""
        with self._wake:
            if self._new is None and not self._stop:
                self._wake.wait(timeout)
            new, self._new = self._new, None
            return new

    def _run(self) -> None:
        period = 1.0 / self.config.fps
        # A presented frame normally follows within one source period; repeat only once that is
        # clearly overdue (tick jitter), then at the camera's own rate.
        first_repeat = max(period, 1.5 / self.source_fps)
        wait = first_repeat
        try:
            while not self._stop:
                new = self._next(wait)
                if self._stop:
                    break
                if new is not None:
                    self.sent_index = new[0]
                    self._showing = letterbox(new[1], self.config.width, self.config.height)
                    wait = first_repeat
                else:
                    wait = period
                self._camera.send(self._showing)
                self.frames_sent += 1
        except Exception as exc:  # noqa: BLE001 - a device that vanished must reach the user, not kill the app
            self.error = f"virtual camera {self.device} stopped: {exc}"
        finally:
            self._camera.close()
        with self._wake:
            self._finished = True
            on_closed = self._on_closed
        if on_closed is not None:
            on_closed(self.error)

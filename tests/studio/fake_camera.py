"""A pyvirtualcam backend registered as "fake" through the library's own extension point
(`register_backend`): the virtual-camera kernel device is missing on CI machines. It keeps every
frame it is sent with the monotonic time it came and whatever `probe()` said at that moment."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import pyvirtualcam


class FakeCameraBackend:
    instances: ClassVar[list[FakeCameraBackend]] = []
    probe: ClassVar[Callable[[], object] | None] = None  # e.g. the playout position at each send

    def __init__(self, width, height, fps, fourcc, device, **_kw):
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.sent: list[tuple[float, np.ndarray]] = []
        self.probed: list[object] = []
        self.closed = False
        self.lock = threading.Lock()
        FakeCameraBackend.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        assert frame.dtype == np.uint8 and frame.size == self.height * self.width * 3
        t = time.monotonic()
        probe = FakeCameraBackend.probe
        seen = probe() if probe is not None else None
        with self.lock:  # pyvirtualcam hands backends the frame flattened
            self.sent.append((t, frame.reshape(self.height, self.width, 3).copy()))
            self.probed.append(seen)

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return "fake0"

    def native_fourcc(self):
        return self.fourcc

    def frames(self) -> list[tuple[float, np.ndarray]]:
        with self.lock:
            return list(self.sent)

    def probes(self) -> list[object]:
        with self.lock:
            return list(self.probed)


pyvirtualcam.register_backend("fake", FakeCameraBackend)

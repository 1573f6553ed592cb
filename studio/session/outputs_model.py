"""Where the session's frames and audio go besides the preview: virtual camera and recorder.

Every output plugs into one fanout (studio.outputs.fanout). The recorder gets chunks as they
arrive, the virtual camera each frame when the preview shows it. Finishing closes them all (files
finish on their own threads) and then reports the errors they had.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from avkit.timeline import FPS
from studio.outputs.fanout import DisplayOutput, Output, OutputFanout
from studio.outputs.recorder import Recorder
from studio.outputs.virtual_camera import VirtualCamera, VirtualCameraConfig, VirtualCameraUnavailable

RECORDER_CHECK_MS = 50  # how soon a failed recorder (e.g. the disk filled up) is stopped
RECORDER_FINISH_S = 10.0  # at quit: time to finish the recording before the process exits


class OutputsModel(QObject):
    notice = Signal(str)  # one line for the status bar
    recording_changed = Signal(bool)  # recording or not (a failed recorder stops itself)
    finished = Signal(object)  # list[str], after finish(): the outputs' errors (empty when all went well)

    def __init__(self, fps: int = FPS):
        super().__init__()
        self.fps = fps
        self.fanout = OutputFanout()
        self.virtual_camera: VirtualCamera | None = None
        self.recorder: Recorder | None = None
        self.closing = False  # finish() was called: nothing more is written or shown
        self._recorder_check = QTimer(self)
        self._recorder_check.timeout.connect(self._stop_failed_recorder)
        self._recorder_check.start(RECORDER_CHECK_MS)

    @property
    def errors(self) -> list[str]:
        return list(self.fanout.errors)

    @property
    def camera_on(self) -> bool:
        return self.virtual_camera is not None

    @property
    def recording(self) -> bool:
        return self.recorder is not None

    def add(self, output: Output | DisplayOutput) -> None:
        """An output kept to the end of the session (`flashtalk-studio --record`)."""
        self.fanout.add(output)

    # -- frames in -------------------------------------------------------------------------------
    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        """A chunk arrived: frames [N, H, W, 3] uint8 and the audio they show."""
        if not self.closing:
            self.fanout.write(frames, audio)

    def show(self, index: int, image: np.ndarray) -> None:
        """Frame `index` (uint8 [H, W, 3]) is presented now."""
        if not self.closing:
            self.fanout.show(index, image)

    # -- virtual camera --------------------------------------------------------------------------
    def start_virtual_camera(self, config: VirtualCameraConfig | None = None) -> str:
        """Send the video to a virtual camera; returns "" or a one-line "what to do" message."""
        self.stop_virtual_camera()
        config = config or VirtualCameraConfig()
        try:
            self.virtual_camera = VirtualCamera(config, self.fps)
        except VirtualCameraUnavailable as exc:
            self.notice.emit(str(exc))
            return str(exc)
        self.fanout.add(self.virtual_camera)
        self.notice.emit(f"virtual camera on: {self.virtual_camera.device} "
                         f"({config.width}x{config.height} at {config.fps} fps)")
        return ""

    def stop_virtual_camera(self) -> None:
        camera, self.virtual_camera = self.virtual_camera, None
        if camera is not None:
            self.fanout.remove(camera)
            camera.close(lambda error: self.notice.emit(error or "virtual camera off"))

    # -- recorder --------------------------------------------------------------------------------
    def start_recording(self, path: str | Path) -> None:
        self.stop_recording()
        self.recorder = Recorder(path)
        self.fanout.add(self.recorder)
        self.notice.emit(f"recording to {path}")
        self.recording_changed.emit(True)

    def stop_recording(self) -> None:
        """Finish the file on the recorder's thread; a notice says where it went."""
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            self.fanout.remove(recorder)
            recorder.close(lambda error: self.notice.emit(error or f"recorded {recorder.path}"))
            self.recording_changed.emit(False)

    def _stop_failed_recorder(self) -> None:
        if self.recorder is not None and self.recorder.failed:  # e.g. the disk filled up: its notice says why
            self.stop_recording()

    # -- the end ---------------------------------------------------------------------------------
    def finish(self) -> None:
        """Close every output (recorder files finish on their threads), then emit `finished`."""
        self.closing = True
        self.fanout.close_all(self.finished.emit)

    def close(self) -> None:
        """At quit: stop the camera, finish the recording (waiting a little for its file)."""
        self._recorder_check.stop()
        self.stop_virtual_camera()
        recorder = self.recorder
        self.stop_recording()
        if recorder is not None:
            recorder.wait(RECORDER_FINISH_S)

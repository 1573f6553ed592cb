"""Where the session's frames and audio go besides the preview: virtual camera and recorder.

Every output plugs into one fanout (studio.outputs.fanout). The recorder gets chunks as they
arrive, the virtual camera each frame when the preview shows it. Both say when they went on and
off (`recording_changed`, `camera_changed`) and since when (the REC / LIVE indicators' clocks);
what goes wrong with them is a problem that stays until it is solved. Finishing closes them all
(files finish on their own threads) and then reports the errors they had.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from avkit.timeline import FPS
from studio.outputs.fanout import DisplayOutput, Output, OutputFanout
from studio.outputs.recorder import Recorder
from studio.outputs.virtual_camera import VirtualCamera, VirtualCameraConfig, VirtualCameraUnavailable
from studio.session.problems_model import Problem, ProblemsModel

RECORDER_CHECK_MS = 50  # how soon a failed recorder (e.g. the disk filled up) is stopped
RECORDER_FINISH_S = 10.0  # at quit: time to finish the recording before the process exits
RECORDING_NAME = "flashtalk-%Y%m%d-%H%M%S.mp4"  # time.strftime pattern of a new recording's file name


def recording_path(folder: str | Path) -> Path:
    """A new recording's file in `folder`, named by the time it starts."""
    return Path(folder) / time.strftime(RECORDING_NAME)


class OutputsModel(QObject):
    notice = Signal(str)  # one line for the status bar
    recording_changed = Signal(bool)  # recording or not (a failed recorder stops itself)
    camera_changed = Signal(bool)  # the virtual camera sends or not
    finished = Signal(object)  # list[str], after finish(): the outputs' errors (empty when all went well)

    def __init__(self, fps: int = FPS, problems: ProblemsModel | None = None):
        super().__init__()
        self.fps = fps
        self.problems = problems or ProblemsModel()
        self.fanout = OutputFanout()
        self.virtual_camera: VirtualCamera | None = None
        self.recorder: Recorder | None = None
        self.recording_since = 0.0  # monotonic time the recording started (when recording)
        self.camera_since = 0.0  # monotonic time the virtual camera went on (when on)
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
        """Send the video to a virtual camera; returns "" or a one-line "what to do" message (the
        problems panel holds it, with the commands that get a camera)."""
        self.stop_virtual_camera()
        config = config or VirtualCameraConfig()
        try:
            self.virtual_camera = VirtualCamera(config, self.fps)
        except VirtualCameraUnavailable as exc:
            self.problems.report(_camera_problem(exc))
            self.notice.emit("no virtual camera: see the problem above the preview")
            return str(exc)
        self.problems.solve("virtual_camera")
        self.fanout.add(self.virtual_camera)
        self.camera_since = time.monotonic()
        self.notice.emit(f"virtual camera on: {self.virtual_camera.device} "
                         f"({config.width}x{config.height} at {config.fps} fps)")
        self.camera_changed.emit(True)
        return ""

    def stop_virtual_camera(self) -> None:
        camera, self.virtual_camera = self.virtual_camera, None
        if camera is not None:
            self.fanout.remove(camera)
            camera.close(lambda error: self.notice.emit(error or "virtual camera off"))
            self.camera_changed.emit(False)

    # -- recorder --------------------------------------------------------------------------------
    def start_recording(self, path: str | Path) -> str:
        """Record into `path` (a new file: `recording_path(folder)`); returns "" or why not (a
        problem says it too)."""
        self.stop_recording()
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = f"cannot save recordings in {path.parent}: {exc.strerror or exc}"
            self.problems.report(Problem("recording", f"{why[:1].upper()}{why[1:]}.",
                                         "Choose another folder for recordings (the folder button beside Record)."))
            return why
        self.problems.solve("recording")
        self.recorder = Recorder(path)
        self.recording_since = time.monotonic()
        self.fanout.add(self.recorder)
        self.notice.emit(f"recording to {path}")
        self.recording_changed.emit(True)
        return ""

    def stop_recording(self) -> None:
        """Finish the file on the recorder's thread; a notice says where it went (a problem, if it failed)."""
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            self.fanout.remove(recorder)
            recorder.close(lambda error: self._recording_closed(recorder, error))
            self.recording_changed.emit(False)

    def _recording_closed(self, recorder: Recorder, error: str) -> None:
        """On the recorder's thread: signals carry it to the UI thread."""
        self.notice.emit(error or f"recorded {recorder.path}")

    def _stop_failed_recorder(self) -> None:
        if self.recorder is not None and self.recorder.failed:  # e.g. the disk filled up: its error says why
            error = self.recorder.error
            self.stop_recording()
            self.problems.report(Problem("recording", f"{error[:1].upper()}{error[1:]}."))

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


def _camera_problem(exc: VirtualCameraUnavailable) -> Problem:
    if exc.hint:  # no device: the words of the fix, not the device layer's
        where = "Zoom, Teams, Meet and OBS" if sys.platform.startswith("linux") else "Zoom, Teams and Meet"
        return Problem("virtual_camera", f"There is no virtual camera on this computer yet, so {where} "
                       "cannot see the avatar (the preview and recordings still work).",
                       f"{exc.hint[:1].upper()}{exc.hint[1:]}." if not exc.commands else
                       "Run these once (the second after every restart), then press Virtual camera again:",
                       exc.commands, detail=exc.reason)
    return Problem("virtual_camera", f"The virtual camera cannot start: {exc}.", detail=exc.reason)

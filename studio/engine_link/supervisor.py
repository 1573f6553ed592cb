"""Start the engine as a child process and keep it alive: restart with backoff after a crash.

The engine prints `ready ADDR` when it accepts clients (engine.protocol.engine_state spells the
lines); everything else it prints goes to the log tail. A crash, or a hang reported by the
connection, leads to a restart after 1, 2, 4 ... 30 s, with a one-line account of what happened.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QTimer, Signal

from engine.protocol.address import runtime_dir, token_path
from engine.protocol.engine_state import EngineState, is_warming_up, ready_address
from studio.engine_link.options import EngineOptions

BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
STABLE_AFTER_S = 30.0  # running this long resets the backoff
STOP_WAIT_MS = 3000


class EngineSupervisor(QObject):
    state_changed = Signal(object, str)  # EngineState (STARTING, WARMING_UP, READY, RESTARTING, STOPPED,
    #                                     FAILED), one-line message
    ready = Signal(str, str)  # address, token file
    log_line = Signal(str)

    def __init__(self, python: str = sys.executable, address: str | None = None):
        super().__init__()
        self.python = python
        self.address = address or f"ipc://{runtime_dir() / f'studio-{os.getpid()}.sock'}"
        self.options = EngineOptions()
        self.restarts = 0
        self.last_exit = ""  # why the engine last stopped unexpectedly (without the "restarting" part)
        self._attempt = 0
        self._started_t = 0.0
        self._wanted = False  # the user wants an engine running
        self._proc: QProcess | None = None
        self._stdout_tail = b""
        self._last_stderr = ""  # the engine's own one-line reason when it refuses its options (exit 2)
        self._restart_timer = QTimer(self, singleShot=True)
        self._restart_timer.timeout.connect(self._launch)

    @property
    def pid(self) -> int:
        return int(self._proc.processId()) if self._proc is not None else 0

    def start(self, options: EngineOptions) -> None:
        self.options = options
        self._wanted = True
        self._attempt = 0
        self._restart_timer.stop()
        if self._proc is None:
            self._launch()

    def stop(self) -> None:
        self._wanted = False
        self._restart_timer.stop()
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.finished.disconnect()
            proc.terminate()
            if not proc.waitForFinished(STOP_WAIT_MS):
                proc.kill()
                proc.waitForFinished(STOP_WAIT_MS)
            proc.deleteLater()
        self.state_changed.emit(EngineState.STOPPED, "engine stopped")

    def restart(self) -> None:
        options = self.options
        self.stop()
        self.start(options)

    def kill_unresponsive(self, reason: str) -> None:
        """The connection says the engine hangs: kill it; the exit handler restarts it."""
        if self._proc is not None and self._proc.state() != QProcess.NotRunning:
            self.log_line.emit(f"studio: {reason}; killing engine pid {self.pid}")
            self._hang_reason = reason
            self._proc.kill()

    # -- process ---------------------------------------------------------------------------------
    def _launch(self) -> None:
        if not self._wanted:
            return
        proc = QProcess(self)
        program, prefix = engine_command(self.python)
        proc.setProgram(program)
        proc.setArguments([*prefix, *self.options.serve_args(self.address)])
        proc.readyReadStandardOutput.connect(lambda: self._read_stdout(proc))
        proc.readyReadStandardError.connect(lambda: self._read_stderr(proc))
        proc.finished.connect(lambda code, status: self._on_finished(proc, code, status))
        proc.errorOccurred.connect(lambda err: self._on_error(proc, err))
        self._proc = proc
        self._hang_reason = ""
        self._stdout_tail = b""
        self._last_stderr = ""
        self._started_t = time.monotonic()
        self.state_changed.emit(EngineState.STARTING, f"starting the {self.options.backend} engine")
        proc.start()

    def _read_stdout(self, proc: QProcess) -> None:
        self._stdout_tail += bytes(proc.readAllStandardOutput())
        *lines, self._stdout_tail = self._stdout_tail.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace").rstrip()
            address = ready_address(line)
            if address is not None and proc is self._proc:
                self.state_changed.emit(EngineState.READY, f"engine running (pid {self.pid})")
                self.ready.emit(address, str(token_path(address)))
            elif line:
                self.log_line.emit(line)

    def _read_stderr(self, proc: QProcess) -> None:
        for line in bytes(proc.readAllStandardError()).decode(errors="replace").splitlines():
            if not line.strip():
                continue
            if proc is self._proc:
                self._last_stderr = line.strip()
                if is_warming_up(line):  # GPU engines, before ready
                    self.state_changed.emit(EngineState.WARMING_UP, f"the {self.options.backend} engine runs "
                                            "its first chunks (minutes with --compile)")
            self.log_line.emit(line.rstrip())

    def _on_error(self, proc: QProcess, err) -> None:
        if err == QProcess.FailedToStart and proc is self._proc:
            self._proc = None
            self._wanted = False
            self.state_changed.emit(EngineState.FAILED, f"cannot start the engine with {self.python}: "
                                    f"{proc.errorString()}")

    def _on_finished(self, proc: QProcess, code: int, status) -> None:
        if proc is not self._proc:
            return
        self._read_stderr(proc)  # its last words may not have been read yet
        self._proc = None
        proc.deleteLater()
        if not self._wanted:
            return
        if self._hang_reason:
            what = f"the engine hung ({self._hang_reason}) and was killed"
        elif status == QProcess.CrashExit:
            what = "the engine crashed (killed by a signal)"
        elif code == 2:  # the engine's own "user error" exit: restarting would fail the same way
            self._wanted = False
            reason = self._last_stderr or "see the engine log"
            self.state_changed.emit(EngineState.FAILED, f"the engine refused its options: {reason}")
            return
        else:
            what = f"the engine exited unexpectedly (exit code {code})"
        if time.monotonic() - self._started_t > STABLE_AFTER_S:
            self._attempt = 0
        delay = BACKOFF_S[min(self._attempt, len(BACKOFF_S) - 1)]
        self._attempt += 1
        self.restarts += 1
        self.last_exit = what
        self.log_line.emit(f"studio: {what}")
        self.state_changed.emit(EngineState.RESTARTING, f"{what}; restarting in {delay:.0f} s")
        self._restart_timer.start(int(delay * 1000))


def engine_command(python: str) -> tuple[str, list[str]]:
    """How to start `flashtalk serve`: `python -m engine`, or in a frozen bundle (where
    sys.executable is the studio itself) the `flashtalk` program that ships beside it."""
    if getattr(sys, "frozen", False):
        name = "flashtalk.exe" if sys.platform == "win32" else "flashtalk"
        return str(Path(sys.executable).with_name(name)), []
    return python, ["-m", "engine"]

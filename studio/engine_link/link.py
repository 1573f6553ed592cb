"""The studio's one handle on the engine: a supervised child process or an attached remote engine,
plus the connection worker on its QThread.

Everything the session needs comes out of `EngineLink`'s signals; commands go in through its
thread-safe methods. A lost connection leads to a restart (child engine) or a reconnect with
backoff (attached engine); the session model re-opens its session when `connected` fires again.
`running` says whether the user wants an engine (started and not stopped since).
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal

from engine.protocol import SessionSettings
from engine.protocol.engine_state import EngineState
from studio.engine_link.options import EngineOptions
from studio.engine_link.supervisor import BACKOFF_S, EngineSupervisor
from studio.engine_link.worker import EngineWorker

THREAD_WAIT_MS = 3000


class EngineLink(QObject):
    state_changed = Signal(object, str)  # EngineState, one-line message for the engine panel
    log_line = Signal(str)
    connected = Signal(object)  # Welcome
    disconnected = Signal(str)
    session_opened = Signal(object)
    session_refused = Signal(str, str)
    portrait_checked = Signal(object)  # PortraitChecked
    chunk = Signal(object)  # ReceivedChunk
    metrics = Signal(object)
    event = Signal(str, str, object)  # kind, message, data
    error = Signal(str, str, bool)

    def __init__(self, supervisor: EngineSupervisor | None = None):
        super().__init__()
        self.supervisor = supervisor or EngineSupervisor()
        self.supervisor.state_changed.connect(self.state_changed)
        self.supervisor.state_changed.connect(self._on_supervisor_state)
        self.supervisor.log_line.connect(self.log_line)
        self.supervisor.ready.connect(self._connect)
        self.options = EngineOptions()
        self.running = False
        self.welcome = None
        self._worker: EngineWorker | None = None
        self._thread: QThread | None = None
        self._retired: list[tuple[EngineWorker, QThread]] = []
        self._attach_attempt = 0
        self._reconnect_timer = QTimer(self, singleShot=True)
        self._reconnect_timer.timeout.connect(self._attach)

    # -- lifecycle -------------------------------------------------------------------------------
    def set_options(self, options: EngineOptions) -> None:
        """Remember what to start (or attach to) without starting it (the last run's settings)."""
        self.options = options

    def start(self, options: EngineOptions) -> None:
        """Start (or attach to) an engine; options that cannot work fail at once (FAILED)."""
        self.stop()
        self.options = options
        problem = options.problem()
        if problem:
            self.state_changed.emit(EngineState.FAILED, problem)
            return
        self.running = True
        if options.attached:
            self._attach_attempt = 0
            self._attach()
        else:
            self.supervisor.start(options)

    def stop(self) -> None:
        self.running = False
        self._reconnect_timer.stop()
        self._drop_worker("stopped")
        self.supervisor.stop()

    def restart(self) -> None:
        self.start(self.options)

    @property
    def is_connected(self) -> bool:
        return self.welcome is not None

    # -- commands (thread-safe) ------------------------------------------------------------------
    def open_session(self, portrait: bytes, settings: SessionSettings) -> None:
        if self._worker is not None:
            self._worker.open_session(portrait, settings)

    def check_portrait(self, portrait: bytes, request: int) -> None:
        if self._worker is not None:
            self._worker.check_portrait(portrait, request)

    def send_audio(self, pcm: np.ndarray, capture_t: float) -> None:
        worker = self._worker
        if worker is not None:
            worker.send_audio(pcm, capture_t)

    def end_audio(self) -> None:
        if self._worker is not None:
            self._worker.end_audio()

    def close_session(self) -> None:
        if self._worker is not None:
            self._worker.close_session()

    # -- connection ------------------------------------------------------------------------------
    def _attach(self) -> None:
        self.state_changed.emit(EngineState.CONNECTING, f"connecting to {self.options.attach_address}")
        self._connect(self.options.attach_address, self.options.token_file or None)

    def _connect(self, address: str, token_file: str | None) -> None:
        self._drop_worker("reconnecting")
        worker = EngineWorker(address, token_file)
        thread = QThread(self)
        thread.setObjectName("engine-worker")
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.finished.connect(thread.quit, Qt.DirectConnection)  # QThread.quit is thread-safe
        worker.connected.connect(self._on_connected)
        worker.lost.connect(lambda reason: self._on_lost(worker, reason))
        for name in ("session_opened", "session_refused", "portrait_checked", "chunk", "metrics", "event", "error"):
            getattr(worker, name).connect(getattr(self, name))
        self._worker, self._thread = worker, thread
        thread.start()

    def _drop_worker(self, reason: str) -> None:
        """Retire the worker without waiting on the UI thread; its thread ends on its own."""
        worker, thread = self._worker, self._thread
        self._worker = self._thread = None
        was_connected = self.welcome is not None
        self.welcome = None
        if worker is not None:
            self._retired.append((worker, thread))
            thread.finished.connect(lambda: self._forget(worker))
            worker.stop()
        if was_connected:
            self.disconnected.emit(reason)

    def _forget(self, worker: EngineWorker) -> None:
        for pair in list(self._retired):
            if pair[0] is worker:
                self._retired.remove(pair)
                pair[0].deleteLater()
                pair[1].deleteLater()

    def shutdown(self) -> None:
        """At exit: stop everything and wait (briefly) for the worker threads to end."""
        self.stop()
        for _, thread in list(self._retired):
            thread.wait(THREAD_WAIT_MS)

    def _on_supervisor_state(self, state: EngineState, message: str) -> None:
        if state in (EngineState.RESTARTING, EngineState.FAILED):
            self._drop_worker(self.supervisor.last_exit if state is EngineState.RESTARTING else message)

    def _on_connected(self, welcome) -> None:
        self.welcome = welcome
        self._attach_attempt = 0
        where = self.options.attach_address or "local engine"
        self.state_changed.emit(EngineState.CONNECTED, f"connected to {where} ({welcome.engine}, "
                                f"{welcome.default_backend})")
        self.connected.emit(welcome)

    def _on_lost(self, worker: EngineWorker, reason: str) -> None:
        if worker is not self._worker:
            return
        self._drop_worker(reason)
        if self.options.attached:
            delay = BACKOFF_S[min(self._attach_attempt, len(BACKOFF_S) - 1)]
            self._attach_attempt += 1
            self.state_changed.emit(EngineState.RECONNECTING, f"lost the engine ({reason}); "
                                    f"retrying in {delay:.0f} s")
            self._reconnect_timer.start(int(delay * 1000))
        else:
            self.log_line.emit(f"studio: lost the engine connection: {reason}")
            self.supervisor.kill_unresponsive(reason)

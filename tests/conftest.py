"""Shared fixtures: real engine processes on private sockets, the shipped assets."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from engine.protocol.address import read_token
from engine.protocol.handshake import present_token

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"


class EngineProcess:
    """A `flashtalk serve` child process; stdout is read until its `ready ADDR` line."""

    def __init__(self, address: str, *extra: str, backend: str = "puppet"):
        self.address = address
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--socket", address, "--backend", backend, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.proc.kill()
            raise RuntimeError(f"engine did not start: {line!r} {self.proc.stderr.read()[-2000:]}")

    def stop(self, sig=None) -> int:
        if self.proc.poll() is None:
            self.proc.terminate() if sig is None else self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def engine(tmp_path):
    proc = EngineProcess(f"ipc://{tmp_path}/run/engine.sock", "--client-timeout", "2")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def portrait_bytes() -> bytes:
    return (ASSETS / "portrait.png").read_bytes()


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    from avkit.audio_decode import load_audio
    return load_audio(ASSETS / "speech.wav")


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def process_alive(pid: int) -> bool:
    """Running (a zombie that nobody reaped has stopped running)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def engine_children(pid: int) -> list[psutil.Process]:
    """The `python -m engine` children of process `pid` (a studio). Short-lived helpers it runs
    (device listings, espeak-ng) may have ended, or be zombies nobody reaped yet: not engines."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            if child.cmdline()[1:3] == ["-m", "engine"]:
                found.append(child)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            pass
    return found


HANDSHAKE_OUTCOMES = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                      | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class RawDealer:
    """A hand-driven DEALER with the engine's token (`token=True`), none (None) or a given one,
    that watches its own handshakes: `handshake()` is how the first one ended."""

    def __init__(self, address: str, token: str | bool | None = True, ident: bytes | None = None,
                 rcvhwm: int | None = None):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if ident is not None:
            self.sock.setsockopt(zmq.IDENTITY, ident)
        if rcvhwm is not None:
            self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        if token is not None:
            present_token(self.sock, read_token(address) if token is True else token)
        self._monitor = self.sock.get_monitor_socket(HANDSHAKE_OUTCOMES)
        self.sock.connect(address)

    def offer(self, parts: list) -> None:
        """Send without waiting, as a peer the handshake may refuse: once it has, libzmq can have
        dropped the peer's only pipe, and a plain send would then block for ever."""
        try:
            self.sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass  # nothing left to queue on: nothing reaches the engine either

    def handshake(self, timeout: float = 10.0) -> zmq.Event:
        assert self._monitor.poll(int(timeout * 1000)), "no handshake at all"
        return zmq.Event(recv_monitor_message(self._monitor)["event"])

    def close(self) -> None:
        self.sock.disable_monitor()
        self._monitor.close(0)
        self.sock.close(0)

"""How much memory a peer can make the engine hold before it says hello: without the token, with
a wrong one, with the token.

Issue 17, item 2: ZeroMQ assembles a whole multipart message before the engine sees any of it,
and MAXMSGSIZE bounds each part only, so a peer could make the engine hold [header] + 40 parts of
32 MiB - 1 (1.25 GiB) while it arrived. Since protocol 2 the token is the password of ZeroMQ's
PLAIN handshake (engine.protocol.handshake): a peer without it gets no connection, so it cannot
send a byte of any message. This script sends that probe (then one of 20 parts, 640 MiB) to a
real `python -m engine serve --backend puppet`, as a peer with no credentials, a wrong password
and the token (the last one is refused too, by the whole-message bound, after it has arrived).

    PYTHONPATH=$PWD python scripts/measure_zap_memory.py

Numbers from a run are in docs/reliability.md ("Local attackers"). Needs about 2 GiB of free memory.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack
import psutil
import zmq

from engine.protocol.address import read_token
from engine.protocol.handshake import present_token

PART = 32 * 2**20 - 1  # each part just under the per-part limit
PROBES = (40, 20)  # parts per message: 1.25 GiB, then 640 MiB


class PeakRss:
    """Samples a process's RSS every 5 ms while in use: the peak, in MiB."""

    def __init__(self, pid: int):
        self._proc = psutil.Process(pid)
        self.start = self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def now(self) -> float:
        return self._proc.memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def probe(address: str, password: str | None) -> list[str]:
    """Send the two messages before any hello; what came back for each."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if password is not None:
        present_token(sock, password)
    sock.connect(address)
    answers = []
    for parts in PROBES:
        try:
            sock.send_multipart([msgpack.packb({"type": "heartbeat"}), *[bytes(PART)] * parts],
                                flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            answers.append("not sent (no connection)")
            continue
        answers.append("a reply" if sock.poll(20_000) and sock.recv_multipart() else "nothing")
    sock.close(0)
    return answers


def measure(label: str, proc: subprocess.Popen, address: str, password: str | None) -> None:
    with PeakRss(proc.pid) as rss:
        base = rss.now()
        answers = probe(address, password)
        time.sleep(1.0)
    print(f"{label:32} RSS before {base:6.0f} MiB  peak {rss.peak:6.0f} MiB  after {rss.now():6.0f} MiB  "
          f"answers: {', '.join(answers)}", flush=True)


def started(cmd: list[str], ready: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith(ready):
        proc.kill()
        raise SystemExit(f"did not start: {cmd}")
    time.sleep(0.5)
    return proc


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="flashtalk-zap-") as tmp:
        address = f"ipc://{Path(tmp)}/engine.sock"
        engine = started([sys.executable, "-m", "engine", "serve", "--backend", "puppet", "--socket", address],
                         "ready ")
        try:
            for label, password in (("engine, no credentials", None), ("engine, wrong token", "guessed"),
                                    ("engine, the token", read_token(address))):
                measure(label, engine, address, password)
        finally:
            engine.terminate()
            engine.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How much memory a peer without the token can make the engine hold, today and with ZAP PLAIN.

Issue 17, item 2: ZeroMQ assembles a whole multipart message before the engine sees any of it,
and MAXMSGSIZE bounds each part only, so a peer that never says hello can still make the engine
hold [header] + 40 parts of 32 MiB - 1 (1.25 GiB) while it arrives. Authentication in ZeroMQ's
own handshake (ZAP, PLAIN mechanism, password = the token) would refuse such a peer before it
sends a byte of any message. This script sends that probe (then one of 20 parts, 640 MiB) to:

  engine   a real `python -m engine serve --backend puppet` (peak and settled RSS);
  zap      a ROUTER with the engine's socket options behind a PLAIN ZAP handler, from a peer with
           no credentials, a wrong password and the right one (the last may fill memory: it
           holds the token).

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

from engine.protocol.messages import MAX_INBOUND_MESSAGE_BYTES

PART = 32 * 2**20 - 1  # each part just under the per-part limit
PROBES = (40, 20)  # parts per message: 1.25 GiB, then 640 MiB
USER = b"flashtalk"

ZAP_ROUTER = """
import sys, zmq
from zmq.auth.thread import ThreadAuthenticator
address, token, max_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = zmq.Context()
auth = ThreadAuthenticator(ctx)
auth.start()
auth.configure_plain(domain="flashtalk", passwords={"flashtalk": token})
sock = ctx.socket(zmq.ROUTER)
sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
sock.setsockopt(zmq.RCVHWM, 1000)
sock.plain_server = True
sock.zap_domain = b"flashtalk"
sock.bind(address)
print("ready", flush=True)
while True:
    frames = sock.recv_multipart(copy=False)
    sock.send_multipart([frames[0], b"%d parts" % (len(frames) - 1)])
"""


class PeakRss:
    """Samples a process's RSS every 5 ms while in use: the peak, in MiB."""

    def __init__(self, pid: int):
        self._proc = psutil.Process(pid)
        self.peak = self.now()
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


def probe(address: str, password: bytes | None) -> list[str]:
    """Send the two messages before any hello; what came back for each."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if password is not None:
        sock.plain_username, sock.plain_password = USER, password
    sock.connect(address)
    answers = []
    for parts in PROBES:
        try:
            sock.send_multipart([msgpack.packb({"type": "heartbeat"}), *[bytes(PART)] * parts],
                                flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            answers.append("not sent (no connection)")
            continue
        answers.append("a reply" if sock.poll(60_000) and sock.recv_multipart() else "nothing")
    sock.close(0)
    return answers


def measure(label: str, proc: subprocess.Popen, address: str, password: bytes | None) -> None:
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
            measure("engine, no hello", engine, address, None)
        finally:
            engine.terminate()
            engine.wait(10)
        token = "not-the-engine-token-" + Path(tmp).name
        zap = started([sys.executable, "-c", ZAP_ROUTER, address, token, str(MAX_INBOUND_MESSAGE_BYTES)], "ready")
        try:
            for label, password in (("zap, no credentials", None), ("zap, wrong password", b"guess"),
                                    ("zap, the token as password", token.encode())):
                measure(label, zap, address, password)
        finally:
            zap.kill()
            zap.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

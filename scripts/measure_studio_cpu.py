"""CPU the studio spends per second of a live session: its UI thread, the whole studio process, and
the puppet engine it started, while the shipped speech sample plays on a loop (offscreen Qt).

    QT_QPA_PLATFORM=offscreen python scripts/measure_studio_cpu.py [--seconds 30] [--hide-graphs]

Prints one JSON object. The UI thread's number is time.thread_time() read on the UI thread at the
start and end of the measured window; process numbers come from psutil. Numbers depend on the
machine and on what else runs on it: compare runs made side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from studio.engine_link.link import EngineLink  # noqa: E402
from studio.engine_link.options import EngineOptions  # noqa: E402
from studio.engine_link.supervisor import EngineSupervisor  # noqa: E402
from studio.main_window import MainWindow  # noqa: E402
from studio.session.session_model import SessionModel  # noqa: E402
from studio.settings_store import open_store  # noqa: E402

WARMUP_S = 3.0  # after the first frame: the engine and the graphs settle


def measure(seconds: float, size: int, hide_graphs: bool) -> dict:
    app = QApplication.instance() or QApplication([])
    tmp = Path(tempfile.mkdtemp(prefix="studio-cpu-"))
    link = EngineLink(EngineSupervisor(address=f"ipc://{tmp}/run/studio.sock"))
    model = SessionModel(link)
    window = MainWindow(model, open_store(str(tmp / "settings.ini")))
    window.show()
    if hide_graphs:
        window.graphs.parentWidget().hide()
    model.set_portrait(ROOT / "assets" / "portrait.png")
    model.sources.load_file_now(ROOT / "assets" / "speech.wav")
    model.sources.set_loop(True)
    model.autoplay_file = True
    link.start(EngineOptions(width=size, height=size))
    me = psutil.Process()
    marks: dict[str, tuple] = {}
    threads: dict[str, dict[str, float]] = {}

    def engine() -> psutil.Process | None:
        try:
            return psutil.Process(link.supervisor.pid) if link.supervisor.pid else None
        except psutil.NoSuchProcess:
            return None

    def mark(name: str) -> None:
        eng = engine()
        marks[name] = (time.monotonic(), time.thread_time(), sum(me.cpu_times()[:2]),
                       sum(eng.cpu_times()[:2]) if eng else 0.0, window.model.playout.schedule.shown)
        names = {t.native_id: t.name for t in threading.enumerate()}
        threads[name] = {names.get(t.id, f"native-{t.id}"): t.user_time + t.system_time for t in me.threads()}

    def wait_first_frame() -> None:
        if model.playout.schedule.shown >= 0:
            QTimer.singleShot(int(WARMUP_S * 1000), lambda: (mark("start"), QTimer.singleShot(
                int(seconds * 1000), lambda: (mark("end"), app.quit()))))
        else:
            QTimer.singleShot(100, wait_first_frame)

    QTimer.singleShot(100, wait_first_frame)
    QTimer.singleShot(int((seconds + WARMUP_S + 120) * 1000), app.quit)  # never hang
    app.exec()
    window.close()
    if "end" not in marks:
        raise SystemExit("measure_studio_cpu: no session frames within two minutes")
    (t0, ui0, p0, e0, f0), (t1, ui1, p1, e1, f1) = marks["start"], marks["end"]
    wall = t1 - t0
    return {"seconds": round(wall, 2), "size": size, "graphs_visible": not hide_graphs,
            "ui_thread_cpu_per_s": round((ui1 - ui0) / wall, 4),
            "studio_process_cpu_per_s": round((p1 - p0) / wall, 4),
            "engine_process_cpu_per_s": round((e1 - e0) / wall, 4),
            "frames_shown_per_s": round((f1 - f0) / wall, 2),
            "threads_cpu_per_s": {name: round(used / wall, 4) for name, used in (
                (k, v - threads["start"].get(k, 0.0)) for k, v in threads["end"].items()) if used > 0.002 * wall},
            "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--size", type=int, default=256, help="engine frame size (square)")
    p.add_argument("--hide-graphs", action="store_true", help="close the Latency dock first")
    args = p.parse_args()
    print(json.dumps(measure(args.seconds, args.size, args.hide_graphs)))


if __name__ == "__main__":
    main()

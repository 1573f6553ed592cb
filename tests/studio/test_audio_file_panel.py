"""The audio file in the real panel (offscreen): long files stream in bounded memory and give the
memory back when closed; a failed load clears the old file and says why in words; the position
slider jumps to a click; files dropped on the window load."""
from __future__ import annotations

import gc
import shutil
import subprocess

import psutil
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from studio.audio.streamed_file import DECODE_BLOCK_S

LONG_MINUTES = 20
RSS_TOLERANCE = 40 * 2**20  # a 20-minute file held whole would be 77 MB of float32 (150 MB while decoding)


def _wait_ready(studio, qtbot, path) -> None:
    qtbot.waitUntil(lambda: studio.model.sources.file.path == str(path)
                    and studio.model.sources.file.phase in ("ready", "failed"), timeout=20_000)


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    """20 minutes of a quiet tone (16 kHz mono, 38 MB), made by sox."""
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed (apt install sox)")
    path = tmp_path_factory.mktemp("long") / "long.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(path), "synth", f"{LONG_MINUTES * 60}",
                    "sine", "440", "vol", "0.05"], check=True, timeout=120)
    return path


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def test_a_long_file_streams_in_bounded_memory_and_gives_it_back(studio, qtbot, long_wav, short_speech):
    sources, panel = studio.model.sources, studio.audio
    sources.load_file(short_speech)  # a file to replace: its state must go at once
    _wait_ready(studio, qtbot, short_speech)
    before = _rss()
    sources.load_file(long_wav)
    assert panel.file_label.text() == "opening long.wav…" and not panel.opening.isHidden()
    assert not panel.play_button.isEnabled() and panel.position.text() == "0:00 / 0:00"
    _wait_ready(studio, qtbot, long_wav)
    assert sources.file.phase == "ready" and abs(sources.file.duration_s - LONG_MINUTES * 60) < 0.01
    assert panel.position.text() == f"0:00 / {LONG_MINUTES}:00" and panel.opening.isHidden()
    qtbot.mouseClick(panel.play_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: sources.current_status().file_playing and sources.current_status().file_position_s > 0.5,
                    timeout=10_000)
    sources.seek_file(LONG_MINUTES * 60 - 30)
    qtbot.waitUntil(lambda: sources.current_status().file_position_s > LONG_MINUTES * 60 - 29.5, timeout=10_000)
    streamed = sources.file_source.streamed
    assert streamed.peak_held <= streamed.limit + DECODE_BLOCK_S * 16000  # decoded ahead: a few seconds at most
    assert _rss() - before < RSS_TOLERANCE
    sources.close_file()
    assert panel.file_label.text() == "no file" and not panel.play_button.isEnabled()
    assert _rss() - before < RSS_TOLERANCE


def test_a_failed_load_clears_the_old_file_and_says_why_in_words(studio, qtbot, short_speech, tmp_path):
    sources, panel, problems = studio.model.sources, studio.audio, studio.model.problems
    sources.load_file(short_speech)
    _wait_ready(studio, qtbot, short_speech)
    assert panel.play_button.isEnabled() and panel.position.text() == "0:00 / 0:02"
    sources.play_file()
    assert sources.source == "file" and "the audio file" in panel.on_air.text()
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    sources.load_file(empty)
    _wait_ready(studio, qtbot, empty)
    assert sources.file.phase == "failed" and sources.file_path is None
    assert not panel.play_button.isEnabled() and panel.position.text() == "0:00 / 0:00"
    assert panel.file_label.text() == "✗ empty.wav cannot be played"
    assert "empty (0 bytes)" in panel.file_label.toolTip()
    assert sources.source == "" and "nothing" in panel.on_air.text()  # nothing of the file is on air
    assert problems.get("audio_file").text == "empty.wav is empty (0 bytes): choose another audio file."
    assert [card.problem.key for card in studio.problems.cards] == ["audio_file"]
    sources.play_file()  # Play has nothing left to play: the old file is gone
    assert not sources.current_status().file_playing
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    sources.load_file(garbage)
    _wait_ready(studio, qtbot, garbage)
    text = problems.get("audio_file").text
    assert "not an audio file, or it is damaged" in text and "Errno" not in text and "\n" not in text
    sources.load_file(short_speech)  # a good file solves the problem
    _wait_ready(studio, qtbot, short_speech)
    assert problems.get("audio_file") is None and studio.problems.isHidden()


def test_the_slider_jumps_to_a_click(studio, qtbot, short_speech):
    sources, panel = studio.model.sources, studio.audio
    panel.tabs.setCurrentIndex(1)
    sources.load_file(short_speech)
    _wait_ready(studio, qtbot, short_speech)
    slider = panel.seek
    sought = []
    panel.seek_requested.connect(sought.append)
    qtbot.mouseClick(slider, Qt.LeftButton, pos=QPoint(int(slider.width() * 0.8), slider.height() // 2))
    assert len(sought) == 1 and abs(sought[0] - 0.8 * sources.file.duration_s) < 0.15 * sources.file.duration_s
    qtbot.waitUntil(lambda: abs(sources.current_status().file_position_s - sought[0]) < 0.05, timeout=5_000)


def _drop(window, path) -> bool:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    where = QPointF(window.width() / 2, window.height() / 2)
    enter = QDragEnterEvent(where.toPoint(), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, enter)
    if not enter.isAccepted():
        return False
    QApplication.sendEvent(window, QDropEvent(where, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
    return True


def test_audio_files_and_portraits_dropped_on_the_window_are_used(studio, qtbot, short_speech, tmp_path):
    assert _drop(studio, short_speech)
    _wait_ready(studio, qtbot, short_speech)
    assert studio.model.sources.file.phase == "ready" and studio.audio.tabs.currentIndex() == 1
    notes = tmp_path / "notes.txt"
    notes.write_text("not media")
    assert not _drop(studio, notes)
    bad_image = tmp_path / "bad.png"
    bad_image.write_text("not a picture")
    assert _drop(studio, bad_image)
    qtbot.waitUntil(lambda: studio.portrait.verdict.text().startswith("✗"), timeout=5_000)

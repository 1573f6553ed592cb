"""One status, shown the same everywhere (preview overlay, summary, engine panel, Start button),
against a real puppet engine process; and what a refused portrait must leave alone."""
from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt

from studio.engine_link.options import EngineOptions

from .conftest import ASSETS
from .test_studio_session import ENGINE, start_live


def _everywhere(studio) -> set[str]:
    """The status as each part of the window words it."""
    return {studio.video.overlay, studio.summary.full_text, studio.engine.status.text(),
            studio.controls.start_button.toolTip().split(" · ", 1)[1]}


def test_stopping_says_stopped_everywhere_and_the_graphs_leave_a_gap(studio, qtbot, short_speech):
    model = start_live(studio, qtbot)
    model.sources.load_file_now(short_speech)
    model.sources.play_file()
    qtbot.waitUntil(lambda: len(model.playout.stats.frames) > 10, timeout=20_000)
    assert studio.video.overlay == "" and studio.controls.start_button.text() == "Stop"
    studio.actions["session"].trigger()  # Ctrl+Return
    qtbot.waitUntil(lambda: model.state == "stopped", timeout=10_000)
    qtbot.wait(600)  # a summary tick of the stopped playout must not bring the old numbers back
    assert _everywhere(studio) == {"stopped: press Start to run the engine"}
    assert studio.controls.start_button.text() == "Start" and studio.engine.start_button.isEnabled()
    rows_before = len(model.playout.stats.frames)
    qtbot.mouseClick(studio.controls.start_button, Qt.LeftButton)  # the same button starts it again
    qtbot.waitUntil(lambda: model.state == "running", timeout=30_000)
    assert studio.video.overlay == "" and studio.engine.status.text() == "running"
    qtbot.waitUntil(lambda: len(model.playout.stats.frames) > rows_before + 5, timeout=20_000)
    t, latency = model.playout.stats.frames.series("latency_s")
    gap = rows_before  # the row between the sessions: no value, so the line breaks there
    assert np.isnan(latency[gap]) and np.isfinite(latency[gap - 1]) and np.isfinite(latency[gap + 1])
    assert t[gap + 1] - t[gap - 1] > 0.5  # the time without an engine is not drawn over


def test_a_flashtalk_engine_without_its_model_fails_at_once_with_the_fix(studio, qtbot):
    model = studio.model
    studio.engine.set_options(EngineOptions(backend="flashtalk"))
    qtbot.mouseClick(studio.controls.start_button, Qt.LeftButton)
    assert model.state == "failed" and model.link.supervisor.pid == 0  # nothing was started to find out
    [text] = _everywhere(studio)
    assert text.startswith("failed: the flashtalk backend needs its model")
    problem = model.problems.get("engine")
    assert problem.commands == ("flashtalk models download ~/models",)
    assert [card.command_boxes[0].text() for card in studio.problems.cards] == list(problem.commands)
    assert studio.controls.start_button.text() == "Start" and not studio.engine.stop_button.isEnabled()
    studio.engine.set_options(ENGINE)  # the puppet: the failure and its problem go
    studio.toggle_engine()
    assert model.problems.get("engine") is None
    qtbot.waitUntil(lambda: model.state == "ready", timeout=30_000)
    assert _everywhere(studio) == {"ready: open a portrait to start"}


def test_a_refused_portrait_changes_nothing(studio, qtbot, tmp_path):
    """A live session goes on through a refused portrait: same frames flowing, same thumbnail,
    same recents; the refusal names the face size that counts in that picture."""
    model = start_live(studio, qtbot)
    thumbnail = studio.portrait.thumbnail.pixmap().cacheKey()
    recent = list(model.recent)
    states = []
    model.state_changed.connect(lambda status: states.append(status.state))
    stretched = tmp_path / "stretched.jpg"  # a 6000x4000 portrait stretched sideways: the face is 2000+ px
    Image.open(ASSETS / "portrait.png").convert("RGB").resize((6000, 4000)).save(stretched, quality=80)
    faceless = tmp_path / "wall.png"
    Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(faceless)
    for path, size_words in ((faceless, "in this 400x300 picture a face must be at least 40 pixels wide"),
                             (stretched, "in this 6000x4000 picture a face must be at least 300 pixels wide")):
        shown = studio.video.frame_index
        model.set_portrait(path)
        qtbot.waitUntil(lambda: studio.portrait.verdict.text().startswith("✗"), timeout=30_000)
        assert "no face found" in studio.portrait.verdict.text() and size_words in studio.portrait.verdict.text()
        qtbot.waitUntil(lambda shown=shown: studio.video.frame_index > shown + 10, timeout=10_000)  # still live
    assert states == [] and model.state == "running" and studio.video.overlay == ""
    assert studio.portrait.thumbnail.pixmap().cacheKey() == thumbnail and model.recent == recent
    assert model.portrait_path == str(ASSETS / "portrait.png")

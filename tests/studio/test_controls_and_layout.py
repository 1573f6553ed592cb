"""The window as a streamer uses it (offscreen, real widgets): visible Record and Virtual camera
buttons with REC / LIVE lamps, a folder for recordings, a question before quitting a recording,
problems with copyable fixes, a layout that fits 1280x720, menus, and the panels' details."""
from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from avkit.mp4_writer import probe_mp4
from studio.engine_link.options import EngineOptions
from studio.outputs.virtual_camera import LINUX_COMMANDS

from .fake_camera import FakeCameraBackend
from .test_studio_session import start_live

LAPTOP = (1280, 720)


def _question(window) -> QMessageBox | None:
    """The quit question on screen now (an answered one may linger until it is deleted)."""
    return next((box for box in window.findChildren(QMessageBox, "confirm-quit") if box.isVisible()), None)


def test_record_with_lamp_in_the_chosen_folder_and_a_question_before_quitting(studio, qtbot, tmp_path):
    model, controls = start_live(studio, qtbot), studio.controls
    folder = tmp_path / "my recordings"
    studio.set_recordings_folder(str(folder))
    qtbot.mouseClick(controls.record_button, Qt.LeftButton)
    assert model.outputs.recording and controls.record_button.isChecked() and studio.actions["record"].isChecked()
    assert model.outputs.recorder.path.parent == folder
    qtbot.waitUntil(lambda: controls.rec_lamp.isVisible() and controls.rec_lamp.text() == "● REC 0:02", timeout=5_000)
    studio.close()  # Alt+F4 / Ctrl+Q while recording: a question, not a quit
    qtbot.waitUntil(lambda: _question(studio) is not None, timeout=2_000)
    assert studio.isVisible() and model.outputs.recording
    box = _question(studio)
    assert "A recording is running" in box.text() and str(model.outputs.recorder.path) in box.text()
    next(b for b in box.buttons() if b.text() == "Keep recording").click()
    assert studio.isVisible() and model.outputs.recording
    recorder = model.outputs.recorder
    studio.actions["quit"].trigger()
    qtbot.waitUntil(lambda: _question(studio) is not None, timeout=2_000)
    next(b for b in _question(studio).buttons() if b.text() == "Stop recording and quit").click()
    qtbot.waitUntil(lambda: not studio.isVisible(), timeout=10_000)
    recorder.wait(30)
    assert recorder.error == "" and probe_mp4(recorder.path).video_frames > 25  # finished safely, as before


def test_virtual_camera_button_lamp_and_a_problem_with_copyable_commands(studio, qtbot):
    controls, outputs, model = studio.controls, studio.model.outputs, studio.model
    for key, value in (("backend", "fake"), ("width", 160), ("height", 120)):
        studio.store.setValue(f"virtual_camera/{key}", value)
    qtbot.mouseClick(controls.camera_button, Qt.LeftButton)
    assert outputs.camera_on and controls.camera_button.isChecked() and controls.live_lamp.isVisible()
    assert controls.live_lamp.text() == "● LIVE 0:00" and FakeCameraBackend.instances[-1].width == 160
    qtbot.mouseClick(controls.camera_button, Qt.LeftButton)
    assert not outputs.camera_on and not controls.camera_button.isChecked() and not controls.live_lamp.isVisible()
    studio.store.setValue("virtual_camera/backend", "v4l2loopback")  # this machine has no such device
    qtbot.mouseClick(controls.camera_button, Qt.LeftButton)
    assert not outputs.camera_on and not controls.camera_button.isChecked()
    [card] = studio.problems.cards
    assert studio.problems.isVisible() and "no virtual camera on this computer" in card.text.text()
    for internal in ("pyvirtualcam", "backend", "v4l2 loopback device"):  # the device layer's words stay in the tooltip
        assert internal not in card.text.text() + card.fix.text()
    assert [box.text() for box in card.command_boxes] == list(LINUX_COMMANDS)
    qtbot.mouseClick(card.copy_buttons[1], Qt.LeftButton)
    assert QApplication.clipboard().text() == 'sudo modprobe v4l2loopback exclusive_caps=1 card_label="FlashTalk"'
    studio.store.setValue("virtual_camera/backend", "fake")  # a camera that opens solves the problem
    qtbot.mouseClick(controls.camera_button, Qt.LeftButton)
    assert outputs.camera_on and model.problems.get("virtual_camera") is None and studio.problems.isHidden()
    qtbot.mouseClick(controls.camera_button, Qt.LeftButton)


def _graphs_whole_and_readable(graphs) -> None:
    """Every plot shows its whole time axis (0 = now at its right edge, inside its view), room for a
    curve, and its legend below it uncovered."""
    for plot in graphs._plots:
        view, item = plot.widget, plot.widget.getPlotItem()
        assert item.sceneBoundingRect().width() <= view.viewport().width() + 1, plot.spec.title
        now = item.getViewBox().mapViewToScene(QPointF(0.0, 0.0))
        assert 0 < now.x() <= view.viewport().width() + 1, plot.spec.title
        assert item.getViewBox().sceneBoundingRect().height() >= 50, plot.spec.title
        assert plot.legend.geometry().top() >= view.geometry().bottom(), plot.spec.title
        assert plot.legend.height() >= plot.legend.heightForWidth(plot.legend.width()), plot.spec.title
        assert plot.title.toolTip() == plot.spec.title  # cut with "…" where narrow, whole in the tooltip


def test_the_window_fits_a_laptop_screen_with_everything_usable(studio, qtbot):
    hint = studio.minimumSizeHint()
    assert hint.width() <= LAPTOP[0] and hint.height() <= LAPTOP[1], hint
    studio.resize(*LAPTOP)
    qtbot.waitUntil(lambda: (studio.width(), studio.height()) == LAPTOP, timeout=2_000)
    qtbot.wait(50)
    controls, audio, engine = studio.controls, studio.audio, studio.engine
    audio.tabs.setCurrentIndex(0)
    qtbot.wait(50)
    for widget in (controls.start_button, controls.record_button, controls.camera_button, audio.mic_button,
                   audio.mute, audio.refresh_devices, engine.start_button, studio.portrait.open_button):
        assert widget.isVisible() and widget.visibleRegion().boundingRect().size() == widget.size(), widget
        least = widget.minimumSizeHint()
        assert widget.width() >= least.width() and widget.height() >= least.height()
    assert studio.graphs.height() >= 200 and studio.graphs.width() >= 500  # readable, under the preview
    assert studio.video.height() >= 240
    _graphs_whole_and_readable(studio.graphs)
    for key, value in (("backend", "fake"), ("width", 160), ("height", 120)):
        studio.store.setValue(f"virtual_camera/{key}", value)
    studio.engine.set_options(EngineOptions(backend="flashtalk"))
    studio.toggle_engine()  # the longest status there is, and a problem card
    studio.toggle_virtual_camera()
    studio.toggle_recording()  # both lamps lit: the window must not grow past the screen
    qtbot.waitUntil(lambda: controls.rec_lamp.isVisible() and controls.live_lamp.isVisible(), timeout=2_000)
    qtbot.wait(50)
    assert (studio.width(), studio.height()) == LAPTOP and studio.minimumSizeHint().width() <= LAPTOP[0]
    assert engine.isVisible() and engine.visibleRegion().boundingRect().size() == engine.size()
    studio.toggle_recording()
    studio.toggle_virtual_camera()
    # crowded: two problems (the newest on top, older ones scroll) and the live row's warning
    studio.store.setValue("virtual_camera/backend", "v4l2loopback")  # this machine has no such device
    studio.toggle_virtual_camera()
    studio.live_status.show_refusal("quality 'best' is not offered by this engine")
    qtbot.waitUntil(lambda: studio.live_status.warning.isVisible(), timeout=2_000)
    qtbot.wait(50)
    assert [card.problem.key for card in studio.problems.cards] == ["virtual_camera", "engine"]
    assert (studio.width(), studio.height()) == LAPTOP and studio.minimumSizeHint().height() <= LAPTOP[1]
    first = studio.problems.cards[0]
    assert first.visibleRegion().boundingRect().size() == first.size()  # the newest is whole, in view
    assert studio.problems.scroll.verticalScrollBar().maximum() > 0  # the older one is a scroll away
    assert studio.video.height() >= 144 and studio.controls.start_button.isVisible()
    _graphs_whole_and_readable(studio.graphs)
    graphs_dock = studio.docks["graphs"]
    toggle = graphs_dock.toggleViewAction()
    assert toggle in next(a.menu() for a in studio.menuBar().actions() if a.text() == "&View").actions()
    video_before = studio.video.height()
    toggle.trigger()  # a panel collapses, and the preview takes its room
    qtbot.waitUntil(lambda: not graphs_dock.isVisible(), timeout=2_000)
    qtbot.waitUntil(lambda: studio.video.height() >= video_before + 200, timeout=2_000)
    toggle.trigger()


def test_menus_quit_and_about(studio, qtbot):
    titles = [a.text() for a in studio.menuBar().actions()]
    assert titles == ["&File", "&Session", "&View", "&Help"]
    assert studio.actions["quit"].shortcut().toString() == "Ctrl+Q"
    help_menu = next(a.menu() for a in studio.menuBar().actions() if a.text() == "&Help")
    about = next(a for a in help_menu.actions() if a.text() == "&About FlashTalk Studio")
    about.trigger()
    box = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible())
    assert "FlashTalk Studio" in box.text() and box.windowTitle() == "About FlashTalk Studio"
    box.close()
    studio.actions["quit"].trigger()  # nothing recording: Ctrl+Q quits
    qtbot.waitUntil(lambda: not studio.isVisible(), timeout=5_000)


def test_puppet_hides_what_does_not_apply_to_it(studio):
    engine = studio.engine
    engine.backend.setCurrentText("puppet")
    assert [engine.form.isRowVisible(row) for row in (engine._model_row, engine.gpus, engine.steps)] == [False] * 3
    assert engine.form.isRowVisible(engine.resolution)
    engine.backend.setCurrentText("flashtalk")
    assert [engine.form.isRowVisible(row) for row in (engine._model_row, engine.gpus, engine.steps)] == [True] * 3


def test_text_to_speech_offers_the_installed_voices_and_stops(studio, qtbot):
    audio, sources = studio.audio, studio.model.sources
    if not sources.speech_available:
        assert "espeak-ng" in audio.speech_status.text()
        return
    qtbot.waitUntil(lambda: audio.voice.count() > 10, timeout=15_000)  # listed off the UI thread
    assert audio.voice.findData("en-us") >= 0 and audio.voice.itemText(audio.voice.findData("en-us")) == \
        "English (America) · en-us"
    german = audio.voice.findData("de")
    audio.voice.setCurrentIndex(german)
    audio.voice.activated.emit(german)
    assert sources.voice == "de"
    audio.tabs.setCurrentIndex(2)
    audio.text.setText("Guten Tag, dies ist ein langer Satz, der eine Weile dauert, bevor er zu Ende ist.")
    qtbot.mouseClick(audio.speak_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: audio.stop_speech_button.isEnabled(), timeout=15_000)
    assert sources.source == "speech" and audio.on_air.text() == "On air: <b>text to speech</b>"
    qtbot.mouseClick(audio.stop_speech_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not audio.stop_speech_button.isEnabled(), timeout=2_000)
    assert not sources.current_status().speaking

"""What the window shows of the live contract, offscreen with a real puppet engine: the live row
(quality choice, target, latency, real-time factor, profile, skipped seconds), and the graphs
(fixed units, labelled axes, legends outside the plots, at most REDRAW_HZ and only while seen)."""
from __future__ import annotations

import math
import time

import numpy as np

from engine.protocol.messages import settings_to_dict
from studio.engine_link.options import QUALITY_FIXED, LiveChoice
from studio.live_latency import engine_facts
from studio.settings_store import load_settings, open_store
from studio.widgets.latency_graphs import PLOTS, REDRAW_HZ
from studio.widgets.live_status import TARGET_SETTLE_MS

from .test_studio_session import start_live


def test_the_live_choice_is_made_in_the_row_and_kept_for_the_next_run(studio, qtbot, tmp_path):
    row, model = studio.live_status, studio.model
    labels = [row.quality.itemText(i) for i in range(row.quality.count())]
    assert labels == ["Keep up (auto)", "Quality first"] and model.live == LiveChoice()
    row.quality.setCurrentIndex(row.quality.findData(QUALITY_FIXED))
    row.quality.activated.emit(row.quality.currentIndex())
    row.target.setValue(1.5)
    qtbot.waitUntil(lambda: model.live.target_latency_s == 1.5, timeout=TARGET_SETTLE_MS + 5_000)
    assert model.live == LiveChoice(QUALITY_FIXED, 1.5)
    sent = settings_to_dict(model.link.options.session_settings("live", model.live))
    assert sent["quality"] == QUALITY_FIXED and sent["target_latency_s"] == 1.5
    studio.save()
    assert load_settings(open_store(str(tmp_path / "settings.ini"))).live == LiveChoice(QUALITY_FIXED, 1.5)
    # the engine's defaults are not sent at all (an engine from before the contract refuses what it does not know)
    sent = settings_to_dict(model.link.options.session_settings("live", LiveChoice()))
    assert "quality" not in sent and "target_latency_s" not in sent


def test_the_live_row_shows_the_sessions_numbers(studio, qtbot, short_speech):
    opened = []
    studio.model.link.session_opened.connect(opened.append)
    model = start_live(studio, qtbot)
    facts = engine_facts(opened[-1])
    model.sources.load_file_now(short_speech)
    model.sources.play_file()
    target = model.playout.latency.target_s
    row = studio.live_status.numbers  # the whole line (cut with "…" where the row is narrow)
    qtbot.waitUntil(lambda: "latency —" not in row.full_text and "factor —" not in row.full_text, timeout=20_000)
    text = row.full_text
    assert f"target {target:.2f} s" in text
    assert f"profile {facts['profile'] or '—'}" in text  # "—": an engine that does not say
    latency = float(text.split("latency ")[1].split(" s")[0])
    assert 0 < latency < target + 0.5
    assert not studio.live_status.warning.isVisible()  # the puppet keeps up


def test_graphs_have_fixed_units_legends_outside_and_draw_only_when_seen(studio, qtbot, short_speech):
    graphs = studio.graphs
    for plot, spec in zip(graphs._plots, PLOTS):
        axis = plot.widget.getPlotItem().getAxis("left")
        assert axis.labelText == spec.unit and not axis.autoSIPrefix  # one unit, never rescaled
        assert plot.legend.parent() is not plot.widget and plot.legend.wordWrap()  # below the plot, wraps
        assert all(line.name in plot.legend.text() for line in spec.lines)  # every entry, none cut off
    bottom = [p.widget.getPlotItem().getAxis("bottom").labelText for p in graphs._plots]
    assert bottom == [""] * 3 + ["time (s, 0 = now)"] * 3  # the bottom row says what the time axis is
    model = start_live(studio, qtbot)
    model.sources.load_file_now(short_speech)
    model.sources.set_loop(True)
    model.sources.play_file()
    qtbot.waitUntil(lambda: graphs.redraws >= 2, timeout=20_000)
    start, t0 = graphs.redraws, time.monotonic()
    qtbot.wait(2000)
    assert graphs.redraws - start <= REDRAW_HZ * (time.monotonic() - t0) + 1  # bounded rate
    xs, ys = graphs.curve("frames", "target_s").getData()  # the target, as a line beside the latency
    assert xs is not None and np.allclose(ys[np.isfinite(ys)], model.playout.latency.target_s)
    assert (xs <= 0).all() and (xs >= -60).all()  # seconds before now
    dock = graphs.parentWidget()
    dock.hide()
    hidden = graphs.redraws
    frames = len(model.playout.stats.frames)
    qtbot.waitUntil(lambda: len(model.playout.stats.frames) > frames + 25, timeout=20_000)
    assert graphs.redraws == hidden  # nothing is drawn while the graphs cannot be seen
    dock.show()
    qtbot.waitUntil(lambda: graphs.redraws > hidden, timeout=5_000)
    assert math.isfinite(model.playout.stats.latency_s)

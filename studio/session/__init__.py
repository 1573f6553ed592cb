"""The studio's session models, one per job, free of widgets: audio sources (what speaks), the
engine link (studio.engine_link), playout (when each frame is shown) and outputs (virtual camera,
recorder); `SessionModel` owns them and wires one to the next.

They live on the UI thread and speak Qt signals (QtCore only: signals carry results across
threads and the playout tick needs a precise timer). Widgets observe them; tests drive them.
"""

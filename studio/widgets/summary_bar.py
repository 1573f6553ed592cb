"""The always-visible one-line summary ("28 fps · 1.9 s behind live · 0 drops"), or the status
while no session plays. One line always: a long failure reason is cut with "…" (the whole of it
is in the tooltip, the preview and the engine panel) rather than widen the window."""
from __future__ import annotations

from studio.widgets.elided_label import ElidedLabel


class SummaryBar(ElidedLabel):
    def __init__(self, parent=None):
        super().__init__("", parent)
        font = self.font()
        font.setPointSize(font.pointSize() + 2)
        font.setBold(True)
        self.setFont(font)
        self.setContentsMargins(8, 4, 8, 4)
        self.setObjectName("summary")
        self.show_summary("stopped")

    def show_summary(self, text: str) -> None:
        self.set_full_text(text)

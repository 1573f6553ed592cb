"""FlashTalk Studio: the PySide6 desktop application (no torch; talks to the engine over its socket)."""

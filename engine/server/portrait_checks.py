"""Portrait checks (`check_portrait`): a new picture is tried before it replaces a working one.

The studio asks before it opens a session on a new portrait, so a refused picture changes nothing:
the live session goes on. Decoding and face finding take a second of CPU, so they run on their own
thread; answers go out in request order, and a client asking faster than they are done is told busy.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from avkit.portrait_image import PortraitImageError, load_portrait
from engine.backends.base import Backend, BackendError
from engine.protocol.messages import CheckPortrait, PortraitChecked
from engine.server.transport import Transport


class PortraitChecks:
    def __init__(self, backend: Backend, transport: Transport, max_pending: int):
        self.backend, self.transport, self.max_pending = backend, transport, max_pending
        self._checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portrait-check")
        self._pending: list[tuple[bytes, Future]] = []  # (peer, answer), in request order

    def submit(self, ident: bytes, msg: CheckPortrait) -> None:
        if len(self._pending) >= self.max_pending:
            self.transport.send(ident, PortraitChecked(request=msg.request, code="busy", message=(
                "too many portraits are being checked at once: try again in a moment")))
            return
        self._pending.append((ident, self._checker.submit(_checked, self.backend, msg.portrait, msg.request)))

    def answer(self) -> None:
        """Send the answers that are ready, oldest first (called by the server loop)."""
        while self._pending and self._pending[0][1].done():
            ident, answer = self._pending.pop(0)
            self.transport.send(ident, answer.result())

    def close(self) -> None:
        """Wait for a check in progress: it must be out of the backend before the backend is closed."""
        self._checker.shutdown(wait=True, cancel_futures=True)


def _checked(backend: Backend, data: bytes, request: int) -> PortraitChecked:
    """The answer to one check (checker thread): decode, then ask the backend."""
    try:
        portrait = load_portrait(data)
        box = backend.check_portrait(portrait)
    except (PortraitImageError, BackendError) as exc:
        code = exc.code if isinstance(exc, BackendError) else "bad_portrait"
        return PortraitChecked(request=request, code=code, message=str(exc))
    height, width = portrait.shape[:2]
    return PortraitChecked(request=request, ok=True, width=width, height=height, face_box=list(box or ()))

"""What goes wrong in the runtime that a person can act on; str() is one line that says what to change.

The runtime lies below the backends, so it has its own error types; the flashtalk backend adapter
turns each into the backend error of the same meaning (and wire code).
"""
from __future__ import annotations


class FlashTalkError(RuntimeError):
    """A runtime failure with a one-line cause and remedy."""


class FlashTalkUnavailable(FlashTalkError):
    """The engine cannot run as asked here: weights, precision, kernel, ranks."""


class FlashTalkOutOfMemory(FlashTalkError):
    """The device (or the host) ran out of memory; the message says what to lower."""

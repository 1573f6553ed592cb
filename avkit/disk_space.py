"""One clear error for "this folder cannot take the file", however the OS says it.

ENOSPC (disk full), EDQUOT (quota exceeded) and EFBIG (the file system's or the process's file
size limit) mean the same thing to a person: free space or write somewhere else. Writers turn
them into `DiskFullError`, whose str() is that one line, so every caller reports it the same way.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

DISK_FULL_ERRNOS = frozenset(code for code in (getattr(errno, name, None) for name in
                                                ("ENOSPC", "EDQUOT", "EFBIG")) if code is not None)


class DiskFullError(OSError):
    """Writing `filename` failed for lack of room; str() is one line that says what to do."""

    def __init__(self, code: int, path: str | Path):
        super().__init__(code, os.strerror(code), str(path))

    def __str__(self) -> str:
        return (f"the disk is full: cannot write {self.filename} ({self.strerror}); free some disk "
                "space or choose another folder")


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError (PyAV's included) that means "no room for this file"."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS

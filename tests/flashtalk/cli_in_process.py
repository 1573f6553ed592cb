"""`flashtalk ARGV` run by the CLI's own `main` inside the test process (no new interpreter)."""
from __future__ import annotations

import subprocess
import warnings

# What a fresh `python -m engine` shows of Python's warnings (the interpreter's default filters).
DEFAULT_WARNING_FILTERS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def flashtalk_in_process(capfd, *argv: str) -> subprocess.CompletedProcess:
    """`flashtalk ARGV` through the CLI's own `main` in this process: its exit code, and its stdout
    and stderr (file descriptors 1 and 2, plus the warnings a fresh interpreter would print). The
    same code path as `python -m engine ARGV` without the seconds of importing torch again; each
    test module still runs the real process at least once."""
    from engine.cli import main
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in DEFAULT_WARNING_FILTERS:
            warnings.filterwarnings("ignore", category=category)
        code = main(list(argv))
    out, err = capfd.readouterr()
    err += "".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n" for w in caught)
    return subprocess.CompletedProcess(["flashtalk", *argv], code, out, err)

"""A folder that keeps torch.compile's artifacts between engine starts.

Inductor's FX-graph cache and AOTAutograd cache live in TORCHINDUCTOR_CACHE_DIR; torch puts it
under /tmp by default, which a reboot or a fresh container empties. The engine points it at a
folder of its own (FLASHTALK_COMPILE_CACHE, else ~/.cache/flashtalk/torch-compile) before the
first graph is built, so a restarted engine loads its kernels instead of compiling them again;
the counters say, after warm-up, how many graphs came from the cache.
"""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "FLASHTALK_COMPILE_CACHE"
INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"


def compile_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "flashtalk" / "torch-compile"


def use_compile_cache() -> Path:
    """Point inductor at the engine's cache folder (an explicit TORCHINDUCTOR_CACHE_DIR wins)."""
    folder = Path(os.environ.get(INDUCTOR_ENV) or compile_cache_dir())
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[INDUCTOR_ENV] = str(folder)
    return folder


def cache_report() -> str:
    """'N graphs from the cache, M compiled' since the process started."""
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    hits, misses = inductor["fxgraph_cache_hit"], inductor["fxgraph_cache_miss"]
    return f"{hits} compiled graphs loaded from {os.environ.get(INDUCTOR_ENV)}, {misses} compiled anew"

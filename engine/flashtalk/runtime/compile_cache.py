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


def cache_counts() -> dict:
    """Compiled graphs since the process started: loaded from the cache folder, or compiled anew
    (inductor's FX-graph cache and the AOTAutograd cache in front of it)."""
    from torch._dynamo.utils import counters

    inductor, aot = counters["inductor"], counters["aot_autograd"]
    return {"compile_cache_dir": os.environ.get(INDUCTOR_ENV),
            "fx_graphs_loaded": inductor["fxgraph_cache_hit"], "fx_graphs_compiled": inductor["fxgraph_cache_miss"],
            "aot_graphs_loaded": aot["autograd_cache_hit"], "aot_graphs_compiled": aot["autograd_cache_miss"]}


def cache_report() -> str:
    """'N graphs from the cache, M compiled' since the process started."""
    c = cache_counts()
    return (f"{c['fx_graphs_loaded']} compiled graphs loaded from {c['compile_cache_dir']}, "
            f"{c['fx_graphs_compiled']} compiled anew")

"""FlashTalk engine: the background process that turns a portrait + audio into video frames."""
import os

# OpenMP's workers (torch on the CPU) spin while they wait for work by default. On a machine whose
# cores are busy with other programs they then burn the time slices the work itself needs: a tiny
# flashtalk chunk took 2.3-2.9 s instead of 0.6-1.0 s beside two CPU hogs on 2 cores, and the same
# on an idle machine (docs/perf-notes.md, 2026-12-02). OpenMP reads this once, when torch loads,
# so it is set here, before anything of the engine imports torch; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

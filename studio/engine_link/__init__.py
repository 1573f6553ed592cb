"""The studio's link to the engine: what to start (options), the child process (supervisor), the
socket on its own thread (worker) and the one handle the session uses (link).

It reports through Qt signals and knows nothing of playout, outputs or widgets (import-linter
keeps it so): a decoded chunk leaves it as a `ReceivedChunk`.
"""

"""Training of the FlashTalk DiT: data cache, Stage 1 flow matching, Stage 2 self-correcting DMD.

Import contract (pyproject.toml): this package uses the model, weights, parallel and pipeline
code of engine.flashtalk and never the server, session, backends, CLI or studio. It reuses the
inference DiT and the streaming sampler's step math; it holds no second copy of either.
"""

"""The FlashTalk diffusion backend: model (DiT, VAE, encoders), weights, pipeline, parallel."""

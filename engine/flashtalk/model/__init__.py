"""FlashTalk networks: the DiT (dit.py), its attention/RoPE/audio parts, and the encoders/VAE."""

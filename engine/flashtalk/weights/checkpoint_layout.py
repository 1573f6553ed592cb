"""The official checkpoint folders, named once: every folder and file name, and where wav2vec2 lives.

`SoulX-FlashTalk-14B/` holds the DiT (config.json + diffusers safetensors shards and their index),
the umT5 encoder, the CLIP model and the Wan VAE as `.pth` files, and two tokenizer folders;
`chinese-wav2vec2-base/` is a Hugging Face wav2vec2 folder, by default beside the model folder
(FLASHTALK_MODEL.md section 2). Plain names, no torch: the doctor reads them on a bare install.
Checking the folders' contents is checkpoint_validation's.
"""
from __future__ import annotations

from pathlib import Path

MODEL_FOLDER = "SoulX-FlashTalk-14B"
WAV2VEC_FOLDER = "chinese-wav2vec2-base"
MODEL_REPO = "Soul-AILab/SoulX-FlashTalk-14B"  # Hugging Face repositories of the two folders
WAV2VEC_REPO = "TencentGameMate/chinese-wav2vec2-base"

# -- inside the model folder ----------------------------------------------------------------------
DIT_CONFIG = "config.json"
DIT_INDEX = "diffusion_pytorch_model.safetensors.index.json"
DIT_SINGLE_FILE = "diffusion_pytorch_model.safetensors"
DIT_WEIGHTS_GLOB = "diffusion_pytorch_model*.safetensors"  # the shards, or the single file
T5_CHECKPOINT = "models_t5_umt5-xxl-enc-bf16.pth"
T5_TOKENIZER = "google/umt5-xxl"
CLIP_CHECKPOINT = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
CLIP_TOKENIZER = "xlm-roberta-large"
VAE_CHECKPOINT = "Wan2.1_VAE.pth"

# -- inside the wav2vec2 folder -------------------------------------------------------------------
WAV2VEC_CONFIG = "config.json"
WAV2VEC_PREPROCESSOR = "preprocessor_config.json"
WAV2VEC_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def dit_shard_name(index: int, count: int) -> str:
    """diffusers' shard file name, 1-based: diffusion_pytorch_model-00001-of-00002.safetensors."""
    return f"diffusion_pytorch_model-{index:05d}-of-{count:05d}.safetensors"


def wav2vec_dir_for(model_dir: Path, wav2vec_dir: Path | None = None) -> Path:
    """The wav2vec2 folder to load: the one given, else the one beside the model folder."""
    return Path(wav2vec_dir) if wav2vec_dir is not None else Path(model_dir).parent / WAV2VEC_FOLDER

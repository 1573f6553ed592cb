"""How one FlashTalk engine uses its GPU: the memory plan and the offload mechanics that carry it out."""

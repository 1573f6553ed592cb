"""FlashTalk engine: the background process that turns a portrait + audio into video frames."""

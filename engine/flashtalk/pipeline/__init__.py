"""The streaming FlashTalk pipeline: session prepare, then chunk after chunk."""

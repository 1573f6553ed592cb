"""The FlashTalk engine as it runs: models assembled from the engine's options, on one rank or led over several."""

"""The FlashTalk engine as it runs: models assembled from the engine's options and placed by its
memory plan (offload included), on one rank or led over several."""

"""The training engine: one run as a recipe (setup, epochs, evaluation, early stopping), its
resumable state, and where its progress and logs go."""

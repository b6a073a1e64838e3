"""The training engine: one run as a recipe as a recipe, progress and logs."""

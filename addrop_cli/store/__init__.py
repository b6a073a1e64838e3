"""The results store: the typed on-disk contract, run folders, atomic writes and locks."""

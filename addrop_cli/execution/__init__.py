"""Running many runs: local and pool back-ends, Slurm, sweeps, status, prediction files."""

"""Who carries out runs: what a back-end is to its callers (``base``), in this process or a process
pool (``local``), Slurm jobs (``slurm``), and how many runs share a GPU (``placement``)."""

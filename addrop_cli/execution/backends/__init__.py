"""Who carries out runs: in this process or a process pool (``local``), Slurm jobs (``slurm``), and
how many runs share a GPU (``placement``)."""

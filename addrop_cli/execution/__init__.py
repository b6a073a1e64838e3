"""Running many runs, one sub-package per job (top to bottom; each imports only those below it):

- ``inspection``: what a results folder holds and what its runs predict (status, predict,
  export to trackers);
- ``sweep``: the ``addrop sweep`` entry point (this folder's one module);
- ``sweeps``: a sweep's plan, its search (Optuna studies) and its selection;
- ``planning``: ``addrop run``: the preflight, the run matrix, the store opened, a back-end chosen;
- ``backends``: who carries out runs (serial, a process pool, Slurm) and where they are placed;
- ``attempt``: one attempt at one run and who follows it (the store, display, train.log);
- ``trackers``: the experiment trackers a run reports to.
"""

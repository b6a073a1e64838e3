"""One attempt at one run, the same in this process, a pool worker or a Slurm job: the run context
(``context``), who follows the attempt (``watch``) and the progress displays (``display``)."""

"""`addrop` that SIGKILLs itself mid-epoch: a launcher for the resume-identity tests only.

``ADDROP_KILL_AT=<variant>:<step>`` sends SIGKILL to this process right after optimiser step
``<step>`` of the first fresh (not resumed) run of ``<variant>``: a real kill, at a point the
test chooses (inside an epoch, between two training-state writes), so the resumed run has to
redo the steps after the last state. Nothing else changes: the code under test is the real CLI.
"""

from __future__ import annotations

import os
import signal
import sys

if __name__ == "__main__":
    from addrop_cli.engine import loop

    variant, step = os.environ["ADDROP_KILL_AT"].split(":")
    original_step, original_load = loop.RunLoop._optimizer_step, loop.RunLoop.load_state_dict

    def load_state_dict(run_loop: loop.RunLoop, payload: dict) -> None:
        run_loop.resumed = True  # type: ignore[attr-defined]
        original_load(run_loop, payload)

    def optimizer_step(self: loop.RunLoop) -> None:
        original_step(self)
        fresh = not getattr(self, "resumed", False)
        if fresh and self.s.run.variant == variant and self.state.global_step == int(step):
            os.kill(os.getpid(), signal.SIGKILL)

    loop.RunLoop.load_state_dict = load_state_dict  # type: ignore[method-assign]
    loop.RunLoop._optimizer_step = optimizer_step  # type: ignore[method-assign]
    from addrop_cli.cli import main

    sys.argv[0] = "addrop"
    main()

"""``train.compile``: torch.compile for the model, with the AD-DROP attention hook still exact.

Regional compilation: each encoder layer's dense blocks (attention output projection, feed-
forward, their norms and residuals) are compiled, one graph per block type shared by every
layer; attention itself runs eagerly through the hook as ever. The hook decides per layer and
per pass (record, mask, replace) with Python state a compiled graph would guard on and recompile
for, and AD-DROP takes gradients with respect to the attention probabilities, which must stay
tensors of the eager autograd graph. Compiling the whole model instead was tried: the same
results, but graph breaks at every attention call and recompilations past torch's limit.
"""

from __future__ import annotations

import re
import shutil

import torch
from transformers import PreTrainedModel

from addrop_cli.models.families import family_of

_DENSE_BLOCK = re.compile(r"encoder\.layer\.\d+\.(intermediate|output|attention\.output)$")
_BLOCKS_PER_LAYER = 3


def dense_blocks(model: PreTrainedModel) -> list[torch.nn.Module]:
    """Every encoder layer's attention-output, intermediate and output modules."""
    return [m for name, m in model.named_modules() if _DENSE_BLOCK.search(name)]


def compile_problem(model: PreTrainedModel, device: torch.device) -> str | None:
    """Why ``model`` cannot be compiled on ``device``, as one line; None when it can."""
    model_type = model.config.model_type
    family = family_of(model_type)
    if family is None or not family.compilable:
        return (
            f"train.compile: {model_type} models cannot be compiled by addrop; running uncompiled"
        )
    if len(dense_blocks(model)) != _BLOCKS_PER_LAYER * model.config.num_hidden_layers:
        return (
            f"train.compile: this {model_type} model is laid out differently than addrop expects; "
            "running uncompiled"
        )
    if device.type == "mps":
        return "train.compile: torch.compile does not train on Apple MPS; running uncompiled"
    if device.type == "cpu" and not (shutil.which("g++") or shutil.which("c++")):
        return (
            "train.compile: torch.compile needs a C++ compiler (g++) on CPU and none was "
            "found; running uncompiled"
        )
    return None


def compile_model(
    model: PreTrainedModel, device: torch.device, backend: str = "inductor"
) -> str | None:
    """Compile ``model``'s dense blocks in place (same modules, same state dict); returns a
    note when it could not be compiled, and the model then runs as it was.

    ``backend`` other than inductor is for tests (``aot_eager`` checks the graph capture and
    autograd without generating code).
    """
    problem = compile_problem(model, device)
    if problem:
        return problem
    import torch._inductor.config

    # dropout in compiled code draws eager's random numbers, so a compiled run keeps the seeded
    # run's dropout masks (inductor's own generator would draw others)
    torch._inductor.config.fallback_random = True
    for block in dense_blocks(model):
        block.compile(backend=backend, dynamic=True)
    return None

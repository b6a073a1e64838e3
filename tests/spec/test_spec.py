"""The experiment spec: loading, overrides, validation errors, expansion and run ids."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from addrop_cli.errors import SpecError
from addrop_cli.methods.config import AddropParams
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml")) + sorted(
    (ROOT / "experiments" / "paper").glob("*.yaml")
)

MINIMAL = """\
name: t
model: {name_or_path: assets/tiny-bert, pretrained: false}
tasks: [sst2]
seeds: [1, 2]
methods:
  baseline: {}
  addrop: {p: 0.5, q: 0.4}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides)
    return info.value.problems


@pytest.mark.parametrize(
    "path", EXPERIMENTS, ids=[str(p.relative_to(ROOT / "experiments")) for p in EXPERIMENTS]
)
def test_every_committed_experiment_validates(path: Path) -> None:
    spec = load_spec(path)
    runs = expand(spec, path.parent)
    points = math.prod(len(values) for values in spec.factors.values())  # 1 without factors
    assert len(runs) == len(spec.tasks) * len(spec.methods) * points * len(spec.seeds)


PAPER_EPOCHS = {"cola": 50, "mrpc": 50, "rte": 50, "stsb": 50, "sst2": 20}
"""The authors' epoch caps (docs/algorithm.md); MNLI, QNLI and QQP: 10 with patience 3."""


@pytest.mark.parametrize("task", ["cola", "mrpc", "rte", "stsb", "sst2", "mnli", "qnli", "qqp"])
def test_paper_recipes_mirror_the_authors_scripts(task: str) -> None:
    spec = load_spec(ROOT / "experiments" / "paper" / f"{task}.yaml")
    assert spec.tasks == [task] and spec.seeds == [42]
    train = spec.train
    assert (train.lr, train.batch_size, train.schedule, train.weight_decay) == (
        1e-5,
        16,
        "constant",
        0.01,
    )
    assert train.epochs == PAPER_EPOCHS.get(task, 10)
    assert train.patience == (5 if task in PAPER_EPOCHS else 3)
    addrop = spec.methods["addrop"]
    assert isinstance(addrop, AddropParams) and addrop.cross_tuning
    assert addrop.layers == ("all" if task in ("cola", "mrpc", "rte") else [0])
    assert addrop.attribution == ("integrated_gradient" if task == "mrpc" else "gradient")
    assert spec.sweep is not None and spec.sweep.protocol == "paper"
    grid = spec.sweep.grid_values()
    expected = [round(0.1 * i, 1) for i in range(1, 10)]
    assert grid["methods.addrop.p"] == expected and grid["methods.addrop.q"] == expected


def test_defaults_then_yaml_then_overrides(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.train.lr == 1e-5 and spec.train.schedule == "constant"  # reference defaults
    assert isinstance(spec.methods["addrop"], AddropParams)
    assert spec.methods["addrop"].p == 0.5 and spec.methods["addrop"].layers == [0]
    spec = load_spec(
        write(tmp_path, MINIMAL),
        ["methods.addrop.p=0.9", "seeds=[3]", "train.epochs=1", "methods.addrop.layers=all"],
    )
    assert spec.methods["addrop"].p == 0.9
    assert spec.seeds == [3] and spec.train.epochs == 1 and spec.methods["addrop"].layers == "all"


def test_override_can_add_a_variant(tmp_path: Path) -> None:
    spec = load_spec(
        write(tmp_path, MINIMAL), ["methods.addrop-rd.attribution=random"]
    )  # method inferred from the name's stem
    assert spec.methods["addrop-rd"].method == "addrop"
    assert spec.methods["addrop-rd"].attribution == "random"


def test_spec_objects_are_frozen(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        spec.train.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed\n", "malformed YAML"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("", "file is empty"),
        (MINIMAL + "bogus: 1\n", "bogus: unknown key"),
        (MINIMAL.replace("seeds: [1, 2]", "seeds: [1, 2]\nseedz: [3]"), "did you mean 'seeds'"),
        (
            MINIMAL.replace("{p: 0.5, q: 0.4}", "{p: 1.5, q: 0.4}"),
            "methods.addrop.p: must be in (0, 1], got 1.5",
        ),
        (
            MINIMAL.replace("{p: 0.5, q: 0.4}", "{p: 0.5, q: 0}"),
            "methods.addrop.q: must be in (0, 1], got 0",
        ),
        (MINIMAL.replace("seeds: [1, 2]", "seeds: []"), "seeds: must not be empty"),
        (MINIMAL.replace("seeds: [1, 2]", "seeds: [1, 1]"), "seeds must be distinct"),
        (
            MINIMAL.replace("tasks: [sst2]", "tasks: [sst3]"),
            "unknown task 'sst3'; did you mean 'sst2'",
        ),
        (MINIMAL.replace("addrop: {p", "addrop: {method: adrop, p"), "did you mean 'addrop'"),
        (MINIMAL.replace("baseline: {}", "plain: {}"), "methods.plain: say which method"),
        (MINIMAL + "train: {epochs: many}\n", "train.epochs: input should be a valid integer"),
        (MINIMAL + "  addrop: {p: 0.2}\n", "duplicate key 'addrop'"),
        (MINIMAL.replace("{p: 0.5, q: 0.4}", "{layers: [0, 0]}"), "layer indices must be distinct"),
        (MINIMAL + "reference: basline\n", "did you mean 'baseline'"),
    ],
    ids=[
        "malformed-yaml",
        "non-mapping-root",
        "empty-file",
        "unknown-key",
        "misspelt-key",
        "p-out-of-range",
        "q-out-of-range",
        "empty-seeds",
        "duplicate-seeds",
        "unknown-task",
        "unknown-method",
        "no-method",
        "wrong-type",
        "duplicate-variant",
        "duplicate-layers",
        "unknown-reference",
    ],
)
def test_bad_specs_give_one_line_per_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert any(expected in line for line in problems), problems
    assert all(line.startswith(str(path)) and "\n" not in line for line in problems)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = MINIMAL.replace("tasks: [sst2]", "tasks: [sst3]").replace("{p: 0.5,", "{p: 2,")
    problems = problems_of(write(tmp_path, text + "bogus: 1\n"))
    assert len(problems) == 3, problems


def test_missing_file(tmp_path: Path) -> None:
    assert "file not found" in problems_of(tmp_path / "nope.yaml")[0]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.epochz=3", "train.epochz (from override train.epochz=3): unknown key"),
        ("name.sub=1", "override 'name.sub=1': name is a str"),
        ("=3", "expected key=value"),
        ("methods.addrop.p=7", "(from override methods.addrop.p=7): must be in (0, 1]"),
    ],
)
def test_bad_overrides(tmp_path: Path, override: str, expected: str) -> None:
    path = write(tmp_path, MINIMAL)
    assert any(expected in line for line in problems_of(path, [override]))


def test_run_ids_are_stable_and_distinct(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    runs = expand(load_spec(path), tmp_path)
    again = expand(load_spec(path), tmp_path)
    assert [r.run_id for r in runs] == [r.run_id for r in again]
    assert len({r.run_id for r in runs}) == len(runs)
    changed = expand(load_spec(path, ["train.lr=3e-5"]), tmp_path)
    assert not {r.run_id for r in runs} & {r.run_id for r in changed}


def test_run_id_ignores_where_and_how_fast(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    base = {r.label: r.run_id for r in expand(load_spec(path), tmp_path)}
    moved = expand(
        load_spec(path, ["data.glue_dir=/elsewhere", "train.threads=4", "train.device=cpu"]),
        tmp_path,
    )
    assert {r.label: r.run_id for r in moved} == base


def test_batching_settings_at_their_default_keep_run_ids_and_change_them_when_set(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, MINIMAL)
    base = {r.label: r.run_id for r in expand(load_spec(path), tmp_path)}
    defaults = ["train.group_by_length=false", "train.pad_to_multiple_of=null"]
    same = expand(load_spec(path, defaults), tmp_path)
    assert {r.label: r.run_id for r in same} == base
    for setting in ("train.group_by_length=true", "train.pad_to_multiple_of=8"):
        other = expand(load_spec(path, [setting]), tmp_path)
        assert not {r.run_id for r in other} & set(base.values()), setting


def test_a_variants_own_train_settings_reach_its_runs_only(tmp_path: Path) -> None:
    """``methods.<variant>.train`` changes that variant's runs (and their ids); every other
    variant keeps the spec's ``train`` and its run ids; equal methods with different own
    settings are two variants, not a duplicate."""
    path = write(tmp_path, MINIMAL)
    base = {r.label: r for r in expand(load_spec(path), tmp_path)}
    own = ["methods.slow.method=baseline", "methods.slow.train.lr=2e-6", "train.epochs=7"]
    spec = load_spec(path, ["train.epochs=7"])
    runs = {r.label: r for r in expand(load_spec(path, own), tmp_path)}
    plain = {r.label: r.run_id for r in expand(spec, tmp_path)}
    assert {k: v.run_id for k, v in runs.items() if "slow" not in k} == plain
    slow = [r for r in runs.values() if r.variant == "slow"]
    assert [(r.train.lr, r.train.epochs) for r in slow] == [(2e-6, 7)] * 2
    assert {r.train.lr for r in runs.values() if r.variant != "slow"} == {
        base["sst2/baseline/seed1"].train.lr
    }
    assert not {r.run_id for r in slow} & set(plain.values())


def test_relative_data_paths_resolve_against_the_spec_folder(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL + "data: {glue_dir: glue}\n"))
    assert spec.data.glue_dir == tmp_path.resolve() / "glue"


def test_relative_data_path_override_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write(spec_dir, MINIMAL), ["data.glue_dir=glue"])
    assert spec.data.glue_dir == tmp_path / "glue"

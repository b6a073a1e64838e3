# addrop: the common flows. Every target installs what it needs first (make install is idempotent).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
# CPU machines: the CPU build of PyTorch (on these machines it installs from local disk). On a GPU
# machine use `make install TORCH=torch` (or install the CUDA build you want first).
TORCH   ?= torch==2.13.0
# The real GLUE folder beside the checkout, when there is one (integration tests, quick start).
export ADDROP_GLUE_DIR ?= $(abspath $(wildcard ../shared/glue_data))

.PHONY: install test test-fast coverage lint docs format smoke smoke-lora demo quick quickstart study study-records study-report replay-search bench gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,slurm,search,model,tracking,docs,adapters]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

# Everything but the slow groups (real-process kills, Slurm, the browser, trackers, long runs):
# the check to run while working; CI and `make test` run everything.
FAST := not slow and not faults and not slurm and not browser and not resume and not tracking
test-fast: install
	$(PY) -m pytest -q -m "$(FAST)"

# Branch coverage of store/, engine/ and execution/ over the whole suite (as long as make test).
# Fails when store/ or execution/ is under 90%: every failure branch there is walked by a test or
# says why it cannot be. TESTS=tests/test_x.py narrows the run (the gate then means little).
TESTS ?= tests
coverage: install
	rm -rf .coverage && mkdir -p .coverage
	$(PY) -m coverage run -m pytest -q $(TESTS)
	$(PY) -m coverage combine -q
	$(PY) tools/coverage_layers.py store execution engine --fail-under store=90 execution=90

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports  # the layers and no cycles ([tool.importlinter] in pyproject.toml)
	$(VENV)/bin/vulture  # dead code ([tool.vulture] in pyproject.toml)

# The documentation site (mkdocs.yml) into site/; --strict: a broken link, a page missing from the
# nav or an unreadable docstring fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

smoke: install
	$(VENV)/bin/addrop run experiments/smoke.yaml --plain
	$(VENV)/bin/addrop report results/smoke

# LoRA adapters on a tiny encoder and a tiny decoder, baseline and AD-DROP (docs/adapters.md)
smoke-lora: install
	$(VENV)/bin/addrop run experiments/smoke-lora.yaml --plain
	$(VENV)/bin/addrop report results/smoke-lora

demo: smoke

# A real pre-trained model and a real number in a few minutes (experiments/quick.yaml): MiniLM on
# 500 SST-2 sentences, baseline vs AD-DROP, 2 seeds, 2 workers of one torch thread. Reads the GLUE
# folder in ADDROP_GLUE_DIR; without one, the bundled synthetic sample as results/quick-sample
# (a pipeline check: made-up sentences, not a result).
QUICK = $(if $(ADDROP_GLUE_DIR),quick,quick-sample)
quick: install
	@[ -n "$(ADDROP_GLUE_DIR)" ] || echo "make quick: ADDROP_GLUE_DIR is not set, so the bundled \
	synthetic sample (made-up sentences: a pipeline check, not a result) -> results/quick-sample"
	$(VENV)/bin/addrop run experiments/quick.yaml --plain \
	  $(if $(ADDROP_GLUE_DIR),,name=quick-sample data.glue_dir=experiments/sample/glue)
	$(VENV)/bin/addrop report results/$(QUICK)

quickstart: install
	$(VENV)/bin/addrop run experiments/quickstart.yaml --plain
	$(VENV)/bin/addrop report results/quickstart

# A study, one seed at a time over every cell (partial results then compare like with like), at low
# priority (nice -n $(NICE)) beside other work; the store resumes, so an interrupted study goes on
# where it stopped. On a CPU: one torch thread per worker, as many workers as cores.
#   make study STUDY=peers [WORKERS=2] [SEEDS="1 2"] [ONLY="KEY=V1,V2 ..."] [ARGS="overrides"]
# Each seed is `addrop run --only seed=N`: the spec stays whole, so the store's spec.yaml and the
# report know every planned seed. SEEDS: default the spec's seeds. ONLY='data.train_size=500,1000'
# runs part of a study first (a curve's cheap sizes; more keys: ONLY='KEY=V KEY=V', see
# `addrop run --only`); ARGS are overrides that change the spec (`train.epochs=2`, or a narrowed
# `factors.data.train_size=[500]`, which then is what spec.yaml records). Then REPORT.md.
# `make study-records STUDY=<name>` stages the finished runs' records with git
# (tools/study_records.py; DRY=1 lists them); commit them, then `make study-report`.
STUDY   ?= peers
WORKERS ?= 2
SEEDS   ?=
ONLY    ?=
ARGS    ?=
NICE    ?= 19
SPEC_SEEDS = import sys; from pathlib import Path; from addrop_cli.spec.load import load_spec; \
  args = [a for a in sys.argv[2:] if "=" in a and not a.startswith("-")]; \
  print(*load_spec(Path(sys.argv[1]), args).seeds)
# (exit 1 is "some runs failed": the study goes on; a mistake (2) or Ctrl-C (130) stops it)
study: install
	seeds="$(SEEDS)"; spec=experiments/$(STUDY).yaml; \
	[ -n "$$seeds" ] || seeds=$$($(PY) -c '$(SPEC_SEEDS)' $$spec $(ARGS) 2>/dev/null) || \
	  { $(VENV)/bin/addrop run $$spec $(ARGS) --dry-run >/dev/null; exit 2; }; \
	for s in $$seeds; do \
	  nice -n $(NICE) $(VENV)/bin/addrop run $$spec $(ARGS) --only seed=$$s \
	    $(foreach o,$(ONLY),--only '$(o)') --plain --workers $(WORKERS) --threads 1; \
	  rc=$$?; [ $$rc -le 1 ] || exit $$rc; \
	done
	nice -n $(NICE) $(PY) -c "from pathlib import Path; from addrop_cli.report import \
	  write_markdown_report; write_markdown_report(Path('results/$(STUDY)/REPORT.md'), \
	  [Path('results/$(STUDY)')])"

study-records:
	$(PY) tools/study_records.py results/$(STUDY) $(if $(DRY),--dry-run)

# REPORT.md and plots of a study from its committed records alone: HEAD's results/<name> exported
# to .cache/ and reported there, as on a fresh clone (unfinished local runs never reach it);
# tests/house/test_study_reports.py checks that the committed REPORT.md is what this makes.
study-report: install
	rm -rf .cache/study-report && mkdir -p .cache/study-report
	git archive HEAD results/$(STUDY) | tar -x -C .cache/study-report
	rm -f .cache/study-report/results/$(STUDY)/*.png .cache/study-report/results/$(STUDY)/*.svg
	cd .cache/study-report && $(abspath $(PY)) -c "from pathlib import Path; \
	  from addrop_cli.report import write_markdown_report; \
	  write_markdown_report(Path('results/$(STUDY)/REPORT.md'), [Path('results/$(STUDY)')])"
	rm -f results/$(STUDY)/*.png results/$(STUDY)/*.svg
	cp .cache/study-report/results/$(STUDY)/REPORT.md .cache/study-report/results/$(STUDY)/*.png \
	  .cache/study-report/results/$(STUDY)/*.svg results/$(STUDY)/

# The search benchmark (bench/replay_search.py, docs/benchmarks.md): every strategy replayed over
# each recorded grid for 30 sampler seeds, from the grid's committed records alone (HEAD's
# results/<grid> exported to .cache/, as study-report does), into results/<grid>/REPLAY.md;
# tests/test_replay_search.py checks the committed files. GRIDS: name:trials for random/TPE/CMA-ES.
GRIDS ?= grid-sst2-300:12 grid-sst2-300-every:6
replay-search: install
	rm -rf .cache/replay-search && mkdir -p .cache/replay-search
	for g in $(GRIDS); do name=$${g%%:*}; \
	  git archive HEAD results/$$name | tar -x -C .cache/replay-search && \
	  $(PY) bench/replay_search.py .cache/replay-search/results/$$name --trials $${g##*:} \
	    --write && cp .cache/replay-search/results/$$name/REPLAY.md results/$$name/ || exit 1; \
	done

bench: install
	$(PY) bench/bench_step.py
	$(PY) bench/bench_trainer.py
	$(PY) bench/bench_sweep.py
	$(PY) bench/bench_families.py
	$(PY) bench/bench_tracking.py
	$(PY) bench/bench_lora.py

# The GPU acceptance run (bench/gpu_check.py, docs/benchmarks.md): every part time-boxed, its figures
# in results/gpu-check/ (gpu-check.json, REPORT.md). Without a GPU: the CPU parts, and one SKIP line
# per GPU part. GPU_TORCH: what the install part asks pip for when the installed torch has no CUDA.
GPU_TORCH ?= torch
GPU_CHECK_ARGS ?=
gpu-check: install
	$(PY) bench/gpu_check.py --torch "$(GPU_TORCH)" $(GPU_CHECK_ARGS)

clean:
	rm -rf results/smoke results/smoke-lora results/quick results/quick-sample .pytest_cache .ruff_cache build site *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

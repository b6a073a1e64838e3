"""``make gpu-check``: the GPU acceptance run in one command, each part time-boxed, every figure
in one results file (``results/gpu-check/gpu-check.json`` and its table, ``REPORT.md``).

    python bench/gpu_check.py                 # every part; the GPU ones are skipped without CUDA
    python bench/gpu_check.py --quick         # the tiny model and small sizes (the test's run)
    python bench/gpu_check.py --only step-cpu properties-cpu --out DIR

Parts (docs/benchmarks.md says what each measures and how long it should take):

  install          a CUDA build of PyTorch from the package registry, when a GPU is visible and
                   the installed build has no CUDA (fallback: the installed build)
  device-tests     tests/engine/test_device_paths.py (-m device) and
                   tests/execution/backends/test_placement.py on CUDA
  properties-cpu   AD-DROP's properties on the CPU (candidate counts, drop rate among candidates)
  properties-cuda  the same on CUDA, and CUDA against the CPU on the same inputs
  step-cpu         bench_step's measure() on the CPU (small: fp32, one model)
  step-cuda        bench_step's measure() on CUDA: fp32 and bf16, MiniLM and BERT-base's shape
  sweep-cuda       bench_sweep's part 1 at 1, 2 and 4 runs per GPU
  placement-cuda   the placement estimate against each method's measured peak
  resume-cuda      a real `addrop run` (runs_per_gpu: auto) SIGKILLed and resumed (gpu_resume.py)

Each part runs in a process of its own (a fresh CUDA context, the torch the install part left),
killed at its timeout. Without a GPU each GPU part prints one line, ``SKIP <part>: ...``. Nothing
here uses the network but the install part (the package registry); the data are
``$ADDROP_GLUE_DIR`` (make: ``../shared/glue_data`` when present), else the packaged sample.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "experiments" / "sample" / "glue"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass(frozen=True)
class Part:
    name: str
    gpu: bool
    timeout_s: int


PARTS = [
    Part("install", True, 300),
    Part("device-tests", True, 240),
    Part("properties-cpu", False, 90),
    Part("properties-cuda", True, 90),
    Part("step-cpu", False, 240),
    Part("step-cuda", True, 150),
    Part("sweep-cuda", True, 180),
    Part("placement-cuda", True, 120),
    Part("resume-cuda", True, 240),
]


def glue_dir() -> Path:
    """The real GLUE folder when ``$ADDROP_GLUE_DIR`` names one with SST-2, else the sample."""
    named = os.environ.get("ADDROP_GLUE_DIR", "").strip()
    return Path(named) if named and (Path(named) / "SST-2").is_dir() else SAMPLE


# --------------------------------------------------------------------------- one part, in-process


def run_part(name: str, quick: bool, work: Path) -> dict:
    """One measuring part in this process (``--part``); its dict goes to ``--fragment``."""
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_parts
    import gpu_resume

    sizes = gpu_parts.Sizes(quick=quick, glue=glue_dir())
    if name == "properties-cpu":
        return gpu_parts.properties(sizes, ["cpu"])
    if name == "properties-cuda":
        return gpu_parts.properties(sizes, ["cpu", "cuda"])
    if name in ("step-cpu", "step-cuda"):
        return gpu_parts.step_bench(sizes, name.removeprefix("step-"))
    if name == "sweep-cuda":
        return gpu_parts.sweep(sizes)
    if name == "placement-cuda":
        return gpu_parts.placement(sizes)
    if name == "resume-cuda":
        return gpu_resume.resume(sizes.glue, work / "resume")
    raise SystemExit(f"gpu_check: no part {name!r}")


# --------------------------------------------------------------------------- the GPU, the install


def _torch_cuda(env: dict[str, str]) -> tuple[str, bool, str]:
    """(torch version, CUDA usable, CUDA version or device name) from a fresh interpreter."""
    probe = (
        "import json, torch; ok = torch.cuda.is_available(); print(json.dumps([torch.__version__,"
        " ok, torch.cuda.get_device_name(0) if ok else (torch.version.cuda or '')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        return "none", False, out.stderr.strip().splitlines()[-1:][0] if out.stderr else ""
    version, ok, what = json.loads(out.stdout.strip().splitlines()[-1])
    return version, ok, what


def gpu_visible() -> bool:
    """nvidia-smi lists a GPU (the machine has one, whatever torch build is installed)."""
    if shutil.which("nvidia-smi") is None:
        return False
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and "GPU" in out.stdout


def install(torch_spec: str, env: dict[str, str], timeout: int) -> dict:
    """A CUDA build of PyTorch when the installed one has none; the project is installed by make.
    Fallback (registry without a CUDA build, install failed): the build already installed."""
    version, ok, what = _torch_cuda(env)
    if ok:
        return {"ok": True, "summary": f"torch {version} sees {what}: nothing to install"}
    command = [sys.executable, "-m", "pip", "install", "-q", "--upgrade", "--force-reinstall"]
    done = subprocess.run(
        [*command, torch_spec], env=env, capture_output=True, text=True, timeout=timeout
    )
    new_version, new_ok, _ = _torch_cuda(env)
    fallback = "" if new_ok else f"; fallback: the installed build ({new_version})"
    summary = f"pip install {torch_spec}: exit {done.returncode}, torch {new_version}{fallback}"
    return {"ok": new_ok, "summary": summary, "pip_tail": done.stderr[-2000:]}


# --------------------------------------------------------------------------- running the parts


def child_env(work: Path, cuda: bool) -> dict[str, str]:
    """Offline, caches under the work folder (nothing written outside the checkout)."""
    env = os.environ | OFFLINE | {"ADDROP_GLUE_DIR": str(glue_dir()), "PYTHONUNBUFFERED": "1"}
    for key, sub in (("TMPDIR", "tmp"), ("TORCHINDUCTOR_CACHE_DIR", "inductor")):
        (work / sub).mkdir(parents=True, exist_ok=True)
        env[key] = str(work / sub)
    env["TRITON_CACHE_DIR"] = str(work / "triton")
    env["ADDROP_TEST_DEVICE"] = "cuda" if cuda else "cpu"
    return env


def _subprocess(command: list[str], env: dict, timeout: int, log: Path) -> tuple[int | None, str]:
    """Run in a session of its own; at the timeout kill the whole group. (exit code or None)."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    return code, log.read_text(errors="replace")[-1500:]


def device_tests(env: dict, timeout: int, work: Path) -> dict:
    xml = work / "device-tests.xml"
    tests = [
        "tests/engine/test_device_paths.py",
        "tests/execution/backends/test_placement.py",
        "-p",
        "no:cacheprovider",
    ]
    command = [sys.executable, "-m", "pytest", "-q", *tests, f"--junitxml={xml}"]
    code, tail = _subprocess(command, env, timeout, work / "device-tests.log")
    if code is None:
        return {"status": "timeout", "ok": False, "summary": f"over {timeout} s", "tail": tail}
    last = [line for line in tail.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    summary = (last or ["no pytest summary"])[-1].strip("= ")
    return {"ok": code == 0, "exit_code": code, "summary": summary}


def measured_part(part: Part, args: argparse.Namespace, env: dict, work: Path) -> dict:
    fragment = work / f"{part.name}.json"
    fragment.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--part", part.name, "--fragment", str(fragment)]
    command += ["--work", str(work)] + (["--quick"] if args.quick else [])
    code, tail = _subprocess(command, env, part.timeout_s, work / f"{part.name}.log")
    if code is None:
        return {"status": "timeout", "ok": False, "summary": f"over {part.timeout_s} s"}
    if code != 0 or not fragment.is_file():
        return {"status": "error", "ok": False, "summary": f"exit {code}", "tail": tail}
    return json.loads(fragment.read_text())


def machine(cuda_what: str) -> dict:
    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "gpu": cuda_what}  # fmt: skip


# --------------------------------------------------------------------------- the results file


def _table(rows: list[dict], keys: list[str]) -> list[str]:
    def cell(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return lines + ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows]


def write_results(results: dict, out: Path) -> None:
    """``gpu-check.json`` and its Markdown, ``REPORT.md``: the parts, then each part's rows."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-check.json").write_text(json.dumps(results, indent=1) + "\n")
    m = results["machine"]
    lines = [f"# gpu-check: {m['host']}, {m['cpus']} CPUs, GPU: {m['gpu'] or 'none'}", ""]
    lines += [f"torch {results['torch']}, {results['started']}, quick: {results['quick']}", ""]
    parts = [{"part": k, **v} for k, v in results["parts"].items()]
    lines += _table(parts, ["part", "status", "seconds", "summary"])
    for name, part in results["parts"].items():
        rows = part.get("rows")
        if rows:
            lines += ["", f"## {name}", "", *_table(rows, list(rows[0]))]
    (out / "REPORT.md").write_text("\n".join(lines) + "\n")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu-check")
    parser.add_argument("--quick", action="store_true", help="tiny model, small sizes")
    parser.add_argument("--only", nargs="+", default=None, metavar="PART", help="these parts")
    parser.add_argument("--no-gpu", action="store_true", help="as on a machine without a GPU")
    parser.add_argument("--torch", default="torch", help="what the install part asks pip for")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--fragment", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [p.name for p in PARTS]
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        parser.error(f"--only: no part {', '.join(unknown)}; the parts: {', '.join(names)}")
    return args


def run_one_part(part: Part, args: argparse.Namespace, cuda: tuple[bool, str], work: Path) -> dict:
    """Run or skip one part; the install part has been dealt with by the caller."""
    if part.gpu and not cuda[0]:
        return {"status": "skipped", "ok": True, "summary": f"needs a GPU ({cuda[1]})"}
    env = child_env(work, cuda=cuda[0])
    if part.name == "device-tests":
        return device_tests(env, part.timeout_s, work)
    return measured_part(part, args, env, work)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.part:  # one part, in this process
        result = run_part(args.part, args.quick, args.work)
        args.fragment.write_text(json.dumps(result, indent=1) + "\n")
        return 0
    work = args.out / "work"
    env = child_env(work, cuda=False)
    gpu = gpu_visible() and not args.no_gpu
    results: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick}
    results["parts"], failed = {}, False
    version, usable, what = _torch_cuda(env)
    for part in [p for p in PARTS if args.only is None or p.name in args.only]:
        start = time.perf_counter()
        if part.name == "install" and gpu:
            result = install(args.torch, env, part.timeout_s)
            version, usable, what = _torch_cuda(env)  # what the parts after it will import
        cuda = (gpu and usable, f"torch {version} sees no GPU" if gpu else "no GPU visible")
        if args.no_gpu:
            cuda = (False, "--no-gpu")
        if part.name != "install" or not gpu:
            result = run_one_part(part, args, cuda, work)
        result.setdefault("status", "passed" if result["ok"] else "failed")
        result["seconds"] = round(time.perf_counter() - start, 1)
        results["parts"][part.name] = result
        results["torch"], results["machine"] = version, machine(what if cuda[0] else "")
        failed |= result["status"] not in ("passed", "skipped")
        write_results(results, args.out)
        word = {"skipped": "SKIP", "passed": "PASS"}.get(result["status"], "FAIL")
        took = "" if word == "SKIP" else f" ({result['seconds']} s)"
        print(f"{word} {part.name}{took}: {result['summary']}", flush=True)
    print(f"results: {args.out / 'gpu-check.json'} and {args.out / 'REPORT.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

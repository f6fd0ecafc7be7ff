"""The prepared GPU check (`make gpu-check`): everything a CUDA machine should confirm, in one
run of at most 9 minutes, summarised in one file.

1. the kernel tests on the GPU (compiled kernels, not the interpreter), against the reference;
2. benchmarks/kernels.py (fused kernels vs cuDNN / batched PyTorch / SDPA);
3. benchmarks/sorting_population.py (Paper A's population benchmark times the CPU path only);
4. benchmarks/paper_scale.py: a timed slice of every paper-scale job kind and the estimated
   paper-scale `all_figures` time on this GPU.

Each step has its own time limit; a step that fails or runs out of time is recorded as such
and the next one runs. The summary goes to benchmarks/out/gpu_check.md (and to $OUT/ when
that is set). Needs only PyTorch and Triton beside the package's pure-Python dependencies;
wheels under .whl/ are installed to /tmp/site first when present.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOTAL_S = 530  # under 9 minutes
STEPS = [  # (name, argv, limit in seconds)
    # test_aot.py compiles for sm_80/sm_90 ahead of time and needs no GPU (CI runs it), so it is left out here
    ("kernel tests on the GPU", ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/kernels",
                                 "--ignore=tests/kernels/test_aot.py"], 110),
    ("kernels benchmark", ["benchmarks/kernels.py", "--repeats", "10"], 70),
    ("paper-scale r2s tuning job, fused kernels vs reference", ["benchmarks/tuning_job.py", "--steps", "10"], 100),
    ("population benchmark (Paper B)", ["benchmarks/sorting_population.py", "--steps", "3"], 60),
    # Paper A's population benchmark (benchmarks/population.py) measures the CPU path only: not run here
    ("paper-scale slice, Paper A Transformer", ["benchmarks/paper_scale.py", "--papers", "a", "--archs", "transformer",
                                                "--steps", "10", "--budget-s", "80"], 140),
    ("paper-scale slice, Paper A LSTM", ["benchmarks/paper_scale.py", "--papers", "a", "--archs", "lstm",
                                         "--steps", "10", "--budget-s", "60"], 120),
    ("paper-scale slice, Paper B", ["benchmarks/paper_scale.py", "--papers", "b", "--steps", "10",
                                    "--budget-s", "60"], 120),
]


def environment() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("TRITON_INTERPRET", None)  # compiled kernels, not the interpreter
    paths = [str(ROOT / "src")]
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--upgrade", "--target", "/tmp/site", *map(str, wheels)], check=True)
        paths.append("/tmp/site")
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_step(name, argv, limit, env) -> tuple[str, float, str]:
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        status = f"TIMED OUT after {limit} s"
        output = (err.stdout or b"").decode(errors="replace") + (err.stderr or b"").decode(errors="replace")
    return status, time.perf_counter() - start, output


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[],
                    help="run only the steps whose name contains this text (repeatable)")
    ap.add_argument("--total-s", type=float, default=TOTAL_S, help="time budget of the whole check")
    args = ap.parse_args(argv)
    steps = [s for s in STEPS if not args.only or any(o.lower() in s[0].lower() for o in args.only)]
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; run it on a GPU machine", file=sys.stderr)
        return 2
    import triton

    env = environment()
    begin = time.perf_counter()
    lines = [f"# GPU check: {torch.cuda.get_device_name()}",
             "", f"torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}, "
             f"python {sys.version.split()[0]}", ""]
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                          "--format=csv,noheader"], capture_output=True, text=True)
    lines += [f"nvidia-smi: {smi.stdout.strip() or smi.stderr.strip()}", ""]
    failed = 0
    for name, argv, limit in steps:
        left = args.total_s - (time.perf_counter() - begin)
        if left < 20:
            lines += [f"## {name}: skipped (the {args.total_s:.0f} s budget is spent)", ""]
            failed += 1
            continue
        status, seconds, output = run_step(name, argv, min(limit, int(left)), env)
        failed += status != "ok"
        print(f"gpu-check: {name}: {status} in {seconds:.0f} s", flush=True)
        tail = "\n".join(output.strip().splitlines()[-60:])
        lines += [f"## {name}: {status} in {seconds:.0f} s", "", f"`python {' '.join(argv)}`", "", "```", tail, "```", ""]
    lines.append(f"total {time.perf_counter() - begin:.0f} s; {failed} step(s) not ok")
    text = "\n".join(lines) + "\n"
    for folder in filter(None, [ROOT / "benchmarks/out", os.environ.get("OUT")]):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "gpu_check.md").write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Each Lambda handler's cold import time, as the Lambda runtime pays it. Figures only.

What a cold start pays before the first request, on top of the runtime's own start: `import handlers.<name>`
in a fresh Python 3.12 interpreter, from a function package laid out as `make build` ships it, in the
environment Lambda gives a function with `Tracing: Active` (LAMBDA_TASK_ROOT set: Powertools' Tracer is on and
patches the X-Ray SDK in at import, as deployed). The package is src/ plus src/requirements.txt installed into
it the way `sam build` does (wheels unpacked, no bytecode), for this machine's platform, then compiled by
tools/ship_bytecode.py as `make build` does; /var/task is read-only, so nothing is compiled at import. For
comparison the same package without the compile step (what every cold start paid before it) is timed too, with
fewer runs. The package is made once under .local/, keyed by the requirements' hash.

    .venv/bin/python bench/bench_cold_imports.py [--runs N] [--profile handlers.signup]

--profile prints the modules that cost most of their own time in one import (`python -X importtime`).
"""

import argparse
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from tools.ship_bytecode import ship_bytecode

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SOURCE = PROJECT_ROOT / "src"
REQUIREMENTS = SOURCE / "requirements.txt"
BUDGET_MS = 350.0  # issue 11: each Powertools handler's import, on these machines

TASK_ROOT = PROJECT_ROOT / ".local" / "lambda-task"
# template.yaml's Globals that a handler may read while importing, and what the Lambda runtime sets.
LAMBDA_ENVIRONMENT = {
    "LAMBDA_TASK_ROOT": str(TASK_ROOT),
    "PYTHONPATH": str(TASK_ROOT),  # the runtime puts /var/task first on sys.path
    "PYTHONDONTWRITEBYTECODE": "1",  # /var/task is read-only
    "AWS_LAMBDA_FUNCTION_NAME": "bench-function",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "STACK_NAME": "bench",
    "PARTNERS_TABLE": "bench-partners",
    "METERING_TABLE": "bench-metering",
    "POWERTOOLS_SERVICE_NAME": "metered-ai",
    "POWERTOOLS_METRICS_NAMESPACE": "MeteredAI",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
    "PATH": os.environ.get("PATH", ""),
}


def handler_modules() -> list[str]:
    """The handler modules template.yaml deploys (src/handlers/ also holds shared modules, e.g. http_answers)."""
    return sorted(set(re.findall(r"\bhandlers\.[a-z_]+", (PROJECT_ROOT / "template.yaml").read_text())))


def lambda_package() -> Path:
    """The libraries of a function package as `sam build` unpacks them (no bytecode), made once per
    requirements and Python version."""
    if sys.version_info[:2] != (3, 12):
        sys.exit(f"run with Python 3.12, the functions' runtime (this is {sys.version.split()[0]})")
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:12]
    libraries = PROJECT_ROOT / ".local" / f"lambda-libraries-{key}"
    if not (libraries / ".installed").exists():
        print(f"(installing src/requirements.txt into {libraries.relative_to(PROJECT_ROOT)}, once)", file=sys.stderr)
        shutil.rmtree(libraries, ignore_errors=True)
        subprocess.run(  # noqa: S603 - our interpreter, our pinned requirements
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
             "--target", libraries, "-r", REQUIREMENTS],
            check=True,
        )  # fmt: skip
        (libraries / ".installed").touch()
    return libraries


def unpack_package(libraries: Path, compiled: bool) -> None:
    """The function package in TASK_ROOT: the libraries and src/, compiled as `make build` does or not."""
    shutil.rmtree(TASK_ROOT, ignore_errors=True)
    no_bytecode = shutil.ignore_patterns("__pycache__", "*.pyc", "requirements.txt", ".installed")
    shutil.copytree(libraries, TASK_ROOT, ignore=no_bytecode)
    shutil.copytree(SOURCE, TASK_ROOT, ignore=no_bytecode, dirs_exist_ok=True)
    if compiled:
        ship_bytecode(TASK_ROOT)


def import_milliseconds(python: Path, module: str) -> tuple[float, float]:
    """Wall time and CPU time of one import in a fresh interpreter: on a busy machine the wall time also holds
    the time other processes had the CPU, the CPU time does not."""
    code = (
        "import time; w, c = time.perf_counter(), time.process_time();"
        f" import {module}; print(time.perf_counter() - w, time.process_time() - c)"
    )
    run = subprocess.run(  # noqa: S603 - the functions' interpreter, our module names
        [python, "-c", code], cwd=TASK_ROOT, env=LAMBDA_ENVIRONMENT, capture_output=True, text=True, check=True
    )
    wall, cpu = run.stdout.split()
    return float(wall) * 1000, float(cpu) * 1000


def profile(python: Path, module: str, top: int = 25) -> None:
    run = subprocess.run(  # noqa: S603
        [python, "-X", "importtime", "-c", f"import {module}"],
        cwd=TASK_ROOT, env=LAMBDA_ENVIRONMENT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = []
    for line in run.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        rows.append((int(own), int(cumulative), name))
    total = max(cumulative for _, cumulative, _ in rows)
    print(f"{module}: {total / 1000:.0f} ms in all; the {top} modules with the most time of their own")
    print(f"  {'own ms':>7} {'with imports ms':>15}  module")
    for own, cumulative, name in sorted(rows, reverse=True)[:top]:
        print(f"  {own / 1000:7.1f} {cumulative / 1000:15.1f}  {name.strip()}")


def timings(python: Path, module: str, runs: int) -> tuple[list[float], list[float]]:
    import_milliseconds(python, module)  # warms the file cache
    walls, cpus = zip(*(import_milliseconds(python, module) for _ in range(runs)), strict=True)
    return list(walls), list(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters per handler (median reported)")
    parser.add_argument("--profile", metavar="MODULE", help="show where one handler's import time goes")
    args = parser.parse_args()
    # The runtime's interpreter: Python 3.12 without the development virtualenv's packages.
    python = Path(sys._base_executable)
    libraries = lambda_package()
    unpack_package(libraries, compiled=True)
    if args.profile:
        profile(python, args.profile)
        return
    modules = handler_modules()
    shipped = {module: timings(python, module, args.runs) for module in modules}
    reference_runs = max(3, args.runs // 3)
    unpack_package(libraries, compiled=False)
    uncompiled = {module: timings(python, module, reference_runs)[1] for module in modules}

    print(f"cold import per handler as `make build` ships it, Lambda's environment, {args.runs} fresh interpreters")
    print(f"(after one warm-up); last column: the same package without its bytecode, {reference_runs} runs")
    print(f"  {'':30} {'wall ms':>23}  {'CPU ms':>15}  {'no bytecode':>11}")
    print(
        f"  {'handler':30} {'median':>7} {'min':>7} {'max':>7}  {'median':>7} {'min':>7}  {'CPU ms':>11}"
        f"  budget {BUDGET_MS:.0f} ms (wall)"
    )
    for module in modules:
        walls, cpus = shipped[module]
        wall, reference = statistics.median(walls), statistics.median(uncompiled[module])
        verdict = "" if wall <= BUDGET_MS else "over"
        print(
            f"  {module:30} {wall:7.0f} {min(walls):7.0f} {max(walls):7.0f}"
            f"  {statistics.median(cpus):7.0f} {min(cpus):7.0f}  {reference:11.0f}  {verdict}"
        )


if __name__ == "__main__":
    main()

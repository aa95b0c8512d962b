"""Each Lambda handler's cold import time, as the Lambda runtime pays it. Figures only.

What a cold start pays before the first request, on top of the runtime's own start: `import handlers.<name>`
in a fresh interpreter, in a virtualenv holding only what the functions ship (src/requirements.txt) on
Python 3.12, and the environment Lambda gives a function with `Tracing: Active` (LAMBDA_TASK_ROOT set:
Powertools' Tracer is on and patches the X-Ray SDK in at import, as deployed). The working directory is a
copy of src/ as Lambda unpacks it into /var/task: the libraries have their bytecode (pip compiles it), our
code has none (`sam build` ships none) and can write none (/var/task is read-only), so each cold start
compiles it. The virtualenv is made once under .local/, keyed by the requirements' hash.

    .venv/bin/python bench/bench_cold_imports.py [--runs N] [--profile handlers.signup]

--profile prints the modules that cost most of their own time in one import (`python -X importtime`).
"""

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SOURCE = PROJECT_ROOT / "src"
REQUIREMENTS = SOURCE / "requirements.txt"
BUDGET_MS = 350.0  # issue 11: each Powertools handler's import, on these machines

TASK_ROOT = PROJECT_ROOT / ".local" / "lambda-task"
# template.yaml's Globals that a handler may read while importing, and what the Lambda runtime sets.
LAMBDA_ENVIRONMENT = {
    "LAMBDA_TASK_ROOT": str(TASK_ROOT),
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
    return sorted(f"handlers.{path.stem}" for path in (SOURCE / "handlers").glob("*.py") if path.stem != "__init__")


def lambda_python() -> Path:
    """The functions' virtualenv: only src/requirements.txt, made once per requirements and Python version."""
    if sys.version_info[:2] != (3, 12):
        sys.exit(f"run with Python 3.12, the functions' runtime (this is {sys.version.split()[0]})")
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:12]
    venv = PROJECT_ROOT / ".local" / f"lambda-venv-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        print(f"(creating {venv.relative_to(PROJECT_ROOT)} from src/requirements.txt, once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)  # noqa: S603
        subprocess.run(  # noqa: S603 - our interpreter, our pinned requirements
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", REQUIREMENTS],
            check=True,
        )
        (venv / ".installed").touch()
    return python


def unpack_code() -> None:
    """src/ as Lambda unpacks the function's package into /var/task: the code, without bytecode."""
    shutil.rmtree(TASK_ROOT, ignore_errors=True)
    shutil.copytree(SOURCE, TASK_ROOT, ignore=shutil.ignore_patterns("__pycache__", "requirements.txt"))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters per handler (median reported)")
    parser.add_argument("--profile", metavar="MODULE", help="show where one handler's import time goes")
    args = parser.parse_args()
    python = lambda_python()
    unpack_code()
    if args.profile:
        profile(python, args.profile)
        return

    print(f"cold import per handler, Lambda's environment, {args.runs} fresh interpreters (after one warm-up)")
    print(f"  {'':30} {'wall ms':>23}  {'CPU ms':>15}")
    print(f"  {'handler':30} {'median':>7} {'min':>7} {'max':>7}  {'median':>7} {'min':>7}  budget {BUDGET_MS:.0f} ms")
    for module in handler_modules():
        import_milliseconds(python, module)  # warms the file cache
        walls, cpus = zip(*(import_milliseconds(python, module) for _ in range(args.runs)), strict=True)
        wall = statistics.median(walls)
        verdict = "" if wall <= BUDGET_MS else "over"
        print(
            f"  {module:30} {wall:7.0f} {min(walls):7.0f} {max(walls):7.0f}"
            f"  {statistics.median(cpus):7.0f} {min(cpus):7.0f}  {verdict}"
        )


if __name__ == "__main__":
    main()

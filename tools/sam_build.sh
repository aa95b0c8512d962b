#!/usr/bin/env bash
# `sam build` without Docker. SAM's python pip workflow needs a `python3.12` on PATH matching the
# functions' runtime; the project venv has one. For the arm64 target it downloads manylinux aarch64
# wheels (pydantic-core...) from the package index, so no emulation or container is involved.
# Settings (cached, parallel) come from samconfig.toml; extra arguments go to `sam build`,
# e.g. tools/sam_build.sh --config-env prod
# Then every function package is compiled to bytecode (tools/ship_bytecode.py says why: ~1 s of CPU per cold
# start otherwise).
#
# Usage: tools/sam_build.sh [sam build args]   (VENV=path/to/venv, default .venv)
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
VENV_BIN="$(cd "$VENV/bin" && pwd)"
[[ -x "$VENV_BIN/python3.12" ]] || { echo "missing $VENV_BIN/python3.12: create the venv first" >&2; exit 2; }

export PATH="$VENV_BIN:$PATH"
export SAM_CLI_TELEMETRY=0
# Building needs no AWS account; a region keeps SAM CLI from looking for one in a profile.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

build_dir=".aws-sam/build"
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    -b|--build-dir) build_dir="${args[$((i + 1))]}" ;;
    --build-dir=*) build_dir="${args[$i]#--build-dir=}" ;;
  esac
done

sam build "$@"
python3.12 -m tools.ship_bytecode "$build_dir"

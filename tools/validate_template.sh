#!/usr/bin/env bash
# Three offline gates on template.yaml; each must pass. No AWS credentials, no network.
#
#   1. sam validate --lint   cfn-lint on the SAM template itself (SAM schemas, no transform)
#   2. sam validate          the SAM translator (as CloudFormation will run it), without lint
#   3. cfn-lint on the translated CloudFormation: the only gate that sees the generated roles, stage and
#                            deployment, so the only one that catches a circular dependency (E3004)
#
# Usage: tools/validate_template.sh [template]   (VENV=path/to/venv, default .venv)
set -euo pipefail

cd "$(dirname "$0")/.."
TEMPLATE="${1:-template.yaml}"
VENV="${VENV:-.venv}"
BIN="$VENV/bin"
for tool in sam cfn-lint python; do
  [[ -x "$BIN/$tool" ]] || { echo "missing $BIN/$tool: create the venv first (VENV=$VENV)" >&2; exit 2; }
done

# Offline by construction: no credentials to find, a region for ARNs and cfn-lint, no telemetry.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_PROFILE \
  AWS_DEFAULT_PROFILE AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_FULL_URI \
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_EC2_METADATA_DISABLED=true SAM_CLI_TELEMETRY=0

# Where the kernel allows it, run every gate in an empty network namespace: a gate that tried the
# network would fail here instead of quietly depending on it.
OFFLINE=()
if command -v unshare >/dev/null 2>&1 && unshare -rn true 2>/dev/null; then
  OFFLINE=(unshare -rn)
else
  echo "note: no network namespace available; gates run with the network reachable" >&2
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
TRANSLATED="$WORK/translated.json"

failed=()
run_gate() {
  local name="$1"
  shift
  echo "== gate: $name"
  if "${OFFLINE[@]}" "$@"; then
    echo "-- pass: $name"
  else
    echo "-- FAIL: $name" >&2
    failed+=("$name")
  fi
}

# Translate the way the SAM service does, locally: samtranslator with its bundled managed-policy map
# (a string policy name would otherwise need IAM). CodeUri is a local folder until `sam package`
# uploads it, so it is swapped for a placeholder S3 URI; nothing else changes.
translate() {
  "$BIN/python" - "$TEMPLATE" "$TRANSLATED" <<'PY'
import json
import pathlib
import sys

import samtranslator
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.arn_generator import ArnGenerator
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

source, target = sys.argv[1], sys.argv[2]
template = yaml_parse(pathlib.Path(source).read_text())

for name, resource in template.get("Resources", {}).items():
    if resource.get("Type") == "AWS::Serverless::Function":
        code_uri = resource.get("Properties", {}).get("CodeUri")
        if isinstance(code_uri, str) and not code_uri.startswith("s3://"):
            resource["Properties"]["CodeUri"] = f"s3://placeholder-bucket/{name}.zip"

policies_file = pathlib.Path(samtranslator.__file__).parent / "internal" / "data" / "aws_managed_policies.json"


class BundledPolicies:
    """Stands in for samtranslator's IAM-backed ManagedPolicyLoader."""

    def load(self) -> dict[str, str]:
        return json.loads(policies_file.read_text())


ArnGenerator.BOTO_SESSION_REGION_NAME = "us-east-1"
try:
    translated = transform(template, {}, BundledPolicies())
except InvalidDocumentException as exc:
    for error in exc.causes:
        print(f"SAM translation error: {error.message}", file=sys.stderr)
    sys.exit(1)
pathlib.Path(target).write_text(json.dumps(translated, indent=2))
print(f"translated {source} -> {len(translated.get('Resources', {}))} CloudFormation resources")
PY
}

lint_translated() {
  translate && "$BIN/cfn-lint" --regions us-east-1 -- "$TRANSLATED"
}

# The gates run under `unshare`, a new process: the translate step goes along as exported functions.
export BIN TEMPLATE TRANSLATED
export -f translate lint_translated

run_gate "sam validate --lint" "$BIN/sam" validate --lint --template-file "$TEMPLATE" --region us-east-1
# samconfig.toml sets lint = true for `sam validate`, which would turn gate 2 into gate 1 again:
# gate 2 reads an empty config instead, so it really runs the translator.
NO_CONFIG="$WORK/samconfig.toml"
echo "version = 0.1" >"$NO_CONFIG"
run_gate "sam validate" "$BIN/sam" validate --template-file "$TEMPLATE" --region us-east-1 --config-file "$NO_CONFIG"
run_gate "cfn-lint on the translated template" bash -c lint_translated

if ((${#failed[@]})); then
  printf 'template gates failed: %s\n' "$(IFS=,; echo "${failed[*]}")" >&2
  exit 1
fi
echo "all template gates passed"

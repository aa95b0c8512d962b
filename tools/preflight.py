"""`make deploy`'s pre-flight: stops a deploy that would fail half-way and roll back, saying what to set.

API Gateway needs one CloudWatch Logs role per account and Region before any stage may write access logs; where
there is none and the stack does not create it (CreateApiGatewayLoggingRole=false), the stage fails with
"CloudWatch Logs role ARN must be set in account settings to enable logging" and the whole stack rolls back.
Usage: python -m tools.preflight [--config-env dev]   (AWS credentials and region as `sam deploy` uses them)
"""

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMCONFIG = PROJECT_ROOT / "samconfig.toml"
LOGGING_ROLE_PARAMETER = "CreateApiGatewayLoggingRole"
EXIT_STOP = 1


def logging_role_arn(apigateway: Any) -> str:
    """The account's API Gateway CloudWatch role in the client's Region; empty when none is set."""
    return str(apigateway.get_account().get("cloudwatchRoleArn") or "")


def logging_role_problem(apigateway: Any, creates_logging_role: bool, config_env: str) -> str | None:
    """Why this deploy would fail on the account's logging role, with the exact setting that fixes it; None if
    it would not."""
    if creates_logging_role or logging_role_arn(apigateway):
        return None
    region = apigateway.meta.region_name
    return (
        f"API Gateway in {region} has no CloudWatch Logs role (account setting cloudWatchRoleArn is empty), and "
        f"this deploy does not create one ({LOGGING_ROLE_PARAMETER}=false): the stage's access log would fail "
        "the deploy and roll it back.\n"
        f'Fix: set "{LOGGING_ROLE_PARAMETER}=true" in samconfig.toml\'s [{config_env}.deploy.parameters] '
        f"parameter_overrides (or sam deploy --parameter-overrides {LOGGING_ROLE_PARAMETER}=true) for this one "
        "stack of the account and Region; the role and the setting then outlive the stack."
    )


def logging_role_note(apigateway: Any, creates_logging_role: bool) -> str | None:
    """A role already set while this stack would create another: not fatal, but the setting is overwritten."""
    existing = logging_role_arn(apigateway)
    if creates_logging_role and existing:
        return (
            f"note: API Gateway in {apigateway.meta.region_name} already uses the CloudWatch role {existing}; "
            f"with {LOGGING_ROLE_PARAMETER}=true this stack replaces it (false is enough here)."
        )
    return None


def deploy_parameters(config_env: str, samconfig: Path = SAMCONFIG) -> dict[str, str]:
    """The parameter overrides `sam deploy --config-env <config_env>` would use."""
    config = tomllib.loads(samconfig.read_text())
    overrides = config.get(config_env, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", [])
    pairs = overrides.split() if isinstance(overrides, str) else list(overrides)
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    creates = deploy_parameters(args.config_env).get(LOGGING_ROLE_PARAMETER, "false") == "true"
    apigateway = boto3.client("apigateway")
    try:
        problem = logging_role_problem(apigateway, creates, args.config_env)
        note = logging_role_note(apigateway, creates)
    except (ClientError, BotoCoreError) as exc:
        print(f"pre-flight: cannot read API Gateway's account settings: {exc}", file=sys.stderr)
        return EXIT_STOP
    if problem:
        print(f"pre-flight: {problem}", file=sys.stderr)
        return EXIT_STOP
    if note:
        print(f"pre-flight: {note}")
    print(f"pre-flight: API Gateway logging role ok in {apigateway.meta.region_name}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.preflight", description=__doc__)
    parser.add_argument("--config-env", default="dev", help="samconfig.toml section `sam deploy` will use")
    return parser


if __name__ == "__main__":
    sys.exit(main())

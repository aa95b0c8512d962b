"""`make deploy`'s pre-flight: stops a deploy that would fail half-way and roll back, saying what to set.

API Gateway needs one CloudWatch Logs role per account and Region before any stage may write access logs; where
there is none and the stack does not create it (CreateApiGatewayLoggingRole=false), the stage fails with
"CloudWatch Logs role ARN must be set in account settings to enable logging" and the whole stack rolls back.
Likewise Lambda refuses reserved concurrency that leaves fewer than 100 unreserved executions in the account
(new accounts may have a concurrency quota of 10 or 50), which fails the first create of the public functions.
Usage: python -m tools.preflight [--config-env dev]   (AWS credentials and region as `sam deploy` uses them)
"""

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.exceptions import BotoCoreError, ClientError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMCONFIG = PROJECT_ROOT / "samconfig.toml"
TEMPLATE = PROJECT_ROOT / "template.yaml"
LOGGING_ROLE_PARAMETER = "CreateApiGatewayLoggingRole"
RESERVED_CONCURRENCY_PARAMETERS = ("SignupReservedConcurrency", "WebhookReservedConcurrency")
# Lambda keeps at least this many executions unreserved in every account and Region (PutFunctionConcurrency).
UNRESERVED_MINIMUM = 100
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


def reserved_concurrency_problem(lambda_client: Any, parameters: dict[str, str]) -> str | None:
    """Why Lambda would refuse this stack's reserved concurrency on its first create; None if it would not."""
    wanted = {name: int(parameters.get(name, "0")) for name in RESERVED_CONCURRENCY_PARAMETERS}
    unreserved = int(lambda_client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"])
    if unreserved - sum(wanted.values()) >= UNRESERVED_MINIMUM:
        return None
    asked = " + ".join(f"{name}={value}" for name, value in wanted.items())
    return (
        f"Lambda in {lambda_client.meta.region_name} has {unreserved} unreserved concurrent executions, and must "
        f"keep {UNRESERVED_MINIMUM} of them unreserved: this stack's reservations ({asked}) would fail its "
        "functions' creation and roll it back.\n"
        f'Fix: set "{RESERVED_CONCURRENCY_PARAMETERS[0]}=0" and "{RESERVED_CONCURRENCY_PARAMETERS[1]}=0" in '
        "samconfig.toml's parameter_overrides (unreserved), or ask Service Quotas for a higher Lambda "
        "concurrency quota."
    )


def deploy_parameters(config_env: str, samconfig: Path = SAMCONFIG, template: Path = TEMPLATE) -> dict[str, str]:
    """The parameters `sam deploy --config-env <config_env>` would deploy with: the template's defaults,
    overridden by the config env's parameter_overrides."""
    config = tomllib.loads(samconfig.read_text())
    overrides = config.get(config_env, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", [])
    pairs = overrides.split() if isinstance(overrides, str) else list(overrides)
    return {**template_defaults(template), **dict(pair.split("=", 1) for pair in pairs if "=" in pair)}


def template_defaults(template: Path = TEMPLATE) -> dict[str, str]:
    class _IgnoreTags(yaml.SafeLoader):
        """CloudFormation's short-form tags (!Ref, !Sub...) do not matter for parameter defaults."""

    _IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)
    document = yaml.load(template.read_text(), Loader=_IgnoreTags)  # noqa: S506 - a SafeLoader subclass
    return {
        name: str(spec["Default"]) for name, spec in (document.get("Parameters") or {}).items() if "Default" in spec
    }


def stack_exists(cloudformation: Any, stack_name: str) -> bool:
    try:
        cloudformation.describe_stacks(StackName=stack_name)
    except ClientError as exc:
        if "does not exist" in exc.response.get("Error", {}).get("Message", ""):
            return False
        raise
    return True


def stack_name_of(config_env: str, samconfig: Path = SAMCONFIG) -> str:
    config = tomllib.loads(samconfig.read_text()).get(config_env, {})
    return str(config.get("deploy", {}).get("parameters", {}).get("stack_name", ""))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    parameters = deploy_parameters(args.config_env)
    creates = parameters.get(LOGGING_ROLE_PARAMETER, "false") == "true"
    apigateway = boto3.client("apigateway")
    try:
        problem = logging_role_problem(apigateway, creates, args.config_env)
        note = logging_role_note(apigateway, creates)
        # An existing stack's reservations are already taken from the account: only a first create can fail.
        if not problem and not stack_exists(boto3.client("cloudformation"), stack_name_of(args.config_env)):
            problem = reserved_concurrency_problem(boto3.client("lambda"), parameters)
    except (ClientError, BotoCoreError) as exc:
        print(f"pre-flight: cannot read the account's settings: {exc}", file=sys.stderr)
        return EXIT_STOP
    if problem:
        print(f"pre-flight: {problem}", file=sys.stderr)
        return EXIT_STOP
    if note:
        print(f"pre-flight: {note}")
    print(f"pre-flight: ok in {apigateway.meta.region_name}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.preflight", description=__doc__)
    parser.add_argument("--config-env", default="dev", help="samconfig.toml section `sam deploy` will use")
    return parser


if __name__ == "__main__":
    sys.exit(main())

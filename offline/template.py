"""Reads template.yaml the way SAM CLI does (its own providers and intrinsic resolver), so the offline stack
and the tests run exactly what the template declares: no second copy of routes, tiers or environment."""

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from samcli.lib.intrinsic_resolver.intrinsic_property_resolver import IntrinsicResolver
from samcli.lib.intrinsic_resolver.intrinsics_symbol_table import IntrinsicsSymbolTable
from samcli.lib.providers.provider import Stack
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"
DEFAULT_STACK_NAME = "metered-ai-local"
DEFAULT_REGION = "us-east-1"
# moto's default account, which is also SAM CLI's value of AWS::AccountId.
ACCOUNT_ID = "123456789012"
# What the offline stack deploys with when PARAMS does not say otherwise (and the template declares the
# parameter): nothing that needs a real AWS service. The template's defaults are for AWS.
OFFLINE_PARAMETER_DEFAULTS = {"ModelProvider": "offline"}

# What a resolved resource attribute can be: a plain value (Ref) or one value per attribute.
PhysicalIds = Mapping[str, str | Mapping[str, str]]

# `sam deploy --parameter-overrides` also takes the CloudFormation CLI form.
_CLI_FORM = re.compile(r"^ParameterKey=(?P<name>[^,]+),ParameterValue=(?P<value>.*)$")


class TemplateError(ValueError):
    """The template or a parameter override cannot be used."""


def parse_parameter_overrides(text: str) -> dict[str, str]:
    """Parse SAM-style overrides: `Name=Value Other=Value` (the form `sam deploy --parameter-overrides` takes)."""
    overrides = {}
    try:
        pairs = shlex.split(text or "")
    except ValueError as exc:
        raise TemplateError(f"parameter overrides {text!r} cannot be parsed: {exc}") from exc
    for pair in pairs:
        if cli_form := _CLI_FORM.match(pair):
            overrides[cli_form["name"]] = cli_form["value"]
            continue
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise TemplateError(f"parameter override {pair!r} is not Name=Value")
        overrides[name] = value
    return overrides


@dataclass(frozen=True)
class StackTemplate:
    """A template with its parameters applied, its conditions evaluated and intrinsics resolved by SAM CLI."""

    path: Path
    stack_name: str
    region: str
    parameters: dict[str, str]
    stacks: list[Stack] = field(repr=False)
    conditions: dict[str, bool] = field(default_factory=dict)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources CloudFormation would create: those whose Condition (if any) holds."""
        every: dict[str, dict[str, Any]] = self.stacks[0].resources
        return {
            logical_id: resource
            for logical_id, resource in every.items()
            if self.conditions.get(resource.get("Condition", ""), True)
        }

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource.get("Properties", {})
            for logical_id, resource in self.resources.items()
            if resource.get("Type") == resource_type
        }

    def evaluated(self, value: Any) -> Any:
        """`value` with the Fn::If and the parameter Refs SAM CLI's resolver leaves in place evaluated as
        CloudFormation evaluates them: None for AWS::NoValue, which drops out of a map or list."""
        if isinstance(value, Mapping) and set(value) == {"Fn::If"}:
            condition, when_true, when_false = value["Fn::If"]
            return self.evaluated(when_true if self.conditions[condition] else when_false)
        if isinstance(value, Mapping) and set(value) == {"Ref"}:
            name = value["Ref"]
            if name == "AWS::NoValue":
                return None
            return self.parameters.get(name, value)
        if isinstance(value, Mapping):
            items = {key: self.evaluated(item) for key, item in value.items()}
            return {key: item for key, item in items.items() if item is not None}
        if isinstance(value, list):
            return [item for item in (self.evaluated(item) for item in value) if item is not None]
        return value

    def with_physical_ids(self, physical_ids: PhysicalIds) -> "StackTemplate":
        """The same template resolved again, with Ref and GetAtt of created resources giving their real values."""
        return _resolve(self.path, self.stack_name, self.region, self.parameters, physical_ids)


def _declared_parameters(path: Path) -> dict[str, Any]:
    class _CfnLoader(yaml.SafeLoader):
        pass

    # CloudFormation short-form tags (!Ref, !Sub, ...) are irrelevant here; read them as plain values.
    _CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
    try:
        document = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"cannot read {path}: {exc}") from exc
    parameters: dict[str, Any] = (document or {}).get("Parameters") or {}
    return parameters


def _check_value(name: str, value: str, spec: dict[str, Any]) -> None:
    """Apply the checks CloudFormation applies to a parameter value before it creates anything."""
    allowed = spec.get("AllowedValues")
    if allowed and value not in [str(item) for item in allowed]:
        raise TemplateError(f"parameter {name}={value!r} is not one of {', '.join(str(item) for item in allowed)}")
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise TemplateError(f"parameter {name}={value!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"parameter {name}={value} is below its MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {name}={value} is above its MaxValue {spec['MaxValue']}")
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(str(pattern), value):
        raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        raise TemplateError(f"parameter {name}={value!r} is shorter than {spec['MinLength']}")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise TemplateError(f"parameter {name}={value!r} is longer than {spec['MaxLength']}")


def load_template(
    path: Path = TEMPLATE_PATH,
    stack_name: str = DEFAULT_STACK_NAME,
    region: str = DEFAULT_REGION,
    overrides: dict[str, str] | None = None,
) -> StackTemplate:
    """Load `path` with SAM-style parameter overrides, refusing unknown names and values the template forbids."""
    declared = _declared_parameters(path)
    unknown = sorted(set(overrides or {}) - set(declared))
    if unknown:
        raise TemplateError(f"unknown template parameter(s): {', '.join(unknown)}; declared: {', '.join(declared)}")
    values = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
    values.update({name: value for name, value in OFFLINE_PARAMETER_DEFAULTS.items() if name in declared})
    values.update(overrides or {})
    for name, spec in declared.items():
        _check_value(name, values[name], spec)
    return _resolve(path, stack_name, region, values, {})


def _resolve(
    path: Path, stack_name: str, region: str, values: dict[str, str], physical_ids: PhysicalIds
) -> StackTemplate:
    pseudo = {"AWS::StackName": stack_name, "AWS::Region": region, "AWS::AccountId": ACCOUNT_ID}
    stacks, _ = SamLocalStackProvider.get_stacks(str(path), parameter_overrides={**values, **pseudo, **physical_ids})
    if not stacks:
        raise TemplateError(f"{path} declares no stack")
    _restore_logical_ids(stacks[0], physical_ids)
    conditions = _evaluate_conditions(
        stacks[0], {**IntrinsicsSymbolTable.DEFAULT_PSEUDO_PARAM_VALUES, **values, **pseudo}
    )
    return StackTemplate(
        path=path, stack_name=stack_name, region=region, parameters=values, stacks=stacks, conditions=conditions
    )


def _restore_logical_ids(stack: Stack, physical_ids: PhysicalIds) -> None:
    # SAM CLI's resolver also translates the resources' own keys; they must stay logical ids.
    logical_by_physical = {
        str(value["Ref"] if isinstance(value, Mapping) else value): logical_id
        for logical_id, value in physical_ids.items()
    }
    resources = stack.resources
    renamed = {logical_by_physical.get(key, key): resource for key, resource in resources.items()}
    resources.clear()
    resources.update(renamed)


def _evaluate_conditions(stack: Stack, values: dict[str, Any]) -> dict[str, bool]:
    # SAM CLI resolves properties but keeps every resource whatever its Condition; CloudFormation does not.
    template = stack.template_dict
    resolver = IntrinsicResolver(
        template=template, symbol_resolver=IntrinsicsSymbolTable(logical_id_translator=values, template=template)
    )
    _check_rules(template, resolver)
    return {
        name: bool(resolver.intrinsic_property_resolver(condition, False, parent_function="Conditions"))
        for name, condition in (template.get("Conditions") or {}).items()
    }


def _check_rules(template: dict[str, Any], resolver: IntrinsicResolver) -> None:
    """Refuse parameter values a rule of the template's `Rules` refuses, as CloudFormation does before it
    creates anything (a rule without a RuleCondition always applies)."""
    for name, rule in (template.get("Rules") or {}).items():
        applies = rule.get("RuleCondition", True)
        if not resolver.intrinsic_property_resolver(applies, False, parent_function="Rules"):
            continue
        for assertion in rule.get("Assertions") or []:
            if not resolver.intrinsic_property_resolver(assertion["Assert"], False, parent_function="Rules"):
                raise TemplateError(f"rule {name}: {assertion.get('AssertDescription', 'an assertion failed')}")

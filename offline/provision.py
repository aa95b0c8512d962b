"""Creates, on the emulator, every resource of the template that the handlers touch, as CloudFormation would.

moto's CloudFormation cannot create usage plans, keys or stages, so the offline stack provisions them from
the SAM-resolved template itself: tables, topics and their subscriptions, the REST APIs and their stages,
the usage plans with the template's throttle and quota values, any API keys the template declares, its
Secrets Manager secrets, and its SES email identities (verified at once).
"""

import json
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

import boto3

from offline.routes import Route, declared_apis, declared_routes
from offline.template import ACCOUNT_ID, StackTemplate, TemplateError

TIER_PLAN_TYPE = "AWS::ApiGateway::UsagePlan"


@dataclass
class ProvisionedStack:
    """Physical ids of what was created, by logical id, plus what the handlers and tests need to find."""

    stack_name: str
    region: str
    physical_ids: dict[str, str] = field(default_factory=dict)
    arns: dict[str, str] = field(default_factory=dict)
    plan_ids_by_tier: dict[str, str] = field(default_factory=dict)
    rest_api_ids: dict[str, str] = field(default_factory=dict)
    stage_names: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # logical id -> ARN (what Ref gives)

    def resolve(self, value: Any) -> Any:
        """Turn a reference left by the resolver (a logical id, or `Api.Stage`) into what CloudFormation gives."""
        if isinstance(value, str):
            api, _, attribute = value.partition(".")
            if attribute == "Stage" and api in self.stage_names:
                return self.stage_names[api]
            return self.physical_ids.get(value, value)
        if isinstance(value, dict) and set(value) == {"Ref"}:
            return self.resolve(value["Ref"])
        return value

    def environment(self, variables: dict[str, Any]) -> dict[str, str]:
        """A function's environment as CloudFormation would set it, from first-pass resolved variables."""
        return {name: str(self.resolve(value)) for name, value in variables.items()}

    def attributes(self) -> dict[str, str | dict[str, str]]:
        """Ref and GetAtt values by logical id, for resolving the template again (offline.template)."""
        values: dict[str, str | dict[str, str]] = {}
        for logical_id, physical in self.physical_ids.items():
            attributes = {"Ref": physical}
            if logical_id in self.arns:
                attributes["Arn"] = self.arns[logical_id]
            if logical_id in self.topics:
                attributes["TopicArn"] = physical
                attributes["TopicName"] = physical.rsplit(":", 1)[-1]
            values[logical_id] = attributes
        for api, stage in self.stage_names.items():
            values[f"{api}.Stage"] = stage
        return values


def provision(
    template: StackTemplate,
    endpoint_url: str | None = None,
    routes: list[Route] | None = None,
    session: boto3.session.Session | None = None,
) -> ProvisionedStack:
    """Create the resources on the emulator at `endpoint_url` (None: moto's in-process mock_aws); the
    template's routes (or `routes`) become the REST APIs' resources and methods."""
    if routes is None:
        routes = declared_routes(template, declared_apis(template))
    session = session or boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto takes any credentials; these are dummies
        region_name=template.region,
    )

    def client(service: str) -> Any:
        return session.client(service, region_name=template.region, endpoint_url=endpoint_url)  # type: ignore[call-overload]

    stack = ProvisionedStack(stack_name=template.stack_name, region=template.region)
    _create_tables(template, stack, client("dynamodb"))
    _create_topics(template, stack, client("sns"))
    _create_secrets(template, stack, client("secretsmanager"))
    _create_buckets(template, stack, client("s3"))
    apigateway = client("apigateway")
    _create_rest_apis(template, stack, apigateway, routes)
    _create_usage_plans(template, stack, apigateway)
    _create_api_keys(template, stack, apigateway)
    _verify_email_identities(template, stack, client("ses"))
    return stack


def _create_tables(template: StackTemplate, stack: ProvisionedStack, dynamodb: Any) -> None:
    for logical_id, props in template.of_type("AWS::DynamoDB::Table").items():
        name = props.get("TableName") or f"{template.stack_name}-{logical_id}"
        create: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        for optional in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "ProvisionedThroughput"):
            if props.get(optional):
                create[optional] = props[optional]
        if create["BillingMode"] == "PROVISIONED" and "ProvisionedThroughput" not in create:
            raise TemplateError(f"{logical_id}: a PROVISIONED table needs ProvisionedThroughput")
        table_arn = dynamodb.create_table(**create)["TableDescription"]["TableArn"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and str(ttl.get("Enabled")).lower() == "true":
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )
        stack.physical_ids[logical_id] = name
        stack.arns[logical_id] = table_arn
        stack.tables[logical_id] = name


def _create_buckets(template: StackTemplate, stack: ProvisionedStack, s3: Any) -> None:
    """Each AWS::S3::Bucket with the settings the template gives it (encryption, versioning, lifecycle, public
    access block); the name is CloudFormation-like (stack and logical id, lower case). Bucket policies are not
    applied: moto does not evaluate them (no IAM offline)."""
    for logical_id, declared in template.of_type("AWS::S3::Bucket").items():
        props = template.evaluated(declared)
        name = str(props.get("BucketName") or f"{template.stack_name}-{logical_id}".lower())[:63]
        create: dict[str, Any] = {"Bucket": name}
        if template.region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": template.region}
        s3.create_bucket(**create)
        if props.get("BucketEncryption"):
            # CloudFormation's ServerSideEncryptionByDefault is the API's ApplyServerSideEncryptionByDefault.
            encryption = [
                {
                    "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                    **(
                        {"BucketKeyEnabled": rule["BucketKeyEnabled"] in (True, "true")}
                        if "BucketKeyEnabled" in rule
                        else {}
                    ),
                }
                for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": encryption})
        if props.get("VersioningConfiguration"):
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]}
            )
        rules = (props.get("LifecycleConfiguration") or {}).get("Rules") or []
        if rules:
            s3.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": [_lifecycle_rule(rule) for rule in rules]}
            )
        if props.get("PublicAccessBlockConfiguration"):
            block = {key: value in (True, "true") for key, value in props["PublicAccessBlockConfiguration"].items()}
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
        stack.physical_ids[logical_id] = name
        stack.arns[logical_id] = f"arn:aws:s3:::{name}"


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule as S3's PutBucketLifecycleConfiguration takes it."""
    converted: dict[str, Any] = {"ID": rule.get("Id", ""), "Status": rule["Status"], "Filter": {"Prefix": ""}}
    if "ExpirationInDays" in rule:
        converted["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        days = int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        converted["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        converted["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return converted


def _create_topics(template: StackTemplate, stack: ProvisionedStack, sns: Any) -> None:
    for logical_id, props in template.of_type("AWS::SNS::Topic").items():
        name = props.get("TopicName") or f"{template.stack_name}-{logical_id}"
        attributes = {"FifoTopic": "true"} if str(props.get("FifoTopic", "")).lower() == "true" else {}
        arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
        stack.physical_ids[logical_id] = arn
        stack.topics[logical_id] = arn
        for inline in props.get("Subscription") or []:
            sns.subscribe(TopicArn=arn, Protocol=inline["Protocol"], Endpoint=inline["Endpoint"])
    for logical_id, props in template.of_type("AWS::SNS::Subscription").items():
        policy = props.get("FilterPolicy")
        attributes = {"FilterPolicy": policy if isinstance(policy, str) else json.dumps(policy)} if policy else {}
        created = sns.subscribe(
            TopicArn=stack.resolve(props["TopicArn"]),
            Protocol=props["Protocol"],
            Endpoint=props["Endpoint"],
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )
        stack.physical_ids[logical_id] = created["SubscriptionArn"]


def _create_rest_apis(template: StackTemplate, stack: ProvisionedStack, apigateway: Any, routes: list[Route]) -> None:
    for logical_id, props in template.of_type("AWS::Serverless::Api").items():
        api_id = apigateway.create_rest_api(name=props.get("Name") or f"{template.stack_name}-{logical_id}")["id"]
        stage = str(props.get("StageName") or "Prod")
        # API Gateway (and moto) deploys only an API with methods: the same resources and methods SAM makes.
        _create_methods(template, apigateway, api_id, [route for route in routes if route.api_id == logical_id])
        apigateway.create_deployment(restApiId=api_id, stageName=stage)
        stack.physical_ids[logical_id] = api_id
        stack.arns[logical_id] = f"arn:aws:apigateway:{template.region}::/restapis/{api_id}"
        stack.rest_api_ids[logical_id] = api_id
        stack.stage_names[logical_id] = stage


def _create_methods(template: StackTemplate, apigateway: Any, api_id: str, routes: list[Route]) -> None:
    resource_ids = {item["path"]: item["id"] for item in apigateway.get_resources(restApiId=api_id)["items"]}
    for route in routes:
        parent = "/"
        for segment in route.resource_path.strip("/").split("/"):
            path = f"{parent.rstrip('/')}/{segment}"
            if path not in resource_ids:
                created = apigateway.create_resource(restApiId=api_id, parentId=resource_ids[parent], pathPart=segment)
                resource_ids[path] = created["id"]
            parent = path
        resource_id = resource_ids[route.resource_path]
        apigateway.put_method(
            restApiId=api_id,
            resourceId=resource_id,
            httpMethod=route.method,
            authorizationType="AWS_IAM" if route.iam_auth else "NONE",
            apiKeyRequired=route.api_key_required,
        )
        function_arn = (
            f"arn:aws:lambda:{template.region}:{ACCOUNT_ID}:function:{template.stack_name}-{route.function_id}"
        )
        apigateway.put_integration(
            restApiId=api_id,
            resourceId=resource_id,
            httpMethod=route.method,
            type="AWS_PROXY",
            integrationHttpMethod="POST",
            uri=f"arn:aws:apigateway:{template.region}:lambda:path/2015-03-31/functions/{function_arn}/invocations",
        )


def _create_usage_plans(template: StackTemplate, stack: ProvisionedStack, apigateway: Any) -> None:
    prefix = f"{template.stack_name}-"
    for logical_id, props in template.of_type(TIER_PLAN_TYPE).items():
        name = str(props.get("UsagePlanName") or f"{template.stack_name}-{logical_id}")
        create: dict[str, Any] = {
            "name": name,
            "apiStages": [_api_stage(template.evaluated(stage), stack) for stage in props.get("ApiStages", [])],
        }
        if "Description" in props:
            create["description"] = props["Description"]
        if throttle := props.get("Throttle"):
            create["throttle"] = _throttle(throttle)
        if quota := props.get("Quota"):
            create["quota"] = {
                "limit": int(quota["Limit"]),
                "period": quota["Period"],
                "offset": int(quota.get("Offset", 0)),
            }
        if tags := props.get("Tags"):
            create["tags"] = {tag["Key"]: str(tag["Value"]) for tag in tags}
        plan_id = apigateway.create_usage_plan(**create)["id"]
        stack.physical_ids[logical_id] = plan_id
        if name.startswith(prefix):
            stack.plan_ids_by_tier[name.removeprefix(prefix)] = plan_id


def _api_stage(stage: dict[str, Any], stack: ProvisionedStack) -> dict[str, Any]:
    created: dict[str, Any] = {"apiId": stack.resolve(stage["ApiId"]), "stage": stack.resolve(stage["Stage"])}
    if throttles := stage.get("Throttle"):
        # CloudFormation keys method throttles by "/resource/path/METHOD", as the API does.
        created["throttle"] = {path: _throttle(settings) for path, settings in throttles.items()}
    return created


def _throttle(settings: dict[str, Any]) -> dict[str, Any]:
    throttle: dict[str, Any] = {}
    if "RateLimit" in settings:
        throttle["rateLimit"] = float(settings["RateLimit"])
    if "BurstLimit" in settings:
        throttle["burstLimit"] = int(settings["BurstLimit"])
    return throttle


def _create_api_keys(template: StackTemplate, stack: ProvisionedStack, apigateway: Any) -> None:
    for logical_id, props in template.of_type("AWS::ApiGateway::ApiKey").items():
        create: dict[str, Any] = {
            "name": props.get("Name") or f"{template.stack_name}-{logical_id}",
            "enabled": str(props.get("Enabled", False)).lower() == "true",
        }
        if props.get("Value"):
            create["value"] = props["Value"]
        stack.physical_ids[logical_id] = apigateway.create_api_key(**create)["id"]
    for logical_id, props in template.of_type("AWS::ApiGateway::UsagePlanKey").items():
        apigateway.create_usage_plan_key(
            usagePlanId=stack.resolve(props["UsagePlanId"]),
            keyId=stack.resolve(props["KeyId"]),
            keyType=props["KeyType"],
        )
        stack.physical_ids[logical_id] = stack.resolve(props["KeyId"])


def _verify_email_identities(template: StackTemplate, stack: ProvisionedStack, ses: Any) -> None:
    """SES identities the template declares are verified at once: offline, nobody clicks the link."""
    for logical_id, props in template.of_type("AWS::SES::EmailIdentity").items():
        identity = str(props["EmailIdentity"])
        if "@" in identity:
            ses.verify_email_identity(EmailAddress=identity)
        else:
            ses.verify_domain_identity(Domain=identity)
        stack.physical_ids[logical_id] = identity


def _create_secrets(template: StackTemplate, stack: ProvisionedStack, secretsmanager: Any) -> None:
    """Secrets Manager secrets, with their SecretString or a value made as GenerateSecretString describes."""
    for logical_id, props in template.of_type("AWS::SecretsManager::Secret").items():
        create: dict[str, Any] = {"Name": str(props.get("Name") or f"{template.stack_name}-{logical_id}")}
        if "Description" in props:
            create["Description"] = str(props["Description"])
        if "SecretString" in props:
            create["SecretString"] = str(props["SecretString"])
        else:
            create["SecretString"] = generated_secret_string(props.get("GenerateSecretString") or {})
        if tags := props.get("Tags"):
            create["Tags"] = [{"Key": tag["Key"], "Value": str(tag["Value"])} for tag in tags]
        arn = secretsmanager.create_secret(**create)["ARN"]
        stack.physical_ids[logical_id] = arn
        stack.secrets[logical_id] = arn


def generated_secret_string(spec: dict[str, Any]) -> str:
    """A random value as CloudFormation's GenerateSecretString makes it (length, character classes, and a
    JSON template with the value under GenerateStringKey)."""
    alphabet = ""
    if str(spec.get("ExcludeLowercase", "false")).lower() != "true":
        alphabet += string.ascii_lowercase
    if str(spec.get("ExcludeUppercase", "false")).lower() != "true":
        alphabet += string.ascii_uppercase
    if str(spec.get("ExcludeNumbers", "false")).lower() != "true":
        alphabet += string.digits
    if str(spec.get("ExcludePunctuation", "false")).lower() != "true":
        alphabet += string.punctuation
    if str(spec.get("IncludeSpace", "false")).lower() == "true":
        alphabet += " "
    excluded = set(str(spec.get("ExcludeCharacters", "")))
    alphabet = "".join(char for char in alphabet if char not in excluded)
    if not alphabet:
        raise TemplateError("GenerateSecretString excludes every character")
    value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    if "SecretStringTemplate" in spec and "GenerateStringKey" in spec:
        document = json.loads(str(spec["SecretStringTemplate"]))
        document[str(spec["GenerateStringKey"])] = value
        return json.dumps(document)
    return value

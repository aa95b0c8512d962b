"""The usage export's bucket and function as CloudFormation will deploy them: encrypted, versioned, expiring,
never public, TLS only; the exporter may write objects under its prefix and nothing else in S3."""

from typing import Any

from samtranslator.yaml_helper import yaml_parse

from tests.unit.template.test_streaming_template import TEMPLATE

RESOURCES: dict[str, Any] = yaml_parse(TEMPLATE.read_text())["Resources"]


def test_the_bucket_is_encrypted_versioned_expiring_private_and_kept() -> None:
    bucket = RESOURCES["UsageExportBucket"]
    props = bucket["Properties"]
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
    [encryption] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    [rule] = props["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled" and rule["ExpirationInDays"] == {"Ref": "UsageExportRetentionDays"}
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] > 0
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_the_bucket_refuses_every_request_without_tls() -> None:
    policy = RESOURCES["UsageExportBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "UsageExportBucket"}
    [statement] = policy["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(statement["Resource"]) == 2  # the bucket and its objects


def exporter_statements() -> list[dict[str, Any]]:
    return [
        statement
        for policy in RESOURCES["UsageExportFunction"]["Properties"]["Policies"]
        for statement in policy["Statement"]
    ]


def test_the_exporter_may_only_put_objects_under_its_prefix() -> None:
    s3 = [statement for statement in exporter_statements() if "s3" in str(statement["Action"])]
    assert s3 == [
        {
            "Sid": "WriteExports",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": {"Fn::Sub": "${UsageExportBucket.Arn}/usage/*"},
        }
    ]
    for statement in exporter_statements():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all(not action.endswith("*") for action in actions), statement
        assert not [action for action in actions if action.startswith("dynamodb:") and action != "dynamodb:Scan"]


def test_the_export_runs_on_a_schedule_with_its_scheduled_time_and_a_dead_letter_queue() -> None:
    function = RESOURCES["UsageExportFunction"]["Properties"]
    [event] = function["Events"].values()
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["ScheduleExpression"] == {"Ref": "UsageExportSchedule"}
    assert "<aws.scheduler.scheduled-time>" in event["Properties"]["Input"]
    assert event["Properties"]["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["UsageExportDeadLetterQueue", "Arn"]}
    assert function["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Type"] == "SQS"
    assert function["Environment"]["Variables"]["USAGE_EXPORT_BUCKET"] == {"Ref": "UsageExportBucket"}

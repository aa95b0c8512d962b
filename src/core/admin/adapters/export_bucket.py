"""The scheduled usage export's bucket (UsageExportBucket): PutObject only, under the export's prefix (the
function's role allows nothing else). Content-MD5 makes S3 refuse a body damaged in transit; the SHA-256 in the
object's metadata lets a reader check a download. The bucket is versioned: a re-run that writes the same
bytes makes a noncurrent version the lifecycle rule expires."""

import base64
import hashlib
from typing import TYPE_CHECKING

from core.aws import s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ExportBucket:
    """The ExportStore port on S3."""

    def __init__(self, bucket: str, client: "S3Client | None" = None) -> None:
        self._bucket = bucket
        self._client = client or s3_client()

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self._client.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            ContentMD5=base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode(),
            Metadata={"sha256": hashlib.sha256(body).hexdigest()},
        )

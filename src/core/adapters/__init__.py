"""One adapter per AWS service. Each takes an optional boto3 client and turns AWS errors into domain errors."""

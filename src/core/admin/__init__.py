"""The operator console: IAM-authorized operations on partners (list, show, change) with an audit trail."""

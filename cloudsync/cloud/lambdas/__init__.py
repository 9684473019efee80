"""Lambda handlers for the cloud side (run in AWS; boto3 comes with the Lambda runtime)."""

"""The cloud side of LineStation: CloudFormation template, Step Functions ASL, Lambda handlers."""

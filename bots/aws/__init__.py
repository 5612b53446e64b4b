"""AWS Lambda hosts: the API Gateway ingress and the SQS worker, plus their AWS plumbing."""

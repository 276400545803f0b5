"""Test-wide settings: no real AWS is ever reached, and Powertools is quiet and offline."""

from __future__ import annotations

import os

# Set before any test module imports boto3 or a handler (module-level clients read them).
os.environ.update({
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_SERVICE_NAME": "aurax-test",
    "POWERTOOLS_METRICS_NAMESPACE": "AuraXTest",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
})
for leak in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(leak, None)

#!/bin/bash
# ChatCompletionsFunction's entry point under the Lambda Web Adapter (template.yaml, docs/decisions.md): the
# adapter starts this, waits for GET /healthz, then sends each invocation to it as an HTTP request.
# The function's code and libraries are in the working directory (/var/task on Lambda, src/ offline).
set -euo pipefail
PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}/opt/python${LAMBDA_RUNTIME_DIR:+:$LAMBDA_RUNTIME_DIR}" \
  exec python -m uvicorn --host 127.0.0.1 --port "${PORT:-8080}" --no-access-log handlers.chat_completions:app

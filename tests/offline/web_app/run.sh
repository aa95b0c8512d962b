#!/bin/sh
# The toy web app's Handler, as a Lambda Web Adapter function's: the app on $PORT (offline gives each
# execution environment its own), served by uvicorn from this folder (its CodeUri).
exec python -m uvicorn --host 127.0.0.1 --port "$PORT" --no-access-log toy_app:app

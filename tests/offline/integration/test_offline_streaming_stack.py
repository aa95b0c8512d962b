"""The whole offline stack (what `make local` runs) with a template whose function runs behind the Lambda Web
Adapter: recognised from the template alone, prewarmed, streamed through its RESPONSE_STREAM route, and
stopped with the stack."""

import http.client
import socket
import time
from http import HTTPStatus
from pathlib import Path

from offline.stack import OfflineStack, StackOptions
from offline.state import StateDir
from offline.template import PROJECT_ROOT
from tests.offline.integration.test_offline_streaming import read_events, running, wait_for

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: live
  StreamFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {code_uri}
      Handler: run.sh
      Runtime: python3.12
      Timeout: 30
      Layers:
        - !Sub arn:aws:lambda:${{AWS::Region}}:753240598075:layer:LambdaAdapterLayerX86:26
      Environment:
        Variables:
          AWS_LAMBDA_EXEC_WRAPPER: /opt/bootstrap
          AWS_LWA_INVOKE_MODE: response_stream
          PORT: "8080"
          AWS_LWA_READINESS_CHECK_PATH: /healthz
      Events:
        Stream:
          Type: Api
          Properties:
            RestApiId: !Ref Api
            Path: /v1/stream
            Method: post
            ResponseTransferMode: RESPONSE_STREAM
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_offline_stack_streams_an_lwa_function_from_the_template_alone(tmp_path: Path) -> None:
    # Given a template with an LWA function and a streaming route, and the stack started on it, prewarmed
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE.format(code_uri=PROJECT_ROOT / "tests" / "offline" / "web_app"))
    options = StackOptions(
        port=free_port(), template_path=template, state_dir=StateDir(tmp_path / "state"), schedules=False,
        access_log=False, prewarm=True,
    )  # fmt: skip
    with OfflineStack(options) as stack:
        # Then stack.json says what runs behind the adapter and which route streams
        assert stack.info["functions"]["StreamFunction"]["web_adapter"] is True
        assert [route["streaming"] for route in stack.info["routes"]] == [True]

        # When a client streams from the route
        connection = http.client.HTTPConnection("127.0.0.1", stack.info["port"], timeout=30)
        began = time.monotonic()
        connection.request("POST", "/live/v1/stream?chunks=3&delay=0.3")
        response = connection.getresponse()
        events = read_events(response)

        # Then the events arrive one by one from the prewarmed environment, with no cold start
        assert response.status == HTTPStatus.OK
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert [line for _, line in events] == [b"data: 0", b"data: 1", b"data: 2", b"data: [DONE]"]
        assert events[0][0] - began < 0.5 <= events[-1][0] - events[0][0]
        app_pid = int(response.getheader("x-app-pid") or 0)

    # And stopping the stack stops the app
    assert wait_for(lambda: not running(app_pid))

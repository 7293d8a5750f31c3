"""API errors in Recurly's envelope: {"error": {"type", "message", "params"?}}.

Handlers raise ApiError; the server turns it into a response. Error types are the values of
the spec's ErrorTypeEnum (a parameter error is "bad_request" with the offending param named).
"""

from __future__ import annotations

import json


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.param = param
        self.headers = headers or {}

    def body(self) -> bytes:
        error: dict = {"type": self.type, "message": self.message}
        if self.param:
            error["params"] = [{"param": self.param, "message": self.message}]
        return json.dumps({"error": error}).encode()


def bad_parameter(param: str, message: str) -> ApiError:
    return ApiError(400, "bad_request", message, param=param)


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"Couldn't find {what} with id = {ident}")

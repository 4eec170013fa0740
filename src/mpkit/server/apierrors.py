"""Protocol errors: what the registry answers when a request cannot be served.

These are not user-facing mpkit errors: the handler turns each one into an HTTP status
and the distribution-spec error body ``{"errors": [{"code", "message", "detail"}]}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# distribution-spec "Error Codes" (plus UNKNOWN, which distribution uses for 5xx).
BLOB_UNKNOWN = "BLOB_UNKNOWN"
BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
DIGEST_INVALID = "DIGEST_INVALID"
MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
MANIFEST_INVALID = "MANIFEST_INVALID"
MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
NAME_INVALID = "NAME_INVALID"
NAME_UNKNOWN = "NAME_UNKNOWN"
SIZE_INVALID = "SIZE_INVALID"
UNAUTHORIZED = "UNAUTHORIZED"
DENIED = "DENIED"
UNSUPPORTED = "UNSUPPORTED"
TOOMANYREQUESTS = "TOOMANYREQUESTS"
UNKNOWN = "UNKNOWN"


class ApiError(Exception):
    """One failed request: HTTP *status*, error *code*, a message and optional detail.

    ``errors`` holds extra (code, message, detail) entries, e.g. one per unknown blob.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
        errors: list[tuple[str, str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = errors or []

    def body(self) -> bytes:
        entries = [(self.code, self.message, self.detail), *self.extra]
        payload = {
            "errors": [
                {"code": code, "message": message, **({"detail": detail} if detail else {})}
                for code, message, detail in entries
            ]
        }
        return json.dumps(payload).encode()


def bad_request(code: str, message: str, **kwargs: Any) -> ApiError:
    return ApiError(400, code, message, **kwargs)


def not_found(code: str, message: str, **kwargs: Any) -> ApiError:
    return ApiError(404, code, message, **kwargs)

"""Errors of describe.xml generation (to move into mpkit.errors when the lead merges it)."""

from __future__ import annotations

from typing import Any

from mpkit.errors import MpkitError


class DescribeError(MpkitError):
    """describe.xml could not be generated, merged or validated."""

    code = "describe"


class AdapterDefinitionError(DescribeError):
    """The adapter's definition command could not be run, crashed or wrote no valid JSON."""

    code = "adapter_definition"

    def __init__(self, message: str, *, hint: str | None = None, stderr: str = "") -> None:
        super().__init__(message, hint=hint)
        self.stderr = stderr


class AdapterKindMismatchError(DescribeError):
    """manifest.txt's adapter_kinds does not name the adapter kind the adapter defines."""

    code = "adapter_kind_mismatch"

    def __init__(
        self, message: str, *, manifest_kind: str, describe_kind: str, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.manifest_kind = manifest_kind
        self.describe_kind = describe_kind

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["manifest_adapter_kind"] = self.manifest_kind
        out["describe_adapter_kind"] = self.describe_kind
        return out

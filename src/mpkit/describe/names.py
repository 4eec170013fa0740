"""Localised names: describe.xml refers to them by ``nameKey``; resources.properties holds them.

As in the SDK's mp-build: keys are small integers handed out in the order labels are
first met while walking the definition (so the same definition always gives the same
keys), one per label. An element's description is written as ``<key>.description``; two
elements with the same label share the key, and the later description is the one kept.
"""

from __future__ import annotations

from mpkit.javaproperties import escape_key, escape_value


class NameKeys:
    """Hands out ``nameKey`` values and remembers the text behind each."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}
        self._entries: dict[str, str] = {}

    def key(self, label: str, description: str | None = None) -> str:
        """The key for *label*, new if it was not seen yet; a *description* (even an empty
        one) becomes the key's description."""
        key = self._keys.setdefault(label, str(len(self._keys) + 1))
        self._entries[key] = label
        if description is not None:
            self._entries[f"{key}.description"] = description
        return key

    @property
    def entries(self) -> dict[str, str]:
        """key → text, in the order the keys were handed out."""
        return dict(self._entries)

    def properties(self) -> bytes:
        """resources.properties: ``key = value`` lines in the SDK's order and layout,
        Java-escaped ASCII (the SDK writes raw UTF-8, which a java.util.Properties reader
        takes as ISO-8859-1)."""
        lines = [f"{escape_key(k)} = {escape_value(v)}\n" for k, v in self._entries.items()]
        return "".join(lines).encode("ascii")

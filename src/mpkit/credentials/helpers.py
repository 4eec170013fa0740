"""The ``docker-credential-<name>`` helper protocol (docker-credential-helpers client).

Every verb is ``docker-credential-<name> <verb>`` with its input on stdin. Secrets are
only ever written to the helper's stdin: never to its argv or environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mpkit.childenv import child_environment
from mpkit.errors import CredentialError
from mpkit.jsonfile import parse_json

from .types import KIND_REGISTRY_TOKEN, Credential, redact

HELPER_PREFIX = "docker-credential-"
# docker-credential-helpers: Username "<token>" means Secret is an identity token.
TOKEN_USERNAME = "<token>"  # noqa: S105
# docker-credential-helpers: the standard "not found" answer of `get`.
NOT_FOUND_MESSAGE = "credentials not found in native keychain"
DEFAULT_TIMEOUT = 30.0
MAX_QUOTED_OUTPUT = 600


@dataclass(frozen=True)
class CredentialHelper:
    """One helper program; ``configured_by`` says which config key named it (for messages)."""

    name: str
    configured_by: str = ""
    timeout: float = DEFAULT_TIMEOUT
    environ: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def program(self) -> str:
        return HELPER_PREFIX + self.name

    @property
    def description(self) -> str:
        """Human text such as ``credential helper 'pass' (credsStore in ~/.docker/config.json)``."""
        by = f" ({self.configured_by})" if self.configured_by else ""
        return f"credential helper '{self.name}'{by}"

    def get(self, server_url: str) -> Credential | None:
        """The credential stored for *server_url*, or ``None`` when the helper has none."""
        proc = self._run("get", server_url.encode(), action=f"get credentials for {server_url}")
        if proc.returncode != 0:
            if _says_not_found(proc):
                return None
            raise self._failure(proc, f"get credentials for {server_url}")
        payload = self._parse_json(proc, f"get credentials for {server_url}")
        username, secret = payload.get("Username") or "", payload.get("Secret") or ""
        if not isinstance(username, str) or not isinstance(secret, str):
            raise self._bad_output(f"get credentials for {server_url}")
        if not username and not secret:
            return None  # some helpers (e.g. pass) answer "found nothing" with empty fields
        if username == TOKEN_USERNAME:
            return Credential(identity_token=secret, source=self.description)
        return Credential(username=username, password=secret, source=self.description)

    def store(self, server_url: str, credential: Credential) -> None:
        """Save *credential* for *server_url* (identity tokens as Username ``<token>``)."""
        action = f"store credentials for {server_url}"
        if credential.kind == KIND_REGISTRY_TOKEN:
            raise CredentialError(
                f"Cannot {action} in the {self.description}: the helper protocol holds a "
                "username and a secret, not a registry token.",
                hint="Log in with a username and password (or an identity token) instead, or "
                "remove the helper from config.json to keep the token in the file.",
            )
        if credential.identity_token:
            username, secret = TOKEN_USERNAME, credential.identity_token
        else:
            username, secret = credential.username or "", credential.password or ""
        if not username:
            raise CredentialError(
                f"Cannot {action}: a username is required.",
                hint="Pass a username (e.g. `--username`) together with the password.",
            )
        payload = json.dumps({"ServerURL": server_url, "Username": username, "Secret": secret})
        proc = self._run("store", payload.encode(), action=action)
        if proc.returncode != 0:
            raise self._failure(proc, action, credential.secrets)

    def erase(self, server_url: str) -> bool:
        """Remove the credential for *server_url*; ``False`` when there was none."""
        if self.get(server_url) is None:
            return False  # erase of a missing entry is an error for some helpers (e.g. pass)
        action = f"erase credentials for {server_url}"
        proc = self._run("erase", server_url.encode(), action=action)
        if proc.returncode != 0 and not _says_not_found(proc):
            raise self._failure(proc, action)
        return True

    def list(self) -> dict[str, str]:
        """Server URL -> username for everything the helper stores."""
        proc = self._run("list", b"unused", action="list credentials")
        if proc.returncode != 0:
            raise self._failure(proc, "list credentials")
        payload = self._parse_json(proc, "list credentials")
        if not all(isinstance(v, str) for v in payload.values()):
            raise self._bad_output("list credentials")
        return {str(k): str(v) for k, v in payload.items()}

    def _run(self, verb: str, stdin: bytes, *, action: str) -> subprocess.CompletedProcess[bytes]:
        env = os.environ if self.environ is None else self.environ
        executable = shutil.which(self.program, path=env.get("PATH", os.defpath))
        if executable is None:
            named = f", named by {self.configured_by}," if self.configured_by else ""
            raise CredentialError(
                f"Cannot {action}: the credential helper program {self.program!r}{named} "
                "is not installed or not on PATH.",
                hint=f"Install {self.program} (and put it on PATH), or remove or change that "
                "entry in the docker config file.",
            )
        try:
            return subprocess.run(
                [executable, verb],
                input=stdin,
                capture_output=True,
                timeout=self.timeout,
                env=child_environment(self.environ),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CredentialError(
                f"The {self.description} did not answer within {self.timeout:g} s when asked "
                f"to {action}.",
                hint="The helper may be waiting for an unlock prompt (keychain, gpg-agent "
                "pinentry). Unlock it in a terminal and try again.",
            ) from None
        except OSError as exc:
            raise CredentialError(
                f"Cannot {action}: {executable} could not be started: {exc.strerror or exc}.",
                hint=f"Check that {executable} is an executable file.",
            ) from None

    def _failure(
        self, proc: subprocess.CompletedProcess[bytes], action: str, secrets: tuple[str, ...] = ()
    ) -> CredentialError:
        text = b"\n".join(p.strip() for p in (proc.stdout, proc.stderr) if p.strip())
        output = redact(text.decode("utf-8", "replace"), secrets)
        if len(output) > MAX_QUOTED_OUTPUT:
            output = output[:MAX_QUOTED_OUTPUT] + "…"
        return CredentialError(
            f"The {self.description} failed to {action} (exit status {proc.returncode}): "
            f"{output or 'no output'}",
            hint=f"Run `{self.program}` by hand to investigate (the server URL goes on stdin), "
            "or remove the helper from the docker config file.",
        )

    def _parse_json(self, proc: subprocess.CompletedProcess[bytes], action: str) -> dict[str, Any]:
        # The output of `get` holds a secret, so it is never quoted in the error.
        try:
            payload = parse_json(proc.stdout)
        except ValueError:
            raise self._bad_output(action) from None
        if not isinstance(payload, dict):
            raise self._bad_output(action)
        return payload

    def _bad_output(self, action: str) -> CredentialError:
        return CredentialError(
            f"The {self.description} answered with malformed JSON when asked to {action}.",
            hint=f"Check that {self.program} implements the docker-credential-helpers protocol.",
        )


def _says_not_found(proc: subprocess.CompletedProcess[bytes]) -> bool:
    output = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    return NOT_FOUND_MESSAGE in output

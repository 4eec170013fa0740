"""Choose the pull and push repositories (SPEC §4) and prove access before the long build."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from mpkit.credentials import Credential, store_credential
from mpkit.errors import (
    AccessDeniedError,
    AuthenticationError,
    InvalidReferenceError,
    MpkitError,
    NotFoundError,
    RegistryError,
    RegistryUnreachableError,
    RetriesExhaustedError,
    UsageError,
)
from mpkit.interaction import Prompter, Reporter
from mpkit.project.model import GlobalConfig, Project
from mpkit.project.registry import default_repository, pull_repository, push_repository
from mpkit.reference import Repository, is_loopback_host, parse_repository, split_host_port
from mpkit.registry import RegistryClient, open_client
from mpkit.registry.transport import ClientOptions
from mpkit.server import ensure_running
from mpkit.server.config import default_root

REGISTRY_EXAMPLES = (
    "  Harbor:      harbor.example.com/my-project/my-adapter\n"
    "  AWS ECR:     123456789012.dkr.ecr.us-east-1.amazonaws.com/my-adapter\n"
    "  Docker Hub:  docker.io/USER/my-adapter"
)
WHY_REGISTRY = (
    "The adapter's container image must be pushed to a container registry. The pack records "
    "where it is, and each Aria Operations cloud proxy pulls it from there at install time, "
    "anonymously."
)


class NoRegistryError(MpkitError):
    code = "no_registry"


@dataclass(frozen=True)
class Targets:
    pull: Repository  # recorded in the pack; cloud proxies pull from here
    push: Repository  # where mpkit pushes (usually the same)
    pull_source: str  # "--registry-tag", "config.json" or "prompt"


def choose_targets(
    project: Project,
    global_config: GlobalConfig,
    *,
    registry_tag: str | None,
    push_registry: str | None,
    ask_registry: bool,
    prompter: Prompter,
    reporter: Reporter,
) -> Targets:
    """Pull = --registry-tag > container_repository > prompt; push = --push-registry >
    container_push_repository > pull."""
    text = None if ask_registry else pull_repository(registry_tag, project.config)
    source = "--registry-tag" if registry_tag and not ask_registry else "config.json"
    if text is None:
        text, source = _prompt_repository(project, global_config, prompter, reporter), "prompt"
    pull = _repository(text, source)
    push_text = push_repository(push_registry, project.config, str(pull))
    push = _repository(
        push_text, "--push-registry" if push_registry else "config.json container_push_repository"
    )
    return Targets(pull=pull, push=push, pull_source=source)


def _repository(text: str, source: str) -> Repository:
    try:
        return parse_repository(text)
    except InvalidReferenceError as exc:
        where = "config.json container_repository" if source == "config.json" else source
        raise UsageError(f"{where} {text!r}: {exc.message}", hint=exc.hint) from exc


def _prompt_repository(
    project: Project, global_config: GlobalConfig, prompter: Prompter, reporter: Reporter
) -> str:
    if not prompter.interactive:
        raise NoRegistryError(
            f"no container registry is configured for {project.root}, and mpkit may not ask "
            "(no terminal, or --no-ttl)",
            hint="pass --registry-tag HOST/PATH (mp-build: -r), or set container_repository in "
            f"{project.config.path}, e.g. harbor.example.com/my-project/"
            f"{project.manifest.adapter_kind.lower()}",
        )
    reporter.info(WHY_REGISTRY)
    reporter.info("Examples:\n" + REGISTRY_EXAMPLES)
    default = default_repository(global_config, project.manifest.adapter_kind)
    while True:
        answer = prompter.ask("Container repository", default).strip()
        try:
            parse_repository(answer)
        except InvalidReferenceError as exc:
            reporter.warn(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
            continue
        return answer


def check_push_access(client: RegistryClient, repository: str) -> None:
    """Authenticate and prove push permission: open a blob upload and cancel it."""
    location, _ = client.start_upload(repository)
    client.cancel_upload(location, repository)


def connect_for_push(
    target: Repository,
    *,
    options: ClientOptions,
    explicit: Credential | None,
    prompter: Prompter,
    reporter: Reporter,
) -> RegistryClient:
    """A client proven able to push to *target*, asking for credentials on a TTY.

    Credentials typed at the prompt are stored like `mpkit login` does, once they work.
    A loopback target where nothing answers gets mpkit's built-in registry (issue #6).
    """
    _start_local_registry(target, options, reporter)
    client = open_client(target.registry, options=options, explicit=explicit)
    try:
        check_push_access(client, target.path)
        return client
    except (AuthenticationError, AccessDeniedError) as exc:
        client.close()
        if not prompter.interactive or explicit is not None:
            raise _with_login_hint(exc, target) from None
        reporter.info(f"{target.registry} needs credentials to push to {target.path}.")
    except RegistryError as exc:
        client.close()
        raise _explain(exc, target) from exc
    while True:
        username = prompter.ask(f"Username for {target.registry}").strip()
        password = prompter.secret(f"Password or token for {username}@{target.registry}")
        credential = Credential(username=username, password=password, source="prompt")
        client = open_client(target.registry, options=options, explicit=credential)
        try:
            check_push_access(client, target.path)
        except AuthenticationError as exc:
            client.close()
            reporter.warn(exc.message)
            continue
        except RegistryError as exc:
            client.close()
            raise _explain(exc, target) from exc
        where = store_credential(target.registry, credential)
        reporter.info(f"credentials for {target.registry} stored in {where}")
        return client


def _with_login_hint(exc: RegistryError, target: Repository) -> RegistryError:
    if isinstance(exc, AccessDeniedError) and exc.anonymous:
        exc.hint = (
            f"log in first ('mpkit login {target.registry}'), or pass --registry-username with "
            "--password-stdin, or set MPKIT_REGISTRY_USERNAME and MPKIT_REGISTRY_PASSWORD"
        )
    return exc


def _explain(exc: RegistryError, target: Repository) -> RegistryError:
    """Add what a push needs to know: ECR repositories must exist first (SPEC §4)."""
    if target.is_ecr and isinstance(exc, (RegistryUnreachableError, RetriesExhaustedError)):
        exc.hint = (
            f"ECR drops the connection when a repository does not exist: create it with 'aws ecr "
            f"create-repository --repository-name {target.path} --region {target.ecr_region}'"
        )
    if isinstance(exc, NotFoundError) and target.is_ecr:
        exc.hint = (
            f"create it: aws ecr create-repository --repository-name {target.path} --region "
            f"{target.ecr_region}; and allow anonymous pulls, which Aria Operations needs"
        )
    return exc


def _start_local_registry(target: Repository, options: ClientOptions, reporter: Reporter) -> None:
    """Only for a loopback *name* (a remote registry behind a local endpoint is not ours
    to replace), and only when nothing listens at all (a busy port is somebody's)."""
    endpoint = options.endpoints.get(target.registry, target.registry)
    if not (is_loopback_host(target.registry) and is_loopback_host(endpoint)):
        return
    host, port = split_host_port(endpoint)
    if _listening(host, port or 443):
        return
    root = default_root()
    handle = ensure_running(endpoint, root)
    if handle.started_now:
        reporter.info(
            f"nothing answered at {endpoint}, so mpkit started its built-in registry there "
            f"(data in {root}); stop it with 'mpkit registry stop'"
        )


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False

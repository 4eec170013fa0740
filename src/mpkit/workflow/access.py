"""Choose the pull and push repositories (flags, config.json, else a prompt) and prove access
before the long build."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

from mpkit.credentials import Credential, store_credential
from mpkit.errors import (
    AccessDeniedError,
    AuthenticationError,
    InvalidReferenceError,
    NoRegistryError,
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
from mpkit.registry import RegistryClient, blob_locations, open_client
from mpkit.registry.parallel import ABORT_GRACE_SECONDS
from mpkit.registry.transport import ClientOptions

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


# A rebuild uploads at least the image config and one layer: opened ahead, neither upload
# waits for a POST.
SESSIONS_AHEAD = 2


def check_push_access(client: RegistryClient, repository: str, sessions: int = 1) -> None:
    """Authenticate and prove push permission by opening *sessions* blob uploads, which
    the push then uses (the client cancels the ones it does not need)."""
    client.open_uploads(repository, sessions)


class PushAccess:
    """The client of a build's pushes, and the proof that it may push.

    :attr:`client` serves the build's reads at once (a registry cache, an SDK base); call
    :meth:`proven` before anything is written. The proof (authenticate, open the upload
    sessions the push uses) comes before the build when this repository is new to mpkit's
    records: a first build is long, and a missing login should fail it at once (or be
    asked for, on a terminal). When an earlier push went there, the build is most likely a
    quick rebuild whose time the proof would only add to: the proof then runs while the
    build does, and :meth:`proven` waits for it. A login typed after a refusal goes into
    this same client.
    """

    def __init__(
        self, target: Repository, *, options: ClientOptions, explicit: Credential | None,
        prompter: Prompter, reporter: Reporter,
    ) -> None:  # fmt: skip
        self.target = target
        self.explicit = explicit
        self.prompter = prompter
        self.reporter = reporter
        self.client = open_client(target.registry, options=options, explicit=explicit)
        self._proven = False
        self._checking: threading.Thread | None = None
        self._failure: Exception | None = None

    def check_now(self) -> None:
        try:
            check_push_access(self.client, self.target.path)
        except RegistryError as exc:
            self._after_failure(exc)
        self._proven = True

    def check_in_background(self) -> None:
        self._checking = threading.Thread(target=self._check, name="mpkit-push-access",
                                          daemon=True)  # fmt: skip
        self._checking.start()

    def _check(self) -> None:
        try:
            check_push_access(self.client, self.target.path, SESSIONS_AHEAD)
        except Exception as exc:  # proven() handles it in the caller's thread
            self._failure = exc

    def proven(self) -> RegistryClient:
        """The client, once proven: waits for a proof running in the background, and
        handles its failure as a proof before the build would (a prompt for credentials on
        a terminal, else the error)."""
        if not self._proven:
            assert self._checking is not None
            self._checking.join()
            failure = self._failure
            if isinstance(failure, RegistryError):
                self._after_failure(failure)
            elif failure is not None:
                raise failure
            self._proven = True
        return self.client

    def close(self) -> None:
        """Stop a proof still running (the build failed or was cancelled), then close the
        client. A proof blocked in a read (a registry slow to answer) gets the moment a
        cancelled transfer gets and is then left behind: its thread is a daemon, and Ctrl-C
        must not wait for the registry's answer."""
        checking = self._checking
        if checking is not None and checking.is_alive():
            self.client.transport.abort.set()
            checking.join(ABORT_GRACE_SECONDS)
        self.client.close()

    def __enter__(self) -> PushAccess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _after_failure(self, exc: RegistryError) -> None:
        """Ask for credentials when a login was refused on a terminal; else raise."""
        target = self.target
        if not isinstance(exc, (AuthenticationError, AccessDeniedError)):
            raise _explain(exc, target) from exc
        if not self.prompter.interactive or self.explicit is not None:
            raise _with_login_hint(exc, target) from None
        self.reporter.info(f"{target.registry} needs credentials to push to {target.path}.")
        while True:
            username = self.prompter.ask(f"Username for {target.registry}").strip()
            password = self.prompter.secret(f"Password or token for {username}@{target.registry}")
            credential = Credential(username=username, password=password, source="prompt")
            self.client.transport.use_credential(credential)
            try:
                check_push_access(self.client, target.path)
            except AuthenticationError as retry:
                self.reporter.warn(retry.message)
                continue
            except RegistryError as error:
                raise _explain(error, target) from error
            where = store_credential(target.registry, credential)
            self.reporter.info(f"credentials for {target.registry} stored in {where}")
            return


def connect_for_push(
    target: Repository,
    *,
    options: ClientOptions,
    explicit: Credential | None,
    prompter: Prompter,
    reporter: Reporter,
) -> PushAccess:
    """Access to push to *target*, proven now or while the build runs (see PushAccess).

    Credentials typed at the prompt are stored like `mpkit login` does, once they work.
    A loopback target where nothing answers gets mpkit's built-in registry.
    """
    _start_local_registry(target, options, reporter)
    access = PushAccess(target, options=options, explicit=explicit, prompter=prompter,
                        reporter=reporter)  # fmt: skip
    try:
        if blob_locations().knows_repository(target.registry, target.path):
            access.check_in_background()
        else:
            access.check_now()
    except BaseException:
        access.close()
        raise
    return access


def _with_login_hint(exc: RegistryError, target: Repository) -> RegistryError:
    if isinstance(exc, AccessDeniedError) and exc.anonymous:
        exc.hint = (
            f"log in first ('mpkit login {target.registry}'), or pass --registry-username with "
            "--password-stdin, or set MPKIT_REGISTRY_USERNAME and MPKIT_REGISTRY_PASSWORD"
        )
    return exc


def _explain(exc: RegistryError, target: Repository) -> RegistryError:
    """Add what a push needs to know: ECR repositories must exist before a push (unless the
    account enabled create-on-push), and a missing one may show only as a dropped connection."""
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
    # Imported here: the built-in registry's modules cost every other build ~20 ms.
    from mpkit.server import ensure_running
    from mpkit.server.config import default_root

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

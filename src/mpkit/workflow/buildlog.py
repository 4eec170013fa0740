"""logs/build.log: a detailed log of one build, with every known secret redacted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mpkit.credentials.types import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = ()
        return True


@contextmanager
def build_log(path: Path, secrets: list[str]) -> Iterator[logging.Logger]:
    """Log everything under the "mpkit" logger to *path* for the duration of a build."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter(secrets))
    logger = logging.getLogger("mpkit")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield logging.getLogger("mpkit.imagebuild")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()

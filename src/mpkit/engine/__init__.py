"""Container engines (podman, docker, buildah) driven through their command lines.

One :class:`Engine` serves building (the fallback for what the native builder cannot
do), describing (running the adapter's definition command in its image) and verifying
(``mpkit run``). :class:`EngineChoice` is the ``--engine`` option; :class:`EngineKind`
says what each engine can do. Failures are :class:`mpkit.errors.ContainerEngineError`,
with the tail of the engine's output; :class:`EngineUnusable` when the engine itself
cannot run containers here, which :class:`EngineHealth` remembers for a while.
"""

from mpkit.engine.driver import ContainerSpec, Engine, LocalImage, find_engine, find_engines
from mpkit.engine.health import EngineHealth, Verdict
from mpkit.engine.kinds import EngineChoice, EngineKind
from mpkit.engine.process import engine_environment, output_tail

__all__ = [
    "ContainerSpec",
    "Engine",
    "EngineChoice",
    "EngineHealth",
    "EngineKind",
    "LocalImage",
    "Verdict",
    "engine_environment",
    "find_engine",
    "find_engines",
    "output_tail",
]

"""Hello Adapter: a sample adapter that reports on the machine it runs on.

It needs no account and no network: it reads the load, memory, disk and uptime of the
machine (in Aria Operations, the cloud proxy's adapter container) through the Python
standard library and /proc. Replace the collection code with calls to the system you
want to monitor, and the definition with the objects, metrics and properties it has.

The SDK's server runs this file as ``python app/adapter.py COMMAND INPUT OUTPUT``
(see commands.cfg): COMMAND is test, collect, adapter_definition or endpoint_urls,
INPUT holds the adapter instance (its parameters and credentials) as JSON, and the
result is written to OUTPUT.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sys
import time
from pathlib import Path

import aria.ops.adapter_logging as logging
from aria.ops.adapter_instance import AdapterInstance
from aria.ops.definition.adapter_definition import AdapterDefinition
from aria.ops.definition.units import Units
from aria.ops.object import Identifier
from aria.ops.result import CollectResult, EndpointResult, TestResult

ADAPTER_KIND = "HelloAdapter"
ADAPTER_NAME = "Hello Adapter"
SYSTEM = "local_system"  # the object type this adapter collects

logger = logging.getLogger(__name__)


def get_adapter_definition() -> AdapterDefinition:
    """What the adapter collects; mpkit build turns it into describe.xml."""
    definition = AdapterDefinition(ADAPTER_KIND, ADAPTER_NAME)

    # Asked for whenever a user adds an account (adapter instance) in Aria Operations.
    definition.define_string_parameter(
        "disk_path",
        label="Disk path",
        description="The file system path whose disk space is reported.",
        default="/",
    )
    definition.define_int_parameter(
        "container_memory_limit",
        label="Adapter memory limit (MB)",
        description="How much memory the adapter's container may use.",
        default=1024,
        required=False,
        advanced=True,
    )

    # Reading the local machine needs no credentials; this optional credential kind
    # shows how an adapter declares one (read it with get_credential_value()).
    credential = definition.define_credential_type("local_account", "Local account")
    credential.define_string_parameter("user_name", "User name", required=False)
    credential.define_password_parameter("password", "Password", required=False)

    system = definition.define_object_type(SYSTEM, "Local system")
    system.define_string_identifier("machine_id", "Machine ID")
    system.define_string_property("hostname", "Host name")
    system.define_string_property("operating_system", "Operating system")
    system.define_string_property("kernel_release", "Kernel release")
    system.define_string_property("python_version", "Python version")
    system.define_metric("uptime", "Uptime", unit=Units.TIME.SECONDS)

    cpu = system.define_group("cpu", "CPU")
    cpu.define_metric("logical_cpus", "Logical CPUs", is_discrete=True)
    cpu.define_metric("load_1m", "Load average (1 minute)", is_kpi=True)
    cpu.define_metric("load_5m", "Load average (5 minutes)")
    cpu.define_metric("load_15m", "Load average (15 minutes)")

    memory = system.define_group("memory", "Memory")
    memory.define_metric("total", "Total", unit=Units.DATA_SIZE.KIBIBYTE, is_discrete=True)
    memory.define_metric("available", "Available", unit=Units.DATA_SIZE.KIBIBYTE, is_discrete=True)
    memory.define_metric("used", "Used", unit=Units.RATIO.PERCENT, is_kpi=True)

    disk = system.define_group("disk", "Disk")
    disk.define_metric("total", "Total", unit=Units.DATA_SIZE.BYTE, is_discrete=True)
    disk.define_metric("free", "Free", unit=Units.DATA_SIZE.BYTE, is_discrete=True)
    disk.define_metric("used", "Used", unit=Units.RATIO.PERCENT, is_kpi=True)
    return definition


def test(adapter_instance: AdapterInstance) -> TestResult:
    """Checks the account's settings when a user adds or edits it."""
    result = TestResult()
    disk_path = adapter_instance.get_identifier_value("disk_path", "/")
    if not Path(disk_path).is_dir():
        result.with_error(f"The disk path {disk_path!r} is not a directory on this machine.")
    return result


def collect(adapter_instance: AdapterInstance) -> CollectResult:
    """One collection: the local system with its metrics and properties."""
    result = CollectResult()
    hostname = socket.gethostname()
    system = result.object(
        ADAPTER_KIND, SYSTEM, hostname, [Identifier("machine_id", _machine_id(hostname))]
    )
    system.with_property("hostname", hostname)
    system.with_property("operating_system", platform.system())
    system.with_property("kernel_release", platform.release())
    system.with_property("python_version", platform.python_version())
    uptime = _uptime()
    if uptime is not None:
        system.with_metric("uptime", uptime)

    system.with_metric("cpu|logical_cpus", os.cpu_count() or 0)
    if hasattr(os, "getloadavg"):
        for key, value in zip(("load_1m", "load_5m", "load_15m"), os.getloadavg(), strict=True):
            system.with_metric(f"cpu|{key}", value)

    memory = _meminfo()
    if "MemTotal" in memory and "MemAvailable" in memory:
        total, available = memory["MemTotal"], memory["MemAvailable"]
        system.with_metric("memory|total", total)
        system.with_metric("memory|available", available)
        system.with_metric("memory|used", 100.0 * (total - available) / total if total else 0)

    disk_path = adapter_instance.get_identifier_value("disk_path", "/")
    try:
        usage = shutil.disk_usage(disk_path)
    except OSError as error:
        result.with_error(f"Cannot read the disk space of {disk_path!r}: {error}")
    else:
        system.with_metric("disk|total", usage.total)
        system.with_metric("disk|free", usage.free)
        system.with_metric("disk|used", 100.0 * usage.used / usage.total if usage.total else 0)
    return result


def get_endpoints(adapter_instance: AdapterInstance) -> EndpointResult:
    """Endpoints whose certificates the user must accept: none for the local machine."""
    return EndpointResult()


def _machine_id(fallback: str) -> str:
    try:
        with open("/etc/machine-id") as handle:
            return handle.read().strip() or fallback
    except OSError:
        return fallback


def _uptime() -> float | None:
    try:
        with open("/proc/uptime") as handle:
            return float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in KiB (empty where there is no /proc)."""
    values = {}
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    values[name] = int(parts[0])
    except OSError:
        pass
    return values


def main(argv: list[str]) -> None:
    logging.setup_logging("adapter.log")
    logging.rotate()  # one log file per command
    logger.info(f"Running adapter code with arguments: {argv}")
    if len(argv) != 3:
        logger.error("Arguments must be <method> <inputfile> <outputfile>")
        sys.exit(1)
    started = time.time()
    method = argv[0]
    if method == "test":
        test(AdapterInstance.from_input()).send_results()
    elif method == "collect":
        collect(AdapterInstance.from_input()).send_results()
    elif method == "endpoint_urls":
        get_endpoints(AdapterInstance.from_input()).send_results()
    elif method == "adapter_definition":
        get_adapter_definition().send_results()
    else:
        logger.error(f"Command {method!r} not found")
        sys.exit(1)
    logger.info(f"{method} took {time.time() - started:.3f} s")


if __name__ == "__main__":
    main(sys.argv[1:])

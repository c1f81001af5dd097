"""Run-time guards: no network access from benchmark processes, and cell processes die with the runner.

Benchmark cells read only local files. The network guard is a Python audit hook (PEP 578). It raises
NetworkAccessError on any socket connection, send or name lookup outside the loopback interface, so a
library that tries to fetch something during a run fails loudly instead of measuring a download. Only
`python -m bench data --download` runs without it. An audit hook cannot be removed, so it is installed
only in processes that never need the network.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_guard_installed = False


class NetworkAccessError(PermissionError):
    """A benchmark process tried to reach a host other than this machine."""


def is_loopback(host: object) -> bool:
    """Return True when `host` (a name, an address string or bytes) names this machine's loopback interface."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", errors="replace")
    if not isinstance(host, str):
        return False
    name = host.strip().lower().rstrip(".")
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


def _address_host(address: object) -> object:
    """Return the host part of a socket address; a Unix socket path counts as local (None)."""
    if isinstance(address, tuple) and address:
        return address[0]
    if isinstance(address, (str, bytes)):  # AF_UNIX path or abstract name
        return None
    return address


def _network_audit_hook(event: str, args: tuple) -> None:
    if not event.startswith("socket."):
        return
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        host = _address_host(args[1]) if len(args) > 1 else None
    elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
        host = args[0]
    else:
        return
    if not is_loopback(host):
        raise NetworkAccessError(
            f"network access to {host!r} ({event}) is blocked during a twinbench run: benchmarks read only "
            "local files. Download datasets beforehand with `python -m bench data --download`"
        )


def forbid_network() -> None:
    """Install the network guard in this process (once; later calls do nothing)."""
    global _guard_installed
    if _guard_installed:
        return
    sys.addaudithook(_network_audit_hook)
    _guard_installed = True


def exit_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent exits; exit now if the parent is already gone.

    The signal is tied to the parent thread that started this process, which for the runner is the
    thread blocked waiting for it. Elsewhere than Linux this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed with errno %d; this process may outlive the runner", ctypes.get_errno())
        return
    if os.getppid() != parent_pid:
        # The parent died between fork and prctl, so no process is waiting for this result.
        os._exit(1)

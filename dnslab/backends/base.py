"""The backend protocol: how a planned lab becomes real, and how to reach it.

Every method takes the instance :class:`~dnslab.state.State`; a backend records what
it creates there *before* creating it, so :meth:`Backend.destroy` can remove it after
any crash. Kinds describe nodes (:class:`~dnslab.nodespec.NodeSpec`); backends run them without
knowing any kind.
"""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

from ..errors import LabError

if TYPE_CHECKING:
    from ..nodespec import NodeSpec
    from ..plan import LabPlan
    from ..state import State


class BackendError(LabError):
    """A backend could not make or reach part of a lab."""

    exit_code = 3


class Backend(Protocol):
    name: str
    trainee_userns: bool  # a trainee's lab lives in a user namespace she owns: she enters its nodes herself

    def preflight(self, lab: LabPlan, programs: dict[str, str]) -> None:
        """Raise :class:`~dnslab.errors.EnvError` when this machine cannot run ``lab``, whose
        nodes need ``programs`` (executable -> Debian package)."""

    def node_path(self, state: State, node: str) -> str:
        """The node's directory as its daemon sees it (written into its config)."""

    def create(self, state: State, lab: LabPlan, specs: dict[str, NodeSpec]) -> None:
        """Make one instance real: its networks, its nodes with their files, their daemons
        started (not necessarily answering yet). Records what it makes before making it.
        When the lab has a trainee (``state.owner``), the files and daemons are the trainee's."""

    def stop_daemon(self, state: State, node: str, stop: Sequence[str]) -> None:
        """Stop the node's daemon (``stop``: its control tool's command), the node itself staying."""

    def start_daemon(self, state: State, node: str, argv: Sequence[str]) -> None:
        """Start the node's daemon (again)."""

    def block(self, state: State, node: str, rules: Sequence[str]) -> None:
        """Drop traffic inside the node: ``tcp/53``, ``udp/53``, ``fragments``, ``udp/53>1232``, ``all``;
        no rules: let it all through again."""

    def port_range(self, state: State, node: str, ports: tuple[int, int] | None) -> None:
        """Give the node's outgoing connections source ports from ``ports`` (first, last) only;
        None: the kernel's default range again."""

    def set_links(self, state: State, links: Sequence[tuple[str, str]], up: bool) -> None:
        """Cut (node, network) attachments (their carrier goes), or mend them."""

    def running(self, state: State, node: str) -> bool:
        """True while the node's daemon (or, for a node without one, the node) is alive."""

    def socket(self, state: State, node: str, family: int, type: int) -> socket.socket:
        """A socket inside the node's network, for probes and checks."""

    def exec(self, state: State, node: str, argv: Sequence[str], *,
             capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the node, as a shell there would: with the rights of the lab's
        trainee when it has one (``state.owner``), as root otherwise."""

    def log_path(self, state: State, node: str) -> Path:
        """The file holding the daemon's output."""

    def destroy(self, states: Sequence[State]) -> None:
        """Stop and remove everything these instances made; safe to call after any crash."""

    def leftovers(self, claimed: set[str]) -> list[str]:
        """Resources of ours (by name prefix) that no instance state claims (for ``gc``)."""

    def remove_leftovers(self, names: Sequence[str]) -> None:
        """Remove what :meth:`leftovers` found."""

"""Hosts on this machine: one Linux network namespace per host, each with its own sshd.

Each host is a network namespace joined by a veth pair to one bridge of the run, with an
address from a private /24 used only inside the run, its own hostname (UTS namespace) and its
own ``/opt/fogmarket`` (a private mount namespace binding a folder of the run directory there),
so that every host has the same paths as a Grid'5000 machine without seeing another host's
files. Each runs Debian's ``sshd`` with a host key and a client key made for the run: EnosLib
reaches them over SSH like any remote machine.

``LocalHosts`` is a context manager: leaving it, by success, error or signal, kills every
process of every namespace, deletes the namespaces and the bridge. ``cleanup_all`` removes what
an interrupted run (a killed controller) left behind.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .plan import ROOT

log = logging.getLogger(__name__)

#: Every namespace, bridge and veth of a run starts with this.
PREFIX = "fmk"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


class HostsError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.213.0.0/16 that no route of this machine overlaps."""
    routes = _ip("-4", "route", "show", "table", "all").stdout.split("\n")
    used = []
    for line in routes:
        first = line.split(" ", 1)[0]
        try:
            used.append(ipaddress.ip_network(first, strict=False))
        except ValueError:
            continue
    for third in secrets.SystemRandom().sample(range(256), 256):
        net = ipaddress.ip_network(f"10.213.{third}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise HostsError("no free /24 in 10.213.0.0/16 for the hosts' bridge")


@dataclass(frozen=True)
class LocalHost:
    alias: str
    namespace: str
    address: str
    root_dir: Path  # bound to /opt/fogmarket inside the host


class LocalHosts:
    """``count`` hosts named after ``aliases``, for one run, under ``run_dir``."""

    def __init__(self, aliases: list[str], run_dir: Path):
        if not aliases:
            raise HostsError("no host to make")
        self.run_id = secrets.token_hex(2)
        self.tag = f"{PREFIX}{self.run_id}"  # at most 7 characters: interface names are <= 15
        self.run_dir = run_dir
        self.aliases = aliases
        self.bridge = f"{self.tag}br"
        self.subnet: ipaddress.IPv4Network | None = None
        self.hosts: list[LocalHost] = []
        self.key = run_dir / "ssh" / "id_ed25519"
        self._sshd: list[subprocess.Popen] = []
        self._made_root = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "LocalHosts":
        self._previous = {
            s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)
        }
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()
        for s, h in self._previous.items():
            signal.signal(s, h)

    def create(self) -> None:
        for tool in ("ip", "unshare", "ssh-keygen", SSHD):
            if shutil.which(tool) is None and not Path(tool).exists():
                raise HostsError(
                    f"`{tool}` is missing: the local hosts need iproute2, util-linux and "
                    "openssh-server (apt-get install iproute2 util-linux openssh-server)"
                )
        if os.geteuid() != 0:
            raise HostsError("the local hosts are network namespaces: run as root")
        self.subnet = _free_subnet()
        gateway = f"{self.subnet.network_address + 1}"
        (self.run_dir / "ssh").mkdir(parents=True, exist_ok=True)
        _keygen(self.key)
        if not Path(ROOT).exists():
            Path(ROOT).mkdir(parents=True)
            self._made_root = True
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, alias in enumerate(self.aliases):
            ns = f"{self.tag}-{i}"
            address = f"{self.subnet.network_address + 2 + i}"
            root_dir = self.run_dir / "hosts" / alias
            root_dir.mkdir(parents=True, exist_ok=True)
            host = LocalHost(alias, ns, address, root_dir)
            self.hosts.append(host)
            _ip("netns", "add", ns)
            veth = f"{self.tag}v{i}"
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", gateway)
            self._start_sshd(host)
        self._wait_ssh()

    def _start_sshd(self, host: LocalHost) -> None:
        ssh_dir = self.run_dir / "ssh" / host.alias
        ssh_dir.mkdir(parents=True, exist_ok=True)
        host_key = ssh_dir / "host_ed25519"
        _keygen(host_key)
        config = ssh_dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    "Port 22",
                    f"ListenAddress {host.address}",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {self.key}.pub",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "MaxStartups 100:30:200",
                    f"PidFile {ssh_dir}/sshd.pid",
                    f"Subsystem sftp {SFTP_SERVER}",
                    "",
                ]
            )
        )
        hostname = host.alias[:63]
        inner = (
            f"hostname {hostname} && mount --bind {host.root_dir} {ROOT}"
            f" && exec {SSHD} -D -f {config} -E {ssh_dir}/sshd.log"
        )
        self._sshd.append(
            subprocess.Popen(
                ["ip", "netns", "exec", host.namespace, "unshare", "--mount", "--uts",
                 "--propagation", "private", "sh", "-c", inner],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=open(ssh_dir / "start.log", "w"),
                start_new_session=True,
            )
        )

    def _wait_ssh(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = list(self.hosts)
        while waiting:
            for proc, host in zip(self._sshd, self.hosts):
                if proc.poll() is not None and host in waiting:
                    log_text = (self.run_dir / "ssh" / host.alias / "start.log").read_text()
                    raise HostsError(f"sshd of host {host.alias} exited: {log_text.strip()}")
            still = []
            for host in waiting:
                try:
                    with socket.create_connection((host.address, 22), timeout=0.5):
                        pass
                except OSError:
                    still.append(host)
            waiting = still
            if waiting and time.monotonic() > deadline:
                names = ", ".join(h.alias for h in waiting)
                raise HostsError(f"sshd not reachable within {timeout_s:.0f} s on: {names}")
            if waiting:
                time.sleep(0.1)

    def destroy(self) -> None:
        """Kills every process of every namespace, deletes namespaces, veths and the bridge."""
        for host in self.hosts:
            _kill_namespace(host.namespace)
        for proc in self._sshd:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        cleanup_all(self.tag)
        if self._made_root:
            try:
                Path(ROOT).rmdir()
            except OSError:
                pass
        self.hosts = []
        self._sshd = []

    # -- what EnosLib needs -------------------------------------------------------------------

    def static_conf(self, roles: dict[str, list[str]]) -> dict:
        """The ``en.StaticConf`` dictionary: every host with its roles, and the bridge network."""
        assert self.subnet is not None
        machines = [
            {
                "roles": roles[h.alias],
                "address": h.address,
                "alias": h.alias,
                "user": "root",
                "keyfile": str(self.key),
                # The namespaces share this machine's Python; the system one has no pyenv shim.
                "extra": {
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                    "-o UserKnownHostsFile=/dev/null",
                },
            }
            for h in self.hosts
        ]
        return {
            "resources": {
                "machines": machines,
                "networks": [
                    {
                        "roles": ["fogmarket"],
                        "cidr": str(self.subnet),
                        "gateway": f"{self.subnet.network_address + 1}",
                        "dns": f"{self.subnet.network_address + 1}",
                    }
                ],
            }
        }


class Interrupted(Exception):
    pass


def _raise_interrupt(signum, _frame):
    raise Interrupted(f"stopped by signal {signum}")


def _keygen(path: Path) -> None:
    if path.exists():
        path.unlink()
        Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fogmarket-enos", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _kill_namespace(ns: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    sig = signal.SIGTERM
    while True:
        out = _ip("netns", "pids", ns, check=False)
        pids = [int(p) for p in out.stdout.split()] if out.returncode == 0 else []
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline - timeout_s / 2:
            sig = signal.SIGKILL
        if time.monotonic() > deadline:
            log.warning("namespace %s: processes %s outlived SIGKILL", ns, pids)
            return
        time.sleep(0.1)


def cleanup_all(tag: str = PREFIX) -> list[str]:
    """Deletes every namespace and link whose name starts with ``tag`` (and their processes);
    returns what it removed."""
    removed = []
    names = _ip("netns", "list", check=False).stdout.split("\n")
    for line in names:
        ns = line.split(" ", 1)[0]
        if ns.startswith(tag):
            _kill_namespace(ns)
            _ip("netns", "del", ns, check=False)
            removed.append(ns)
    links = _ip("-o", "link", "show", check=False).stdout.split("\n")
    for line in links:
        parts = line.split(": ")
        if len(parts) < 2:
            continue
        name = parts[1].split("@", 1)[0]
        if name.startswith(tag):
            _ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def leftovers(tag: str = PREFIX, run_dir: Path | None = None) -> list[str]:
    """Namespaces and links of the runs, and processes started from ``run_dir``, if any
    remain."""
    found = [
        line.split(" ", 1)[0]
        for line in _ip("netns", "list", check=False).stdout.split("\n")
        if line.startswith(tag)
    ]
    for line in _ip("-o", "link", "show", check=False).stdout.split("\n"):
        parts = line.split(": ")
        if len(parts) >= 2 and parts[1].split("@", 1)[0].startswith(tag):
            found.append(parts[1].split("@", 1)[0])
    if run_dir is not None:
        marker = str(run_dir).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                text = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
                found.append(f"process {proc.name}: {text}")
    return found

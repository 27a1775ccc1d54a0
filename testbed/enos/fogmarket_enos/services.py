"""A long-running program of the deployment, started the way its host allows.

On Grid'5000 a host runs systemd: a service is a unit under ``/etc/systemd/system``, started
with ``systemctl``. The network-namespace hosts of ``enos-local`` share this machine's init,
which is not systemd there, so the same service runs as a plain process in its own session,
with a pid file. Both come from one ``Service`` description: the command, its environment file
(mode 600, so secrets stay off command lines) and its log.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from .plan import Layout

MANAGERS = ("systemd", "process")


@dataclass(frozen=True)
class Service:
    name: str
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    user: str = "root"
    #: ``simple`` keeps running; ``oneshot`` runs to completion (the IoT experiment).
    kind: str = "simple"

    def unit_name(self) -> str:
        return f"fogmarket-{self.name}.service"

    def env_file(self, layout: Layout) -> str:
        return f"{layout.etc}/{self.name}.env"

    def log_file(self, layout: Layout) -> str:
        return f"{layout.log}/{self.name}.log"

    def pid_file(self, layout: Layout) -> str:
        return f"{layout.run}/{self.name}.pid"

    def env_text(self) -> str:
        """The environment file: ``KEY=value`` lines, values quoted for both systemd and sh."""
        lines = []
        for k, v in sorted(self.env.items()):
            if not k.replace("_", "").isalnum():
                raise ValueError(f"service {self.name}: `{k}` is not an environment variable name")
            if "\n" in v or "'" in v:
                raise ValueError(f"service {self.name}: the value of {k} holds a newline or quote")
            lines.append(f"{k}='{v}'")
        return "\n".join(lines) + ("\n" if lines else "")

    def unit(self, layout: Layout) -> str:
        """The systemd unit."""
        restart = "no" if self.kind == "oneshot" else "on-failure"
        service_type = "exec" if self.kind == "simple" else "oneshot"
        return "\n".join(
            [
                "[Unit]",
                f"Description=Fogmarket {self.name}",
                "After=network-online.target",
                "Wants=network-online.target",
                "",
                "[Service]",
                f"Type={service_type}",
                f"User={self.user}",
                f"EnvironmentFile={self.env_file(layout)}",
                f"WorkingDirectory={layout.root}",
                f"ExecStart={shlex.join(self.command)}",
                f"StandardOutput=append:{self.log_file(layout)}",
                f"StandardError=append:{self.log_file(layout)}",
                f"Restart={restart}",
                "RestartSec=1",
                "LimitNOFILE=65536",
                "",
                "[Install]",
                "WantedBy=multi-user.target",
                "",
            ]
        )

    def start_command(self, manager: str, layout: Layout) -> str:
        """The shell command that starts the service (its unit or env file already written)."""
        if manager == "systemd":
            verb = "start" if self.kind == "oneshot" else "restart"
            # A oneshot unit is started without waiting: the deployment polls for its result.
            no_block = " --no-block" if self.kind == "oneshot" else ""
            return f"systemctl daemon-reload && systemctl{no_block} {verb} {self.unit_name()}"
        if manager == "process":
            pid = self.pid_file(layout)
            run_as = "" if self.user == "root" else f"runuser -u {shlex.quote(self.user)} -- "
            inner = (
                f"echo $$ > {shlex.quote(pid)}; exec {run_as}{shlex.join(self.command)}"
                f" >> {shlex.quote(self.log_file(layout))} 2>&1"
            )
            return (
                f"cd {shlex.quote(layout.root)} && set -a && . {shlex.quote(self.env_file(layout))}"
                f" && set +a && setsid -f sh -c {shlex.quote(inner)} < /dev/null > /dev/null 2>&1"
            )
        raise ValueError(f"service manager `{manager}` is not one of {MANAGERS}")

    def alive_command(self, manager: str, layout: Layout) -> str:
        """A shell command that succeeds while the service runs."""
        if manager == "systemd":
            # A running oneshot unit is `activating`, not `active`.
            return (
                f'case "$(systemctl is-active {self.unit_name()})" in '
                "active|activating|reloading) true;; *) false;; esac"
            )
        if manager == "process":
            pid = shlex.quote(self.pid_file(layout))
            return f"[ -f {pid} ] && kill -0 $(cat {pid}) 2>/dev/null"
        raise ValueError(f"service manager `{manager}` is not one of {MANAGERS}")

    def stop_command(self, manager: str, layout: Layout) -> str:
        """The shell command that stops the service; stopping a stopped service succeeds."""
        if manager == "systemd":
            return f"systemctl stop {self.unit_name()} || true"
        if manager == "process":
            pid = shlex.quote(self.pid_file(layout))
            return (
                f"if [ -f {pid} ]; then kill $(cat {pid}) 2>/dev/null;"
                f" for i in $(seq 50); do kill -0 $(cat {pid}) 2>/dev/null || break; sleep 0.1; done;"
                f" kill -9 $(cat {pid}) 2>/dev/null; rm -f {pid}; fi; true"
            )
        raise ValueError(f"service manager `{manager}` is not one of {MANAGERS}")

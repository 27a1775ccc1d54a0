"""The `--backend openfaas` part of the EnosLib deployment: a real OpenFaaS under each fog node.

This module owns what a host needs so that its fog node deploys functions to a real OpenFaaS
gateway instead of the embedded one: a single-node k3s (set up as GIRAFF ran it on Grid'5000:
traefik, local-storage and servicelb disabled, flannel host-gw), Helm, the OpenFaaS Community
Edition chart with its values, the gateway password, and the `[faas]` table of the fog node's
configuration that points at that gateway.

Everything here is a pure function returning data: the Ansible steps as `Task` values (builtin
modules only, each idempotent), the Helm values, the configuration table. The deployer runs the
steps inside `en.actions(...)` (see `add_tasks`) and reads the password back from the results
(see `passwords_by_host`). The steps themselves need the Internet (get.k3s.io, get.helm.sh,
the chart repository, container registries), so they are not run by the unit tests; the tests
check what is generated.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from typing import Any, Iterable

import yaml


@dataclass(frozen=True)
class Versions:
    """Pinned versions: a rerun months later installs the same stack.

    - `k3s`: a k3s release tag (https://github.com/k3s-io/k3s/releases); the install script
      downloads this exact binary and checks its sha256.
    - `openfaas_chart`: version of the `openfaas` chart of the faas-netes Helm repository,
      https://openfaas.github.io/faas-netes/ (pinned, as published there: `openfaas-<version>.tgz`).
      The chart decides the gateway, faas-netes and queue-worker images; GIRAFF's images
      (gateway 0.27.2, faas-netes 0.17.1, queue-worker 0.14.0) came from an older chart that no
      longer runs on current Kubernetes releases.
    - `helm`: a Helm 3 release (https://github.com/helm/helm/releases), fetched from get.helm.sh
      and checked against the sha256 published next to it.
    """

    k3s: str = "v1.31.4+k3s1"
    openfaas_chart: str = "14.2.132"
    helm: str = "v3.16.4"


@dataclass(frozen=True)
class Task:
    """One Ansible step: `module` is a fully qualified builtin module, `args` its arguments.

    Run it with `add_tasks`, or by hand as `getattr(a, task.module)(**task.action_kwargs())`.
    """

    name: str
    module: str
    args: dict
    register: str | None = None

    def action_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for an EnosLib `actions` call.

        EnosLib takes the task's name as `task_name`: a `name=` keyword would be passed on to
        the module as a module argument (and `ansible.builtin.shell` rejects it).
        """
        kwargs: dict[str, Any] = {"task_name": self.name, **self.args}
        if self.register is not None:
            kwargs["register"] = self.register
        return kwargs


def add_tasks(actions: Any, tasks: Iterable[Task]) -> None:
    """Adds `tasks`, in order, to an EnosLib `actions` block (they run when the block closes)."""
    for task in tasks:
        getattr(actions, task.module)(**task.action_kwargs())


# Where things live on a host.
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
K3S_BINARY = "/usr/local/bin/k3s"
K3S_INSTALL_SCRIPT = "/usr/local/bin/k3s-install.sh"
K3S_UNINSTALL_SCRIPT = "/usr/local/bin/k3s-uninstall.sh"
WORK_DIR = "/opt/fogmarket-openfaas"
VALUES_FILE = f"{WORK_DIR}/openfaas-values.yaml"
HELM_LINK = "/usr/local/bin/helm"

# OpenFaaS names the chart and the fog node rely on.
SYSTEM_NAMESPACE = "openfaas"
FUNCTIONS_NAMESPACE = "openfaas-fn"
RELEASE = "openfaas"
CHART_REPO_NAME = "openfaas"
CHART_REPO_URL = "https://openfaas.github.io/faas-netes/"
CHART = f"{CHART_REPO_NAME}/openfaas"
GATEWAY_NODE_PORT = 31112
GATEWAY_USERNAME = "admin"  # the user the chart's generated `basic-auth` secret holds

# The flags GIRAFF gave k3s: no ingress controller, no local-path provisioner, no service load
# balancer (the gateway is reached through its NodePort), flannel without encapsulation.
K3S_DISABLED = ("traefik", "local-storage", "servicelb")
K3S_FLANNEL_BACKEND = "host-gw"

# The name of the task whose stdout is the gateway password, for `passwords_by_host`.
PASSWORD_TASK = "Read the OpenFaaS gateway password"
PASSWORD_REGISTER = "openfaas_password"


def helm_dir(versions: Versions) -> str:
    """The directory holding the pinned `helm` binary; a new version gets a new directory."""
    return f"{WORK_DIR}/helm-{versions.helm}"


def helm_binary(versions: Versions) -> str:
    return f"{helm_dir(versions)}/helm"


def helm_tarball_url(versions: Versions, arch: str = "amd64") -> str:
    return f"https://get.helm.sh/helm-{versions.helm}-linux-{arch}.tar.gz"


def k3s_exec_flags(node_ip: str) -> list[str]:
    """The k3s server flags (`INSTALL_K3S_EXEC`): GIRAFF's set-up, bound to `node_ip`."""
    address = str(ipaddress.ip_address(node_ip))
    flags: list[str] = []
    for component in K3S_DISABLED:
        flags += ["--disable", component]
    flags += ["--flannel-backend", K3S_FLANNEL_BACKEND]
    flags += ["--node-ip", address]
    # Readable by non-root users (kubectl, helm) without sudo.
    flags += ["--write-kubeconfig-mode", "644"]
    return flags


def helm_values(*, functions_namespace: str = FUNCTIONS_NAMESPACE) -> dict[str, Any]:
    """Values for the OpenFaaS Community Edition chart; chart defaults for everything else."""
    return {
        "functionNamespace": functions_namespace,
        "openfaasPro": False,
        # Basic auth on the `/system/*` API; the chart generates the `basic-auth` secret
        # (user `admin`, random password) once, at install, and keeps it across upgrades.
        "basic_auth": True,
        "generateBasicAuth": True,
        # The fog node on the same host reaches the gateway on a fixed NodePort.
        "exposeServices": True,
        "serviceType": "NodePort",
        "gateway": {"nodePort": GATEWAY_NODE_PORT},
        # faas-netes (the controller in the gateway pod) manages functions; the operator is
        # an OpenFaaS Pro feature and the chart refuses it without a licence.
        "operator": {"create": False},
        # Asynchronous invocation is off: fog nodes only deploy and invoke synchronously, so
        # NATS and the queue-worker would only take memory on small edge hosts.
        "async": False,
        # Pull images once per host: repeated deployments of the same function in an
        # experiment should not hit registry rate limits or wait for a pull each time.
        "openfaasImagePullPolicy": "IfNotPresent",
        "functions": {"imagePullPolicy": "IfNotPresent"},
    }


def helm_values_yaml(*, functions_namespace: str = FUNCTIONS_NAMESPACE) -> str:
    """`helm_values()` as the YAML text of the values file written on each host."""
    header = "# Generated by fogmarket_enos.openfaas; edit helm_values() instead.\n"
    body = yaml.safe_dump(
        helm_values(functions_namespace=functions_namespace),
        sort_keys=False,
        default_flow_style=False,
    )
    return header + body


def _shell(name: str, script: str, register: str | None = None, **args: Any) -> Task:
    """A bash step that stops at the first failing command, pipes included."""
    return Task(
        name=name,
        module="ansible.builtin.shell",
        args={"cmd": "set -euo pipefail\n" + script, "executable": "/bin/bash", **args},
        register=register,
    )


def _kubectl(arguments: str) -> str:
    return f"{K3S_BINARY} kubectl {arguments}"


def _helm(versions: Versions, arguments: str) -> str:
    return f"KUBECONFIG={KUBECONFIG} {helm_binary(versions)} {arguments}"


def install_tasks(
    versions: Versions = Versions(),
    *,
    node_ip: str,
    arch: str = "amd64",
    timeout_s: int = 300,
) -> list[Task]:
    """The steps that leave a single-node k3s with OpenFaaS on a host, ending with the gateway
    password registered as `openfaas_password` (and returned by the task `PASSWORD_TASK`).

    `node_ip` is the host's address on the experiment network (k3s binds its node to it);
    `arch` the Go architecture of the Helm binary; `timeout_s` bounds each wait.
    """
    flags = " ".join(k3s_exec_flags(node_ip))
    helm_tarball = f"{WORK_DIR}/helm-{versions.helm}-linux-{arch}.tar.gz"
    helm_url = helm_tarball_url(versions, arch)
    wait = f"{timeout_s}s"
    namespaces = " ".join((SYSTEM_NAMESPACE, FUNCTIONS_NAMESPACE))
    create_namespace = _kubectl('create namespace "$ns" --dry-run=client -o yaml')

    return [
        Task(
            name="Create the OpenFaaS work directory",
            module="ansible.builtin.file",
            args={"path": WORK_DIR, "state": "directory", "mode": "0755"},
        ),
        # The script is the current one from get.k3s.io; the k3s binary it installs is the
        # pinned INSTALL_K3S_VERSION, checked against the release's sha256.
        Task(
            name="Fetch the k3s install script",
            module="ansible.builtin.get_url",
            args={"url": "https://get.k3s.io", "dest": K3S_INSTALL_SCRIPT, "mode": "0755"},
        ),
        # Skipped when k3s is already there; to change its version, uninstall first.
        _shell(
            "Install k3s",
            f"INSTALL_K3S_VERSION={shlex.quote(versions.k3s)} "
            f"INSTALL_K3S_EXEC={shlex.quote(flags)} "
            f"{K3S_INSTALL_SCRIPT}\n",
            creates=K3S_BINARY,
        ),
        # `kubectl wait` fails at once when no node is registered yet, so wait for one first.
        _shell(
            "Wait for the k3s node to be Ready",
            f"for _ in $(seq 1 {max(timeout_s // 2, 1)}); do\n"
            f"  {_kubectl('get nodes -o name')} 2>/dev/null | grep -q . && break\n"
            "  sleep 2\n"
            "done\n"
            f"{_kubectl(f'wait --for=condition=Ready node --all --timeout={wait}')}\n",
        ),
        Task(
            name="Fetch Helm",
            module="ansible.builtin.get_url",
            args={
                "url": helm_url,
                "dest": helm_tarball,
                "checksum": f"sha256:{helm_url}.sha256sum",
                "mode": "0644",
            },
        ),
        _shell(
            "Unpack Helm",
            f"mkdir -p {helm_dir(versions)}\n"
            f"tar -xzf {helm_tarball} -C {helm_dir(versions)} --strip-components=1 "
            f"linux-{arch}/helm\n",
            creates=helm_binary(versions),
        ),
        Task(
            name="Put the pinned Helm on the PATH",
            module="ansible.builtin.file",
            args={"src": helm_binary(versions), "path": HELM_LINK, "state": "link", "force": True},
        ),
        # What the chart's namespaces.yml creates, without fetching it from the default branch.
        _shell(
            "Create the OpenFaaS namespaces",
            f"for ns in {namespaces}; do\n"
            f"  {create_namespace} | {_kubectl('apply -f -')}\n"
            "done\n",
        ),
        Task(
            name="Write the OpenFaaS chart values",
            module="ansible.builtin.copy",
            args={"content": helm_values_yaml(), "dest": VALUES_FILE, "mode": "0644"},
        ),
        _shell(
            "Add the OpenFaaS chart repository",
            _helm(versions, f"repo add {CHART_REPO_NAME} {CHART_REPO_URL} --force-update") + "\n",
        ),
        _shell(
            "Install the OpenFaaS chart",
            _helm(
                versions,
                f"upgrade --install {RELEASE} {CHART} --version {versions.openfaas_chart} "
                f"--namespace {SYSTEM_NAMESPACE} --values {VALUES_FILE}",
            )
            + "\n",
        ),
        _shell(
            "Wait for the OpenFaaS gateway",
            _kubectl(f"-n {SYSTEM_NAMESPACE} rollout status deploy/gateway --timeout={wait}")
            + "\n",
        ),
        _shell(
            PASSWORD_TASK,
            _kubectl(
                f"-n {SYSTEM_NAMESPACE} get secret basic-auth "
                "-o jsonpath='{.data.basic-auth-password}'"
            )
            + " | base64 -d\n",
            register=PASSWORD_REGISTER,
        ),
    ]


def passwords_by_host(results: Iterable[Any]) -> dict[str, str]:
    """The gateway password of each host, from the EnosLib results of `install_tasks`."""
    return {
        r.host: r.payload["stdout"].strip()
        for r in results
        if r.task == PASSWORD_TASK and r.status == "OK"
    }


def fog_node_faas_table(
    *,
    password: str,
    gateway_url: str = f"http://127.0.0.1:{GATEWAY_NODE_PORT}",
    username: str = GATEWAY_USERNAME,
    ready_timeout: str = "120 s",
) -> dict[str, str]:
    """The `[faas]` table of the fog node's configuration for the OpenFaaS backend.

    `ready_timeout` is longer than the fog node's default (30 s): a function's first start on
    a fresh host includes pulling its image.
    """
    return {
        "backend": "openfaas",
        "gateway_url": gateway_url,
        "username": username,
        "password": password,
        "ready_timeout": ready_timeout,
    }


def uninstall_tasks() -> list[Task]:
    """The steps that remove k3s (with OpenFaaS and its functions) and the files put here."""
    return [
        Task(
            name="Uninstall k3s",
            module="ansible.builtin.shell",
            args={"cmd": K3S_UNINSTALL_SCRIPT, "removes": K3S_UNINSTALL_SCRIPT},
        ),
        Task(
            name="Remove the Helm link",
            module="ansible.builtin.file",
            args={"path": HELM_LINK, "state": "absent"},
        ),
        Task(
            name="Remove the OpenFaaS work directory",
            module="ansible.builtin.file",
            args={"path": WORK_DIR, "state": "absent"},
        ),
    ]


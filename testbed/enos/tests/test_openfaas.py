"""Checks the generated OpenFaaS steps and values; nothing here installs anything."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from fogmarket_enos import openfaas
from fogmarket_enos.openfaas import Task, Versions

FOG_NODE_CONFIG = Path(__file__).resolve().parents[3] / "fog_node" / "src" / "config.rs"
NODE_IP = "10.20.30.40"


def tasks() -> list[Task]:
    return openfaas.install_tasks(node_ip=NODE_IP)


def task_named(name: str) -> Task:
    (task,) = [t for t in tasks() if t.name == name]
    return task


def shell_words(task: Task) -> list[str]:
    """The words of a shell step's script, without the `set -euo pipefail` preamble."""
    return shlex.split(task.args["cmd"].removeprefix("set -euo pipefail\n"))


def rust_block(source: str, kind: str, name: str) -> str:
    match = re.search(rf"pub {kind} {name} \{{(.*?)\n\}}", source, re.S)
    assert match, f"{kind} {name} not found in {FOG_NODE_CONFIG}"
    return match.group(1)


def faas_config_fields() -> set[str]:
    body = rust_block(FOG_NODE_CONFIG.read_text(), "struct", "FaasConfig")
    return set(re.findall(r"^\s*pub (\w+):", body, re.M))


def faas_backend_names() -> set[str]:
    """The TOML spellings of `FaasBackend`'s variants (the enum is `rename_all = "snake_case"`)."""
    source = FOG_NODE_CONFIG.read_text()
    assert re.search(
        r'#\[serde\(rename_all = "snake_case"\)\]\s*pub enum FaasBackend', source
    ), "FaasBackend no longer renames its variants to snake_case; update this test"
    body = rust_block(source, "enum", "FaasBackend")
    variants = re.findall(r"^\s*(\w+),", body, re.M)
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", v).lower() for v in variants}


def module_options(module: str) -> dict[str, dict]:
    """The documented options of an `ansible.builtin` module, doc fragments included."""
    from ansible.plugins.loader import fragment_loader
    from ansible.utils.plugin_docs import get_docstring

    short = module.removeprefix("ansible.builtin.")
    path = importlib.import_module(f"ansible.modules.{short}").__file__
    doc, *_ = get_docstring(path, fragment_loader)
    return doc["options"]


# --- k3s -------------------------------------------------------------------------------------


def test_k3s_exec_flags_disable_each_component_and_bind_the_node_ip():
    words = shell_words(task_named("Install k3s"))
    (exec_value,) = [w.split("=", 1)[1] for w in words if w.startswith("INSTALL_K3S_EXEC=")]
    flags = shlex.split(exec_value)
    pairs = list(zip(flags, flags[1:]))
    for component in ("traefik", "local-storage", "servicelb"):
        assert ("--disable", component) in pairs
    assert ("--flannel-backend", "host-gw") in pairs
    assert ("--node-ip", NODE_IP) in pairs
    assert ("--write-kubeconfig-mode", "644") in pairs


def test_a_node_ip_that_is_not_an_address_is_refused_before_reaching_a_shell():
    with pytest.raises(ValueError):
        openfaas.install_tasks(node_ip="10.0.0.1; rm -rf /")


def test_the_node_must_be_ready_before_helm_runs():
    names = [t.name for t in tasks()]
    wait = names.index("Wait for the k3s node to be Ready")
    assert names.index("Install k3s") < wait < names.index("Install the OpenFaaS chart")
    script = task_named("Wait for the k3s node to be Ready").args["cmd"]
    assert "kubectl wait --for=condition=Ready node --all --timeout=300s" in script


# --- versions --------------------------------------------------------------------------------


def test_versions_are_pinned_releases_not_channels():
    versions = Versions()
    assert re.fullmatch(r"v\d+\.\d+\.\d+\+k3s\d+", versions.k3s)
    assert re.fullmatch(r"\d+\.\d+\.\d+", versions.openfaas_chart)
    assert re.fullmatch(r"v3\.\d+\.\d+", versions.helm)
    generated = json.dumps([dataclasses.asdict(t) for t in tasks()])
    for floating in ("latest", "stable", "INSTALL_K3S_CHANNEL"):
        assert floating not in generated


def test_the_pinned_versions_reach_the_install_commands():
    versions = Versions(k3s="v1.30.8+k3s1", openfaas_chart="14.2.100", helm="v3.15.4")
    generated = openfaas.install_tasks(versions, node_ip=NODE_IP)
    by_name = {t.name: t for t in generated}
    assert f"INSTALL_K3S_VERSION={versions.k3s}" in shell_words(by_name["Install k3s"])
    assert by_name["Fetch Helm"].args["url"] == (
        "https://get.helm.sh/helm-v3.15.4-linux-amd64.tar.gz"
    )
    assert "--version" in shell_words(by_name["Install the OpenFaaS chart"])
    assert "14.2.100" in shell_words(by_name["Install the OpenFaaS chart"])


def test_helm_is_checked_against_its_published_checksum():
    fetch = task_named("Fetch Helm")
    assert fetch.args["checksum"] == "sha256:" + fetch.args["url"] + ".sha256sum"


# --- helm ------------------------------------------------------------------------------------


def test_the_helm_command_installs_the_pinned_chart_with_the_written_values_file():
    words = shell_words(task_named("Install the OpenFaaS chart"))
    assert words[0] == "KUBECONFIG=/etc/rancher/k3s/k3s.yaml"
    assert words[1] == openfaas.helm_binary(Versions())
    assert words[2:6] == ["upgrade", "--install", "openfaas", "openfaas/openfaas"]
    assert words[words.index("--version") + 1] == Versions().openfaas_chart
    assert words[words.index("--namespace") + 1] == "openfaas"
    values_path = words[words.index("--values") + 1]
    write = task_named("Write the OpenFaaS chart values")
    assert write.args["dest"] == values_path
    assert yaml.safe_load(write.args["content"]) == openfaas.helm_values()


def test_the_chart_repository_is_added_before_the_chart_is_installed():
    names = [t.name for t in tasks()]
    assert names.index("Add the OpenFaaS chart repository") < names.index(
        "Install the OpenFaaS chart"
    )
    words = shell_words(task_named("Add the OpenFaaS chart repository"))
    assert words[2:5] == ["repo", "add", "openfaas"]
    assert "https://openfaas.github.io/faas-netes/" in words


def test_helm_values_yaml_parses_back_to_helm_values():
    assert yaml.safe_load(openfaas.helm_values_yaml()) == openfaas.helm_values()
    custom = openfaas.helm_values_yaml(functions_namespace="fns")
    assert yaml.safe_load(custom) == openfaas.helm_values(functions_namespace="fns")


def test_helm_values_turn_on_generated_basic_auth_and_a_fixed_gateway_node_port():
    values = openfaas.helm_values()
    assert values["basic_auth"] is True
    assert values["generateBasicAuth"] is True
    assert values["serviceType"] == "NodePort"
    assert values["gateway"]["nodePort"] == 31112
    assert values["operator"]["create"] is False
    assert values["async"] is False


def test_the_namespaces_created_are_the_ones_the_chart_uses():
    script = task_named("Create the OpenFaaS namespaces").args["cmd"]
    assert "for ns in openfaas openfaas-fn; do" in script
    assert "--dry-run=client -o yaml" in script and "apply -f -" in script
    assert openfaas.helm_values()["functionNamespace"] == "openfaas-fn"


def test_the_gateway_rollout_is_awaited_before_the_password_is_read():
    names = [t.name for t in tasks()]
    assert names[-2:] == ["Wait for the OpenFaaS gateway", openfaas.PASSWORD_TASK]
    assert "rollout status deploy/gateway" in task_named("Wait for the OpenFaaS gateway").args["cmd"]


def test_the_password_is_read_from_the_basic_auth_secret_and_registered():
    task = task_named(openfaas.PASSWORD_TASK)
    assert task.register == "openfaas_password"
    script = task.args["cmd"]
    assert "get secret basic-auth" in script
    assert "jsonpath='{.data.basic-auth-password}'" in script
    assert script.rstrip().endswith("| base64 -d")
    assert task.args["executable"] == "/bin/bash"  # for pipefail


# --- ansible modules -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["install", "uninstall"])
def test_tasks_use_only_builtin_modules_with_documented_arguments(kind):
    generated = tasks() if kind == "install" else openfaas.uninstall_tasks()
    for task in generated:
        assert task.module.startswith("ansible.builtin."), task
        options = module_options(task.module)
        assert set(task.args) <= set(options), (task.name, set(task.args) - set(options))
        required = {k for k, o in options.items() if o.get("required")}
        assert required <= set(task.args), (task.name, required - set(task.args))


def test_steps_that_download_or_install_are_skipped_when_already_done():
    assert task_named("Install k3s").args["creates"] == "/usr/local/bin/k3s"
    assert task_named("Unpack Helm").args["creates"] == openfaas.helm_binary(Versions())
    assert "checksum" in task_named("Fetch Helm").args


def test_tasks_become_an_enoslib_play_with_names_outside_the_module_arguments():
    import enoslib as en

    a = en.actions(roles=[])  # not entered: nothing runs
    openfaas.add_tasks(a, tasks())
    play = a._tasks
    assert [t["name"] for t in play] == [t.name for t in tasks()]
    for built, task in zip(play, tasks()):
        assert built[task.module] == task.args
    assert play[-1]["register"] == "openfaas_password"


def test_uninstall_runs_the_k3s_script_only_where_it_exists():
    (uninstall,) = [t for t in openfaas.uninstall_tasks() if t.module == "ansible.builtin.shell"]
    assert uninstall.args["cmd"] == "/usr/local/bin/k3s-uninstall.sh"
    assert uninstall.args["removes"] == "/usr/local/bin/k3s-uninstall.sh"


# --- fog node configuration ------------------------------------------------------------------


def test_the_faas_table_uses_only_fields_fog_node_accepts():
    fields = faas_config_fields()
    assert {"backend", "gateway_url", "username", "password"} <= fields  # the parse worked
    table = openfaas.fog_node_faas_table(password="s3cr\"et")
    text = "[faas]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
    loaded = tomllib.loads(text)["faas"]
    assert loaded == table
    assert set(loaded) <= fields


def test_the_faas_table_names_a_backend_the_rust_enum_accepts():
    names = faas_backend_names()
    assert "embedded" in names  # the parse worked
    assert openfaas.fog_node_faas_table(password="x")["backend"] in names
    assert openfaas.fog_node_faas_table(password="x")["backend"] == "openfaas"


def test_the_faas_table_points_at_the_gateway_node_port_with_the_chart_user():
    table = openfaas.fog_node_faas_table(password="pw")
    assert table["gateway_url"] == "http://127.0.0.1:31112"
    assert table["gateway_url"].endswith(f":{openfaas.helm_values()['gateway']['nodePort']}")
    assert table["username"] == "admin" and table["password"] == "pw"
    assert re.fullmatch(r"\d+(\.\d+)? (ms|s|min)", table["ready_timeout"])


def test_passwords_are_taken_from_the_successful_password_task_of_each_host():
    from enoslib.api import CommandResult

    results = [
        CommandResult("edge-1", openfaas.PASSWORD_TASK, "OK", {"stdout": "abc\n", "rc": 0}),
        CommandResult("edge-2", openfaas.PASSWORD_TASK, "FAILED", {"stdout": "", "rc": 1}),
        CommandResult("edge-2", "Install k3s", "OK", {"stdout": "done", "rc": 0}),
    ]
    assert openfaas.passwords_by_host(results) == {"edge-1": "abc"}

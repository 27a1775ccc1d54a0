"""The local hosts, for real: namespaces, bridge and sshd (root only)."""

import os
import signal
import subprocess
import sys

import pytest

from fogmarket_enos import netns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


def test_hosts_answer_ssh_with_their_own_name_and_files_and_leave_nothing_when_a_step_fails(tmp_path):
    hosts = netns.LocalHosts(["alpha", "beta"], tmp_path)
    with pytest.raises(RuntimeError, match="a step failed"):
        with hosts:
            assert netns.leftovers(hosts.tag)  # they exist while the block runs
            outputs = {}
            for h in hosts.hosts:
                done = subprocess.run(
                    ["ssh", "-i", str(hosts.key), "-o", "StrictHostKeyChecking=no",
                     "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                     f"root@{h.address}", f"hostname; echo {h.alias} > {netns.ROOT}/mine; ls {netns.ROOT}"],
                    capture_output=True, text=True, timeout=30,
                )
                assert done.returncode == 0, done.stderr
                outputs[h.alias] = done.stdout.split()
            # Each host has its own name and its own /opt/fogmarket.
            assert outputs["alpha"] == ["alpha", "mine"]
            assert outputs["beta"] == ["beta", "mine"]
            assert (tmp_path / "hosts" / "alpha" / "mine").read_text() == "alpha\n"
            assert (tmp_path / "hosts" / "beta" / "mine").read_text() == "beta\n"
            raise RuntimeError("a step failed")
    assert netns.leftovers(hosts.tag, tmp_path) == []


def test_a_terminated_run_still_removes_its_hosts(tmp_path):
    script = f"""
import sys, time
from pathlib import Path
from fogmarket_enos import netns
with netns.LocalHosts(["one", "two"], Path({str(tmp_path)!r})) as hosts:
    print(hosts.tag, flush=True)
    time.sleep(120)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    tag = proc.stdout.readline().strip()
    assert tag.startswith(netns.PREFIX)
    assert netns.leftovers(tag)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert netns.leftovers(tag, tmp_path) == []

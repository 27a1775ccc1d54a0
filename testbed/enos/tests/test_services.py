import subprocess
import time

import pytest

from fogmarket_enos.plan import Layout
from fogmarket_enos.services import Service


def test_a_systemd_unit_runs_the_command_with_its_environment_file_and_log():
    layout = Layout()
    s = Service("fog-node", ("/opt/fogmarket/bin/fog-node", "--config", "/opt/fogmarket/etc/a b.toml"),
                env={"NO_COLOR": "1"})
    unit = s.unit(layout)
    assert "ExecStart=/opt/fogmarket/bin/fog-node --config '/opt/fogmarket/etc/a b.toml'" in unit
    assert "EnvironmentFile=/opt/fogmarket/etc/fog-node.env" in unit
    assert "StandardOutput=append:/opt/fogmarket/log/fog-node.log" in unit
    assert "Restart=on-failure" in unit and "Type=exec" in unit
    oneshot = Service("iot", ("/bin/true",), kind="oneshot").unit(layout)
    assert "Type=oneshot" in oneshot and "Restart=no" in oneshot
    assert "--no-block start fogmarket-iot.service" in Service("iot", ("/bin/true",), kind="oneshot").start_command("systemd", layout)


def test_an_environment_value_that_would_break_the_file_is_refused():
    assert Service("x", ("/bin/true",), env={"A": "b c"}).env_text() == "A='b c'\n"
    with pytest.raises(ValueError, match="B"):
        Service("x", ("/bin/true",), env={"B": "one\ntwo"}).env_text()
    with pytest.raises(ValueError, match="not an environment variable"):
        Service("x", ("/bin/true",), env={"A-B": "1"}).env_text()
    with pytest.raises(ValueError, match="service manager"):
        Service("x", ("/bin/true",)).start_command("upstart", Layout())


def test_a_process_service_starts_detached_answers_alive_and_stops(tmp_path):
    layout = Layout(root=str(tmp_path))
    for d in (layout.etc, layout.log, layout.run):
        (tmp_path / d.rsplit("/", 1)[1]).mkdir()
    s = Service("sleeper", ("sh", "-c", 'echo "started with $GREETING"; exec sleep 60'),
                env={"GREETING": "hello world"})
    (tmp_path / "etc" / "sleeper.env").write_text(s.env_text())
    subprocess.run(s.start_command("process", layout), shell=True, check=True, timeout=10)
    alive = lambda: subprocess.run(s.alive_command("process", layout), shell=True).returncode == 0  # noqa: E731
    deadline = time.monotonic() + 10
    log = tmp_path / "log" / "sleeper.log"
    while not (log.exists() and log.read_text().strip()):
        assert time.monotonic() < deadline, "the service wrote nothing"
        time.sleep(0.05)
    assert alive()
    assert (tmp_path / "log" / "sleeper.log").read_text().strip() == "started with hello world"
    subprocess.run(s.stop_command("process", layout), shell=True, check=True, timeout=20)
    assert not alive()
    assert not (tmp_path / "run" / "sleeper.pid").exists()
    # Stopping a stopped service succeeds.
    subprocess.run(s.stop_command("process", layout), shell=True, check=True, timeout=20)

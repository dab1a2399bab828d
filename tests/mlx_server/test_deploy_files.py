"""The service files: systemd for Linux, launchd for macOS, each starting this server."""

import configparser
import plistlib

from .conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"


def test_it_ships_a_systemd_unit_that_runs_the_module_on_port_11435() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "mlx-server.service")
    exec_start = unit["Service"]["ExecStart"]
    assert "-m mlx_server" in exec_start and "--port 11435" in exec_start
    # Flaw 12 of the original sketch: a systemd unit pointing at a macOS home folder.
    assert "/Users/" not in (DEPLOY / "mlx-server.service").read_text()
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_it_ships_a_launchd_plist_that_runs_the_module_on_port_11435() -> None:
    with (DEPLOY / "com.athena.mlx-server.plist").open("rb") as handle:
        plist = plistlib.load(handle)
    assert plist["Label"] == "com.athena.mlx-server"
    args = plist["ProgramArguments"]
    assert args[1:3] == ["-m", "mlx_server"]
    assert args[args.index("--port") + 1] == "11435"
    assert plist["RunAtLoad"] is True

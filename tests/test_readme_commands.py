"""The README's first two commands: they run as root without sudo and as a user with
sudo, and .ci/run runs the README's test command."""

import os
import re
import stat
from pathlib import Path

from tests import subprocs

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    """The one-line bash commands of README.md's "First two commands" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## First two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+)\n```", section)


def setup_part(command):
    return command.split(" && python3 -m venv", 1)[0]


def test_ci_runs_the_readme_test_command():
    demo, tests = readme_commands()
    assert demo.endswith("python -m gim_zoo demo") and tests.endswith("python -m pytest -q")
    assert setup_part(demo) == setup_part(tests)
    ci = (ROOT / ".ci" / "run").read_text()
    setup, rest = setup_part(tests), tests[len(setup_part(tests)) + len(" && "):]
    assert f"\n  {setup}\n" in ci and f"\n{rest}\n" in ci


def test_setup_runs_without_sudo_as_root_and_with_sudo_otherwise(tmp_path):
    """The setup part with apt-get replaced by a stub that records how it was called:
    as root on a PATH without sudo, and as a user (a fake `id`) with a stub sudo."""
    setup = setup_part(readme_commands()[0])
    log = tmp_path / "calls"
    for name, body in {"apt-get": f'echo "apt-get $*" >> {log}',
                       "sudo": f'echo "sudo" >> {log}; "$@"'}.items():
        path = tmp_path / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    bare = tmp_path / "bare"  # no sudo here
    bare.mkdir()
    (bare / "apt-get").symlink_to(tmp_path / "apt-get")
    system = "/usr/bin:/bin"
    for shell in ("bash", "sh"):
        log.write_text("")
        env = {"PATH": f"{bare}:{system}"}
        if os.geteuid() != 0:  # pretend to be root
            (bare / "id").write_text("#!/bin/sh\necho 0\n")
            (bare / "id").chmod(0o755)
        subprocs.run([shell, "-c", setup], env=env)
        assert log.read_text().splitlines() == [
            "apt-get update",
            "apt-get install -y python3-venv dataset-fashion-mnist espeak-ng"]

        log.write_text("")
        user = tmp_path / "user"  # a user's PATH with sudo, and `id -u` saying 1000
        user.mkdir(exist_ok=True)
        for name in ("apt-get", "sudo"):
            if not (user / name).exists():
                (user / name).symlink_to(tmp_path / name)
        (user / "id").write_text("#!/bin/sh\necho 1000\n")
        (user / "id").chmod(0o755)
        subprocs.run([shell, "-c", setup], env={"PATH": f"{user}:{system}"})
        assert log.read_text().splitlines() == [
            "sudo", "apt-get update", "sudo",
            "apt-get install -y python3-venv dataset-fashion-mnist espeak-ng"]

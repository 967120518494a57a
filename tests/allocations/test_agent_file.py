"""The agent travels to a node as ONE file that sudo's digest pins: a zipapp of the
`gpu_portal_agent` package behind the interpreter line. The same sources must give the same
bytes (else every render would change the digest and an upgrade check could never match), the
file must run as `./agent` and `python3 agent`, and nothing outside the zip and the stdlib may
be imported from it."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from allocations import node_install
from allocations.agent import gpu_portal_agent
from allocations.agent.gpu_portal_agent.common import root_only
from allocations.node_install import AGENT_PACKAGE, agent_version, render_agent

ROOT = Path(__file__).resolve().parents[2]
REPLAY = ROOT / "tests/fixtures/nvml/h100-sxm-8.json"


def installed(tmp_path: Path) -> Path:
    """The rendered agent written as the installer writes it (0755), with its configuration at
    a path baked into it."""
    config_path = tmp_path / "agent.json"
    config_path.write_text(json.dumps({"nvml_replay": str(REPLAY), "state_dir": str(tmp_path / "state")}))
    agent = tmp_path / "gpu-portal-agent"
    agent.write_bytes(render_agent(str(config_path)))
    agent.chmod(0o755)
    return agent


def run_agent(command: list, *, env: dict | None = None, cwd: Path | None = None) -> tuple[int, dict]:
    result = subprocess.run(command, input="", capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
    return result.returncode, json.loads(result.stdout)


def test_the_same_sources_render_the_same_bytes_and_digest_whatever_the_files_dates(tmp_path, monkeypatch):
    first = render_agent("/etc/gpu-portal/agent.json")
    copy = tmp_path / "gpu_portal_agent"
    shutil.copytree(AGENT_PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.iterdir():
        os.utime(path, (2_000_000_000, 2_000_000_000))  # other dates, as a fresh checkout has
    monkeypatch.setattr(node_install, "AGENT_PACKAGE", copy)
    monkeypatch.setattr(node_install, "AGENT_COMMON", copy / "common.py")
    second = render_agent("/etc/gpu-portal/agent.json")
    assert second == first
    assert hashlib.sha256(second).hexdigest() == hashlib.sha256(first).hexdigest()
    (copy / "common.py").write_text((copy / "common.py").read_text() + "\n# a changed line\n")
    assert hashlib.sha256(render_agent("/etc/gpu-portal/agent.json")).digest() != hashlib.sha256(first).digest()


def test_the_file_is_the_interpreter_line_then_a_zip_of_the_package_with_fixed_metadata():
    rendered = render_agent("/srv/node/agent.json")
    assert rendered.startswith(b"#!/usr/bin/python3 -IS\n")
    with zipfile.ZipFile(io.BytesIO(rendered)) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        common = archive.read("gpu_portal_agent/common.py").decode()
    expected = ["__main__.py", *sorted(f"gpu_portal_agent/{p.name}" for p in AGENT_PACKAGE.glob("*.py"))]
    assert names == sorted(names) == expected
    assert {(i.date_time, i.compress_type, i.external_attr >> 16) for i in infos} == {
        ((1980, 1, 1, 0, 0, 0), zipfile.ZIP_STORED, 0o100644)
    }
    # The node's configuration path is baked into the one line that defines it.
    assert 'CONFIG_PATH = "/srv/node/agent.json"\n' in common
    assert common.count("CONFIG_PATH = ") == 1
    assert render_agent("/etc/gpu-portal/agent.json") != rendered


def test_a_configuration_path_with_other_characters_is_refused():
    for bad in ("relative/agent.json", '/etc/x" ; import os #', "/etc/agent.json\nVERSION = 9"):
        with pytest.raises(ValueError):
            render_agent(bad)


def test_the_installed_file_runs_directly_and_through_python3_with_its_baked_configuration(tmp_path):
    agent = installed(tmp_path)
    for command in ([str(agent), "version"], ["/usr/bin/python3", str(agent), "version"]):
        code, answer = run_agent(command)
        assert (code, answer) == (0, {"ok": True, "version": agent_version()})
    code, answer = run_agent([str(agent), "inventory"])  # reads the replay named in the baked config
    assert code == 0 and len(answer["gpus"]) == 8
    code, answer = run_agent([str(agent), "bogus"])
    assert code == 2 and answer["error"] == "bad_verb"


def test_modules_planted_by_the_caller_are_never_imported_by_the_agent(tmp_path):
    """PYTHONPATH, the working directory and a package of the agent's own name: with `-I` the
    zip itself and the stdlib answer every import."""
    agent = installed(tmp_path)
    planted = tmp_path / "planted"
    (planted / "gpu_portal_agent").mkdir(parents=True)
    for module in ("json.py", "sitecustomize.py", "usercustomize.py", "gpu_portal_agent/__init__.py"):
        (planted / module).write_text("raise SystemExit('planted module imported')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(planted), "PYTHONSTARTUP": str(planted / "json.py"),
           "PYTHONINSPECT": "1", "HOME": str(planted)}  # fmt: skip
    code, answer = run_agent([str(agent), "version"], env=env, cwd=planted)
    assert (code, answer) == (0, {"ok": True, "version": agent_version()})


def test_the_version_the_portal_records_is_the_one_the_package_answers():
    assert agent_version() == gpu_portal_agent.VERSION != ""


def test_the_digest_is_the_same_under_a_c_locale_without_utf_8_mode():
    """An operator's shell or a worker under LANG=C with UTF-8 mode off (PYTHONUTF8=0): the
    sources hold non-ASCII text (→, °), read as UTF-8 whatever the locale, the same bytes."""
    code = (
        "import hashlib; from allocations.node_install import render_agent; "
        "print(hashlib.sha256(render_agent('/etc/gpu-portal/agent.json')).hexdigest())"
    )
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == hashlib.sha256(render_agent("/etc/gpu-portal/agent.json")).hexdigest()


@contextlib.contextmanager
def planted_in_system_site_packages(files: dict[str, str]):
    """Files put into the node python's first system site-packages folder (as someone who can
    write there would), removed afterwards with the folder if it had to be made."""
    folder = Path(
        subprocess.run(
            ["/usr/bin/python3", "-c", "import site; print(site.getsitepackages()[0])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    made, cache = not folder.exists(), folder / "__pycache__"
    cache_made = not cache.exists()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in files]
    try:
        for path, text in zip(paths, files.values(), strict=True):
            path.write_text(text)
        yield folder
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
            for compiled in cache.glob(f"{path.stem}.*.pyc"):
                compiled.unlink()
        if cache_made:
            shutil.rmtree(cache, ignore_errors=True)
        if made:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_pth_file_in_a_system_site_packages_folder_never_runs_as_root(tmp_path):
    """`python3 -IS`: the site module is off, so a `.pth` file (run by `site` at every start) is
    not executed by the root agent, whoever could write that folder."""
    agent = installed(tmp_path)
    marker = tmp_path / "pth-ran"
    name = f"zz-gpu-portal-test-{os.getpid()}"
    with planted_in_system_site_packages({f"{name}.pth": f"import pathlib; pathlib.Path({str(marker)!r}).touch()\n"}):
        code, answer = run_agent([str(agent), "version"])
    assert (code, answer) == (0, {"ok": True, "version": agent_version()})
    assert not marker.exists()


def test_pynvml_is_found_only_in_a_system_site_packages_folder_that_root_alone_can_write(tmp_path):
    """The agent's one optional import: from a root-only folder it is used (here a stand-in
    whose start fails: nvml_unavailable); once the folder is group-writable it is ignored
    (nvml_missing), so no one but root decides what the root agent imports."""
    config_path = tmp_path / "agent.json"
    config_path.write_text(json.dumps({"state_dir": str(tmp_path / "state")}))  # no replay: real NVML
    agent = tmp_path / "gpu-portal-agent"
    agent.write_bytes(render_agent(str(config_path)))
    agent.chmod(0o755)
    fake = "class NVMLError(Exception):\n    pass\n\ndef nvmlInit():\n    raise NVMLError('stand-in: no driver')\n"
    with planted_in_system_site_packages({"pynvml.py": fake}) as folder:
        if not root_only(str(folder)):
            pytest.skip(f"{folder} is writable by others than root on this machine: pynvml is never looked for there")
        mode = folder.stat().st_mode
        code, answer = run_agent([str(agent), "inventory"])
        assert (code, answer["error"]) == (2, "nvml_unavailable"), answer
        try:
            folder.chmod(mode | 0o020)
            code, answer = run_agent([str(agent), "inventory"])
        finally:
            folder.chmod(mode)
    assert (code, answer["error"]) == (2, "nvml_missing"), answer


def installed_with(tmp_path: Path, settings: dict) -> Path:
    config_path = tmp_path / "agent.json"
    config_path.write_text(json.dumps({"nvml_replay": str(REPLAY), "state_dir": str(tmp_path / "state"), **settings}))
    agent = tmp_path / "gpu-portal-agent"
    agent.write_bytes(render_agent(str(config_path)))
    agent.chmod(0o755)
    return agent


def test_a_relative_path_in_the_configuration_is_refused_for_every_verb(tmp_path):
    """A relative path would be looked up in the working directory of whoever runs sudo (the
    provisioning account chooses it): the agent answers bad_config and does nothing."""
    for setting, value in (("state_dir", "state"), ("jupyter_bin", "venv/bin/jupyter"), ("nvml_replay", "gpus.json"),
                           ("gpu_device_pattern", "dev/nvidia{minor}"), ("shell", "")):  # fmt: skip
        agent = installed_with(tmp_path, {setting: value})
        for verb in ("version", "inventory", "status"):
            code, answer = run_agent([str(agent), verb], cwd=tmp_path)
            assert (code, answer["error"]) == (2, "bad_config"), (setting, verb, answer)
            assert setting in answer["message"]
    assert not (tmp_path / "state").exists()


def test_an_agent_started_with_its_input_closed_answers_bad_input(tmp_path):
    agent = installed(tmp_path)
    result = subprocess.run(["/bin/sh", "-c", 'exec "$0" version <&-', str(agent)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (result.returncode, json.loads(result.stdout)["error"]) == (2, "bad_input"), result.stdout


def test_start_jupyter_refuses_a_jupyter_that_someone_other_than_root_can_change(tmp_path):
    """A venv under a folder others can write (here the test's folder under /tmp, mode 1777):
    whoever can change it would run code as every user who starts a server. Refused before
    anything is looked up or started."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib/python3.11/site-packages").mkdir(parents=True)
    jupyter = venv / "bin/jupyter"
    marker = tmp_path / "jupyter-ran"
    jupyter.write_text(f"#!/bin/sh\ntouch {marker}\n")
    jupyter.chmod(0o755)
    agent = installed_with(tmp_path, {"jupyter_bin": str(jupyter)})
    result = subprocess.run([str(agent), "start-jupyter"], input=json.dumps({"username": "gp1", "session": "g1",
                            "token": "t" * 40, "gpus": []}), capture_output=True, text=True, timeout=60)  # fmt: skip
    answer = json.loads(result.stdout)
    assert (result.returncode, answer["error"]) == (2, "unsafe_jupyter"), answer
    assert not marker.exists()

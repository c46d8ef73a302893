"""The built wheel ships ryu_si_compat.pth, so a plain install runs the stock ryu-manager.

Builds the wheel from a copy of the working tree, installs it with
``pip install --no-deps`` into a fresh venv and checks the compatibility shim
(ryu_si/compat.py) works there.  The project's dependencies come from the
running interpreter's site directories through a ``deps.pth`` line: a
directory added by a .pth line is put on sys.path but not scanned for further
.pth files, so the project venv's own ryu_si_compat.pth (and its
easy-install.pth pointing at the checkout) never runs.  A control venv with the
same deps.pth and no wheel shows ``import ryu.app.wsgi`` fails without the shim.

No switch and no root needed; it runs subprocesses in a temp dir with a clean
PYTHONPATH, so nothing is imported from the checkout.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PTH = "ryu_si_compat.pth"
PTH_SOURCE = REPO / "packaging" / PTH
# What the wheel build must not see: the .gitignore entries, VCS and caches.
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "var", "*.egg-info",
                                     "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
           and not k.startswith("RYU_SI_")}
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra)
    return env


def run(argv, cwd: Path, timeout: float = 60, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=clean_env(**extra_env),
                          capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args} -> rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def dependency_dirs() -> list[str]:
    """Where the running interpreter finds the project's dependencies (its venv
    purelib/platlib, and the system site dirs when that venv includes them);
    never the checkout itself."""
    paths = sysconfig.get_paths()
    dirs = [paths["purelib"], paths["platlib"], *site.getsitepackages()]
    return [d for d in dict.fromkeys(dirs)
            if Path(d).is_dir() and Path(d).resolve() != REPO]


def make_venv(path: Path, cwd: Path, with_pip: bool) -> tuple[Path, Path]:
    """A fresh venv on the running interpreter's base Python: (python, purelib)."""
    ok(run([sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), path], cwd))
    python = path / "bin" / "python"
    purelib = ok(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd)).stdout.strip()
    return python, Path(purelib)


def add_deps(purelib: Path) -> None:
    (purelib / "deps.pth").write_text("".join(d + "\n" for d in dependency_dirs()))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    pytest.importorskip("ryu")
    pytest.importorskip("wheel")
    return tmp_path_factory.mktemp("packaging")


@pytest.fixture(scope="module")
def built_wheel(work: Path) -> Path:
    src, dist = work / "src", work / "dist"
    shutil.copytree(REPO, src, ignore=COPY_IGNORE)
    ok(run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
            "--no-index", "-w", dist, src], work, timeout=120))
    wheels = list(dist.glob("ryu_si-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def control_venv(work: Path) -> Path:
    """Dependencies importable, no ryu-si installed: the shim must be missing."""
    python, purelib = make_venv(work / "control", work, with_pip=False)
    add_deps(purelib)
    return python


@pytest.fixture(scope="module")
def wheel_venv(work: Path, built_wheel: Path) -> tuple[Path, Path]:
    """The wheel installed by pip (before deps.pth exists, so pip sees no other
    ryu-si), then the dependencies made importable."""
    python, purelib = make_venv(work / "installed", work, with_pip=True)
    ok(run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
            "--disable-pip-version-check", built_wheel], work, timeout=120))
    add_deps(purelib)
    return python, purelib


def test_the_pth_file_is_one_line() -> None:
    lines = PTH_SOURCE.read_text().splitlines()
    assert lines == ["import ryu_si.compat; ryu_si.compat.install()"]


def test_the_wheel_ships_the_pth_at_the_purelib_root(built_wheel: Path) -> None:
    with zipfile.ZipFile(built_wheel) as whl:
        assert whl.read(PTH) == PTH_SOURCE.read_bytes()
        record = next(n for n in whl.namelist() if n.endswith(".dist-info/RECORD"))
        assert f"{PTH}," in whl.read(record).decode()   # so pip uninstall removes it


def test_the_wheel_ships_every_console_file(built_wheel: Path) -> None:
    shipped = {p.name for p in (REPO / "ryu_si" / "ui").iterdir()}
    assert shipped >= {"index.html", "console.js", "console.css"}
    with zipfile.ZipFile(built_wheel) as whl:
        for name in shipped:
            assert whl.read(f"ryu_si/ui/{name}") == (REPO / "ryu_si" / "ui" / name).read_bytes()


def test_without_the_shim_ryu_wsgi_does_not_import(control_venv: Path, work: Path) -> None:
    # The dependency dirs are on sys.path, but no .pth of theirs ran: no ryu_si at all.
    probe = ok(run([control_venv, "-c",
                    "import sys, json, importlib.util; print(json.dumps("
                    "[sys.path, 'ryu_si.compat' in sys.modules, importlib.util.find_spec('ryu_si')"
                    " is None]))"], work))
    path, compat_loaded, ryu_si_missing = json.loads(probe.stdout)
    assert set(dependency_dirs()) <= set(path)
    assert not compat_loaded and ryu_si_missing
    proc = run([control_venv, "-c", "import ryu.app.wsgi"], work)
    assert proc.returncode != 0 and "ALREADY_HANDLED" in proc.stderr, proc.stderr


def test_the_installed_wheel_runs_the_shim(wheel_venv: tuple[Path, Path], work: Path) -> None:
    python, purelib = wheel_venv
    assert (purelib / PTH).read_bytes() == PTH_SOURCE.read_bytes()
    proc = ok(run([python, "-c",
                   "import sys, ryu.app.wsgi, ryu_si; "
                   "print(ryu_si.__file__); print(ryu.app.wsgi.__file__)"], work))
    ryu_si_file, _ = proc.stdout.splitlines()
    assert Path(ryu_si_file).is_relative_to(purelib), "ryu_si must come from the installed wheel"


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ryu_manager_serves_the_app_from_the_wheel(wheel_venv: tuple[Path, Path],
                                                   work: Path) -> None:
    """The stock ryu-manager (``python -m ryu.cmd.manager``) loads ryu_si.app,
    which imports ryu.app.wsgi, and answers REST: the shim ran at start-up."""
    python, _ = wheel_venv
    of_port, wsapi_port = _free_port(), _free_port()
    log_path = work / "ryu-manager.log"
    argv = [str(python), "-m", "ryu.cmd.manager", "--ofp-listen-host", "127.0.0.1",
            "--ofp-tcp-listen-port", str(of_port), "--wsapi-host", "127.0.0.1",
            "--wsapi-port", str(wsapi_port), "ryu_si.app"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=clean_env(RYU_SI_STORE=str(work / "si.sqlite")))
    try:
        deadline, last = time.monotonic() + 30, "no answer"
        while time.monotonic() < deadline:
            assert proc.poll() is None, \
                f"ryu-manager exited rc {proc.returncode}\n{log_path.read_text()}"
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{wsapi_port}/si/v1/health", timeout=2) as resp:
                    status, body = resp.status, json.loads(resp.read())
                break
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                last = exc
                time.sleep(0.2)
        else:
            pytest.fail(f"no REST answer after 30 s ({last!r})\n{log_path.read_text()}")
        assert status == 200 and body["status"] == "ok", body
        with urllib.request.urlopen(f"http://127.0.0.1:{wsapi_port}/si/ui/", timeout=5) as resp:
            assert resp.status == 200 and b"console.js" in resp.read()   # the wheel's console
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert "loading app ryu_si.app" in log_path.read_text()

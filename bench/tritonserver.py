"""A real tritonserver on this CPU, for the tests and the serve bench: version 2.51.0 with the Python backend only, as
the PyPI wheel `nvidia-pytriton==0.7.0` ships it. The wheel is used as a binary: fetched once into the cache
(`make tritonserver`) and unpacked there, never installed (it pins numpy<2).

That build has no onnxruntime or openvino backend, so `backends()` adds each as a Python-based backend (a
`backends/<name>/model.py`, Triton's stand-in for a backend library) that builds its session from the model's
config as the real backend does (bench/triton_stand_in.py), not with onebyone: a repository `onebyone triton-repo`
writes for those backends loads unmodified and is computed as Triton computes it, as a `--backend python` one is.
Traps handled here: the Python backend's stub is per Python version and finds Python as the first `python3` on
PATH (this venv's), and needs `libpython3.x.so` on LD_LIBRARY_PATH.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

from onebyone.runtime.core.cache import cache_dir
from onebyone.runtime.serve.triton_python import MODEL_FILENAME

WHEEL = "nvidia-pytriton==0.7.0"
STAND_INS = ("onnxruntime", "openvino")
STAND_IN = Path(__file__).with_name("triton_stand_in.py")
READY_SECONDS = 180


GLIBC = (2, 35)  # the wheel is manylinux_2_35


class FetchFailed(Exception):
    """The wheel could not be downloaded (no network to PyPI)."""


def unsupported_here() -> str | None:
    """Why this machine cannot run the wheel's tritonserver, or None."""
    glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    version = tuple(int(part) for part in glibc.removeprefix("glibc ").split(".")[:2] if part.isdigit())
    if not glibc.startswith("glibc ") or version < GLIBC:
        return f"the tritonserver wheel needs glibc {GLIBC[0]}.{GLIBC[1]} or newer; this machine has {glibc or 'none'}"
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return "this Python has no libpython shared library, which Triton's Python backend stub loads"
    return None


def home() -> Path:
    """The unpacked `tritonserver` folder (bin/, backends/python/, python_backend_stubs/), fetched on first use."""
    folder = cache_dir().resolve() / "pytriton"
    server = folder / "pytriton" / "tritonserver"
    if (server / "bin" / "tritonserver").is_file():
        return server
    download = folder / "wheel"
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(download),
                           WHEEL], capture_output=True, text=True, timeout=600)
    wheels = sorted(download.glob("nvidia_pytriton-*.whl"))
    if done.returncode != 0 or not wheels:
        raise FetchFailed(f"pip download {WHEEL} failed: {done.stderr.strip()[-500:]}")
    staging = folder / ".unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        for member in wheel.namelist():
            if member.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/")):
                wheel.extract(member, staging)
    for path in staging.rglob("*"):
        if path.is_file() and (path.parent.name in ("bin", "python") or path.name == "triton_python_backend_stub"):
            path.chmod(0o755)
    for part in ("pytriton", "nvidia_pytriton.libs"):
        shutil.rmtree(folder / part, ignore_errors=True)
        os.replace(staging / part, folder / part)
    shutil.rmtree(staging)
    return server


def backends(server: Path, folder: Path) -> Path:
    """A backend directory in `folder`: Triton's Python backend with the stub for this Python, and the stand-ins."""
    python = folder / "python"
    python.mkdir(parents=True, exist_ok=True)
    for library in (server / "backends" / "python").iterdir():
        shutil.copy2(library, python / library.name)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy2(server / "python_backend_stubs" / version / "triton_python_backend_stub", python)
    for name in STAND_INS:
        (folder / name).mkdir(exist_ok=True)
        shutil.copy2(STAND_IN, folder / name / MODEL_FILENAME)
    return folder


def environment(server: Path) -> dict[str, str]:
    """This venv's python3 first on PATH, and the wheel's libraries and libpython on LD_LIBRARY_PATH."""
    libraries = [str(server.parent.parent / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR") or ""]
    return os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                         "LD_LIBRARY_PATH": os.pathsep.join([*libraries, os.environ.get("LD_LIBRARY_PATH", "")])}


class TritonServer:
    """`with TritonServer(repositories, work, ports) as triton:` a tritonserver serving the repositories, ready (every
    model loaded) or failing with Triton's own log; `triton.http`, `triton.grpc`, `triton.metrics` are its URLs."""

    def __init__(self, repositories: list[Path], work: Path, ports: tuple[int, int, int]) -> None:
        self.server = home()
        self.http, self.grpc, self.metrics = (f"127.0.0.1:{port}" for port in ports)
        self.log = work / "tritonserver.log"
        self._command = [str(self.server / "bin" / "tritonserver"),
                         *(f"--model-repository={repository}" for repository in repositories),
                         f"--backend-directory={backends(self.server, work / 'backends')}",
                         f"--http-port={ports[0]}", f"--grpc-port={ports[1]}", f"--metrics-port={ports[2]}",
                         "--allow-gpu-metrics=false", "--exit-timeout-secs=10"]
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> TritonServer:
        with self.log.open("w") as log:
            self._process = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT,
                                             env=environment(self.server))
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"tritonserver exited ({self._process.returncode}):\n{self.failures()}")
            if self._status("/v2/health/ready") == 200:
                return self
            time.sleep(0.25)
        self.__exit__()
        raise RuntimeError(f"tritonserver was not ready after {READY_SECONDS} s:\n{self.failures()}")

    def _status(self, path: str) -> int | None:
        host, port = self.http.split(":")
        try:
            connection = http.client.HTTPConnection(host, int(port), timeout=2)
            connection.request("GET", path)
            status = connection.getresponse().status
            connection.close()
            return status
        except OSError:
            return None

    def failures(self) -> str:
        """Triton's error lines (and the Python tracebacks its stubs printed)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(line for line in lines if line.startswith("E") or "Error" in line or "error" in line)[-4000:]

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)

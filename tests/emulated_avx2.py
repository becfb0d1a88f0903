"""Run a command on an emulated AVX2-only x86 CPU: `python -m tests.emulated_avx2 COMMAND...`, e.g. `python -m
tests.emulated_avx2 python -m onebyone parity BUNDLE FILE --backend openvino` (tests/test_emulated_avx2.py runs the
INT8 engines this way).

Why: on a CPU without VNNI, an int8 engine's answer depends on its real kernels (`vpmaddubsw` adds pairs of u8×s8
products into a saturating int16); without this, tests reach that case only through injected CPU descriptions and a
numpy emulation of the dot product. Here ONNX Runtime's and OpenVINO's own AVX2 kernels run.

How: Debian's qemu-user runs the Python interpreter as QEMU's `EPYC-Milan` model (AMD Zen 3: AVX2 and FMA, no
AVX-512, no VNNI, no BF16), so both engines dispatch the kernels they pick on such a CPU; in a private mount namespace
a copy of this machine's `/proc/cpuinfo` with the AVX-512, VNNI and AMX flags removed lies over the real one, so
runtime/core/cpu.py describes the CPU the kernels see. The interpreter is checked to run without AVX-512 before the
command starts.

Limits: correctness only — QEMU's translated code says nothing of a real AVX2 CPU's speed (about 20× slower than
this machine runs natively). A process the emulated one starts runs natively again (qemu-user does not follow
exec): run the stages in-process, as `python -m onebyone` does. Needs an x86-64 Linux host, qemu-user
(`apt-get install qemu-user`) and either root or unprivileged user namespaces (docs/testing.md).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CPU_MODEL = "EPYC-Milan"
ABSENT = re.compile(r"^(avx512.*|amx.*|avx_vnni.*|avx_ifma|avx_ne_convert)$")  # flags the emulated model lacks
PROBE = ("from numpy._core._multiarray_umath import __cpu_features__ as f; "
         "assert f['AVX2'] and not f['AVX512F'], 'qemu-user did not hide AVX-512'")
MOUNT = 'mount --bind "$0" /proc/cpuinfo && exec "$@"'
UNSUPPORTED = re.compile(r"TCG doesn't support requested feature: \S+\.([\w-]+) \[")


class Refused(Exception):
    """The host cannot emulate: the message names what to install or use."""


def emulated_cpuinfo(host: str) -> str:
    """This machine's `/proc/cpuinfo` as the emulated CPU shows it: no AVX-512/VNNI/AMX flags, QEMU's model name."""
    lines = []
    for line in host.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            line = f"{key}: " + " ".join(f for f in value.split() if not ABSENT.match(f))
        elif key.strip() == "model name":
            line = f"{key}: AMD {CPU_MODEL} (qemu-x86_64 emulation on {value.strip()})"
        lines.append(line)
    return "\n".join(lines) + "\n"


def interpreter_command(command: list[str]) -> list[str]:
    """The command with `python` as this interpreter; qemu-user runs ELF files only, not scripts."""
    program = sys.executable if command[0] == "python" else shutil.which(command[0])
    if program is None or Path(program).read_bytes()[:4] != b"\x7fELF":
        raise Refused(f"{command[0]}: qemu-user runs ELF programs only; run a console script as `python -m ...` "
                      "(e.g. `python -m onebyone parity ...`)")
    return [program, *command[1:]]


def qemu_cpu() -> list[str]:
    """qemu-x86_64 and its `-cpu` option: CPU_MODEL less the features QEMU's translator lacks (none of them a SIMD
    extension: rdseed, sha-ni, xsaves, ...), so it starts without a warning for each."""
    if platform.machine() != "x86_64" or not sys.platform.startswith("linux"):
        raise Refused(f"needs an x86-64 Linux host (this is {sys.platform} {platform.machine()})")
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        raise Refused("qemu-x86_64 not found: install Debian's qemu-user (apt-get install qemu-user)")
    trial = subprocess.run([qemu, "-cpu", CPU_MODEL, "/bin/true"], capture_output=True, text=True)
    return [qemu, "-cpu", ",".join([CPU_MODEL, *(f"-{name}" for name in UNSUPPORTED.findall(trial.stderr))])]


def emulated(command: list[str], cpuinfo: Path, qemu: list[str]) -> list[str]:
    """`command` under `qemu`, with `cpuinfo` over /proc/cpuinfo in a private mount namespace."""
    namespace = ["unshare", "--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    return [*namespace, "sh", "-c", MOUNT, str(cpuinfo), *qemu, *command]


def run(command: list[str]) -> int:
    """Check the emulation hides AVX-512, then run `command` under it → its exit code."""
    qemu = qemu_cpu()
    with tempfile.TemporaryDirectory() as scratch:
        cpuinfo = Path(scratch) / "cpuinfo"
        cpuinfo.write_text(emulated_cpuinfo(Path("/proc/cpuinfo").read_text()))
        probe = subprocess.run(emulated([sys.executable, "-c", PROBE], cpuinfo, qemu), capture_output=True,
                               text=True)
        if probe.returncode != 0:
            raise Refused("the emulation did not start (root or unprivileged user namespaces are needed for the "
                          f"/proc/cpuinfo mount):\n{probe.stderr.strip()[-2000:]}")
        return subprocess.run(emulated(interpreter_command(command), cpuinfo, qemu)).returncode


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m tests.emulated_avx2 COMMAND [ARGS...]", file=sys.stderr)
        return 2
    try:
        return run(argv)
    except Refused as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

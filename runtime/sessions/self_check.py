"""Self-check on open: a session whose target belongs to a bundle runs the bundle's golden inputs (or the artifact's
own, held out of its calibration data: optimize/precision/held_out.py) and must match their outputs within the
artifact's recorded tolerance, or it is refused with the measured error. An INT8
ONNX artifact must also pass the kernel check: the session's outputs against the file's exact Q/DQ math."""

from __future__ import annotations

from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.manifest import GOLDEN_NAME
from onebyone.runtime.bundle.tolerances import TOLERANCES, Tolerance
from onebyone.runtime.core.errors import CheckFailed
from onebyone.runtime.core.files import sha256_file
from onebyone.runtime.parity.kernel_check import check_kernels
from onebyone.runtime.parity.metrics import check_golden
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.target import Target


class SelfCheckFailed(CheckFailed):
    """The artifact does not reproduce its bundle's golden outputs within tolerance (or was modified)."""


def _tolerance(session: Session) -> Tolerance | None:
    if session.target.kind == "torch":
        return TOLERANCES["fp32"]
    record = session.target.record
    return record.tolerance if record is not None else None


def check_recorded_file(target: Target) -> None:
    """Refuse an artifact whose bytes differ from what its bundle manifest recorded (before loading it)."""
    record = target.record
    if record is not None and target.path is not None and sha256_file(target.path) != record.sha256:
        raise SelfCheckFailed(f"{target.path} was modified after it was recorded in {target.bundle}/manifest.json; "
                              "re-run the stage that made it")


def check_session(session: Session) -> None:
    """Set `session.self_check` (the measured Parity) or `session.self_check_note` (why nothing was checked);
    raise SelfCheckFailed when the artifact is out of tolerance."""
    target = session.target
    tolerance = _tolerance(session)
    if target.bundle is None or tolerance is None:
        session.self_check_note = "not checked: not recorded in a bundle manifest"
        return
    golden_path = target.bundle / target.manifest.golden_of(target.record_name)
    if not golden_path.is_file():
        session.self_check_note = f"not checked: {golden_path} is missing"
        return
    golden = Golden.load(golden_path).within(session.accepts)
    if golden is None:
        session.self_check_note = "not checked: no golden sample size fits the engine's optimization profiles"
        return
    parity = check_golden(golden, session.run_batched, tolerance)
    session.self_check = parity
    session.self_check_note = f"self-check {parity.describe()}"
    if parity.ok and target.kind == "onnx" and target.record is not None and target.record.precision == "int8":
        kernels = check_kernels(target.path, golden.inputs, session.run_batched(golden.inputs))
        session.self_check_note += f"; {kernels.describe()}"
        if not kernels.ok:
            raise SelfCheckFailed(f"{target.label}: the engine's int8 kernels do not compute the file's Q/DQ math "
                                  f"on this CPU: {kernels.describe()}; re-quantize it with `onebyone quantize "
                                  "--weight-range safe`, or open it without the self-check to inspect it")
    if not parity.ok:
        golden_record = target.manifest.artifacts.get(golden_path.name) if target.manifest else None
        changed = golden_record is not None and sha256_file(golden_path) != golden_record.sha256
        cause = (f"; {golden_path} itself changed since export" if changed
                 else "; rebuild the artifact, or open it without the self-check to inspect it")
        against = ("the golden torch outputs" if golden_path.name == GOLDEN_NAME
                   else f"its held-out golden outputs ({golden_path.name})")
        raise SelfCheckFailed(f"{target.label} fails its self-check against {against}: "
                              f"{parity.describe()}{cause}")

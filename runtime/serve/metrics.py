"""`/metrics`: the models' statistics (runtime/serve/statistics.py) in the Prometheus text format (0.0.4), under
Triton's metric names and labels, so dashboards and alerts written for Triton read onebyone unchanged. Counters,
labelled `model` and `version` (failures also `reason`, runtime/serve/statistics.py); durations are cumulative
microseconds, as Triton's are. The gauge `nv_inference_pending_request_count` counts the requests a model has
admitted and not yet answered — waiting or running; Triton's counts those not yet running, which differs by at most
the batch in progress.

Written here rather than with prometheus_client's `generate_latest`: that one renames every counter's family to
`<name>_total`, and Triton's counters carry no such suffix. prometheus_client's parser reads this output in the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from onebyone.runtime.serve.models import ModelEntry
from onebyone.runtime.serve.statistics import ModelStatistics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name → (help, value from a model's statistics)
COUNTERS: dict[str, tuple[str, Callable[[ModelStatistics], int]]] = {
    "nv_inference_request_success": ("Number of successful inference requests, all batch sizes",
                                     lambda s: s.success.count),
    "nv_inference_count": ("Number of inferences performed (does not include cached requests)",
                           lambda s: s.inference_count),
    "nv_inference_exec_count": ("Number of model executions performed (does not include cached requests)",
                                lambda s: s.execution_count),
    "nv_inference_request_duration_us": ("Cumulative inference request duration in microseconds",
                                         lambda s: (s.success.ns + s.fail.ns) // 1000),
    "nv_inference_queue_duration_us": ("Cumulative inference queuing duration in microseconds",
                                       lambda s: s.queue.ns // 1000),
    "nv_inference_compute_input_duration_us": ("Cumulative compute input duration in microseconds",
                                               lambda s: s.compute_input.ns // 1000),
    "nv_inference_compute_infer_duration_us": ("Cumulative compute inference duration in microseconds",
                                               lambda s: s.compute_infer.ns // 1000),
    "nv_inference_compute_output_duration_us": ("Cumulative inference compute output duration in microseconds",
                                                lambda s: s.compute_output.ns // 1000),
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(entries: Iterable[ModelEntry]) -> tuple[bytes, str]:
    """The text a Prometheus scrape gets, and its content type."""
    entries = list(entries)

    def labels(entry: ModelEntry, **more: str) -> str:
        pairs = {"model": entry.name, **more, "version": entry.version}
        return ",".join(f'{key}="{_label(value)}"' for key, value in pairs.items())

    failure = "nv_inference_request_failure"
    lines = [f"# HELP {failure} Number of failed inference requests, all batch sizes", f"# TYPE {failure} counter"]
    lines += [f"{failure}{{{labels(e, reason=reason)}}} {count}"
              for e in entries for reason, count in e.statistics.failures.items()]
    for name, (help_text, value) in COUNTERS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        lines += [f"{name}{{{labels(e)}}} {value(e.statistics)}" for e in entries]
    pending = "nv_inference_pending_request_count"
    lines += [f"# HELP {pending} Instantaneous number of pending requests awaiting execution per-model.",
              f"# TYPE {pending} gauge"]
    lines += [f"{pending}{{{labels(e)}}} {e.runner.waiting if e.runner is not None else 0}" for e in entries]
    return ("\n".join(lines) + "\n").encode(), CONTENT_TYPE

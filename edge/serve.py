"""`python -m edge.serve [uvicorn options]`: uvicorn's own command line, except that a
SIGTERM ends in exit status 0 once the graceful shutdown is done, and the Prometheus multiprocess
directory (when set) is emptied before the workers start.

After draining, a single uvicorn process re-raises the signal it stopped on (uvicorn >= 0.29), so
a clean drain exits 143 and orchestrators log it as a crash. A handler that raises SystemExit(0)
installed before uvicorn starts is the one uvicorn restores before that re-raise; while it serves,
uvicorn's own handler is in place and drains as usual. With --workers the supervisor already exits
0. Plain `python -m uvicorn gateway_project.asgi:application` serves the same application.
"""

import os
import signal
from pathlib import Path
from types import FrameType

from uvicorn.main import main as uvicorn_main


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def reset_multiprocess_metrics() -> None:
    """With PROMETHEUS_MULTIPROC_DIR (several workers), start from empty metric files: files of
    a previous run would add their counts to this one's."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for pattern in ("*.db", "live-*.json"):  # counters and histograms; live gauges
        for stale in path.glob(pattern):
            stale.unlink()


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_cleanly)
    reset_multiprocess_metrics()
    uvicorn_main(prog_name="python -m edge.serve")


if __name__ == "__main__":
    main()

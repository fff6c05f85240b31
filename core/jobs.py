"""Long work (a sweep, a budget search, a big decode) on a background thread.

A Streamlit page reruns its whole script on every click, and a page change drops whatever the script was doing.
So long work runs here instead: the page starts a `Job`, keeps it in the session, and polls it. The job reports
progress (done / total, ETA), keeps every partial result as it arrives, and stops at the next progress report
after `cancel()`. Nothing here imports Streamlit.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


class Cancelled(Exception):
    """Raised inside the work at its next progress report once the job was asked to stop."""


@dataclass
class Job:
    name: str
    status: str = RUNNING
    done: int = 0
    total: int = 0
    message: str = ""
    partial: list = field(default_factory=list)  # results kept as they arrive (e.g. sweep rows)
    result: Any = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Called by the work; raises Cancelled once cancel() was called."""
        if self._stop.is_set():
            raise Cancelled(self.name)
        self.done, self.total = done, total if total is not None else self.total
        if message is not None:
            self.message = message

    def keep(self, item) -> None:
        """Store a partial result (the page shows these while the job runs, and after a cancel)."""
        self.partial.append(item)

    def cancel(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    @property
    def eta(self) -> float | None:
        """Seconds left at the pace so far (None before the first progress report)."""
        if not self.running or not self.done or not self.total:
            return None
        return self.elapsed * (self.total - self.done) / self.done

    def describe(self) -> str:
        eta = f", about {self.eta:.0f} s left" if self.eta is not None else ""
        return f"{self.name}: {self.done}/{self.total} {self.message}{eta}".strip()


def start(name: str, work: Callable[[Job], Any]) -> Job:
    """Run work(job) on a daemon thread; its return value becomes job.result. An exception marks the job
    failed with its message (ValueError: the message alone; anything else: with the traceback's last line)."""
    job = Job(name)

    def run():
        try:
            job.result = work(job)
            job.status = DONE
        except Cancelled:
            job.status = CANCELLED
        except ValueError as exc:
            job.error, job.status = str(exc), FAILED
        except Exception as exc:  # noqa: BLE001 -- the page must show it, not lose it with the thread
            job.error = f"{type(exc).__name__}: {exc} ({traceback.format_exc().strip().splitlines()[-1]})"
            job.status = FAILED
        finally:
            job.finished = time.time()

    threading.Thread(target=run, name=f"job: {name}", daemon=True).start()
    return job

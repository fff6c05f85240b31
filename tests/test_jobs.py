"""Background jobs: progress, partial results, cancel and failure reach the page's polling."""
import threading
import time

from core.jobs import CANCELLED, DONE, FAILED, start


def _wait(job, timeout=10.0):
    t0 = time.time()
    while job.running and time.time() - t0 < timeout:
        time.sleep(0.01)
    assert not job.running


def test_a_job_reports_progress_keeps_partial_results_and_returns():
    def work(job):
        for i in range(5):
            job.progress(i, 5, f"item {i}")
            job.keep(i * i)
        return "finished"

    job = start("squares", work)
    _wait(job)
    assert job.status == DONE and job.result == "finished" and job.partial == [0, 1, 4, 9, 16]
    assert job.total == 5 and job.message == "item 4" and job.eta is None


def test_cancel_stops_at_the_next_progress_report_and_keeps_what_was_done():
    gate = threading.Event()

    def work(job):
        for i in range(1000):
            job.progress(i, 1000)
            job.keep(i)
            if i == 3:
                gate.set()
            time.sleep(0.005)

    job = start("long", work)
    gate.wait(5)
    assert job.running and job.eta is not None and 0 < job.fraction < 1
    job.cancel()
    _wait(job)
    assert job.status == CANCELLED and 4 <= len(job.partial) < 1000


def test_failures_are_reported_not_lost():
    job = start("bad input", lambda job: (_ for _ in ()).throw(ValueError("stride 0 is not a stride")))
    _wait(job)
    assert job.status == FAILED and job.error == "stride 0 is not a stride"
    job = start("bug", lambda job: 1 / 0)
    _wait(job)
    assert job.status == FAILED and job.error.startswith("ZeroDivisionError")

"""A background job's panel: progress with ETA and a cancel button while it runs, refreshed every second by a
fragment (the rest of the page is not rerun), and its outcome once it ends."""
from __future__ import annotations

import streamlit as st

from core import jobs


def job_panel(job: jobs.Job | None, key: str) -> None:
    if job is None:
        return

    @st.fragment(run_every=1.0 if job.running else None)
    def panel():
        seen = st.session_state.get(f"{key}_seen")
        st.session_state[f"{key}_seen"] = job.status
        if job.running:
            st.progress(job.fraction, text=job.describe())
            if st.button("Cancel", key=f"{key}_cancel"):
                job.cancel()
            st.caption("Runs in the background: clicking elsewhere or visiting another page does not stop it; "
                       "finished rows are kept.")
        elif seen == jobs.RUNNING:  # it ended since the last refresh: redraw the page with its results
            st.rerun(scope="app")
        elif job.status == jobs.FAILED:
            st.error(f"{job.name} failed: {job.error}")
        elif job.status == jobs.CANCELLED:
            st.warning(f"{job.name} cancelled after {job.elapsed:.0f} s; {len(job.partial)} finished result(s) kept.")
        else:
            st.caption(f"{job.name} finished in {job.elapsed:.0f} s.")

    panel()

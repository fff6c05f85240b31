"""Screenshot of the Generate page after a run, for the README (docs/screenshots/generate.png).

Starts `streamlit run app.py`, opens a link with the run's settings, waits until the run's animation and
caption show after pressing Generate, and captures the page.

    python bench/screenshot.py [--out docs/screenshots/generate.png]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8599)
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots" / "generate.png"))
    args = ap.parse_args(argv)
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(args.port)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        query = urllib.parse.urlencode({"schedule": "XS*2,S*2,M*3,L*5", "stride": "never", "cls": "Sneaker",
                                        "n": 16, "seed": 3, "steps": 12})
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/Generate?{query}")
            # The link runs its settings once (Run 1); the press of Generate is Run 2.
            page.get_by_text(re.compile(r"Run 1 · Tokens fingerprint")).first.wait_for(timeout=180_000)
            page.get_by_role("button", name="Generate").click(timeout=120_000)
            page.get_by_text(re.compile(r"Run 2 · Tokens fingerprint")).first.wait_for(timeout=180_000)
            page.get_by_text("▶ Play").first.wait_for(timeout=60_000)
            page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60_000)  # the run has ended
            page.wait_for_timeout(1500)  # let the figures redraw
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

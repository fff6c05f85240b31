"""What a user waits for, measured in a real browser: `streamlit run app.py` driven by Playwright with the system
Chromium. Times, on the Generate page with the default settings (1 image, 12 steps):

- click-to-first-step: from the click on Generate until the first step's token grid (or the finished run) shows;
- click-to-done: until the finished run (its animation and fingerprint) shows;
- 4 sessions at once: four browsers, each on its own link (other settings) and its run drawn, press Generate at
  the same moment; each must show what it shows alone (same fingerprint), and the slowest click-to-done is
  reported. A session reads its page (a whole-page text search) only once all four runs are done;
- the page's "model wall time" against the CLI's for the same settings (`python -m core sample`'s decode), the
  CLI timed right after each click in a process of its own.

With `--pin-browser`, Chromium runs on the first core and the app's server and the CLI on the others. On a 2-core
machine every click makes Chromium busy on more than one core while the server decodes (it re-renders the page),
which stretches the page's decode by a tenth to a quarter; pinned, the two decodes meet on equal terms, which
tells how much of page/CLI is the server's doing and how much the browser's.

Times are taken inside the browser, from the click event to a MutationObserver seeing the text, so neither
Playwright's checks before a click nor its polling add to them.

    python bench/browser.py [--runs 7]      # writes bench/results/browser.{json,md}
    python bench/browser.py --pin-browser --out bench/results/browser_pinned
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.decode_speed import cpu_name  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SETTLE_MS = 1000  # after a link's run shows, before its user presses Generate: the page finishes drawing it
WATCH = """(next) => {
  window.__marks = {};
  // The clock starts at the click itself, not when Playwright is asked to click: Playwright first waits for the
  // button to be visible, stable and enabled, which is not time a user waits.
  let start = null;
  document.addEventListener('click', () => { start = performance.now(); }, {capture: true, once: true});
  const seen = () => {
    if (start === null) return;
    const text = document.body.textContent;  // not innerText: that lays the page out on every change
    const done = text.includes(`Run ${next} · Tokens fingerprint`);
    if (!window.__marks.first && (text.includes('step 1 of') || done))
      window.__marks.first = performance.now() - start;
    if (!window.__marks.done && done)
      window.__marks.done = performance.now() - start;
  };
  // One observer at a time: an observer left from an earlier click would read the page on every change too,
  // and each click would then be slower than the last.
  if (window.__observer) window.__observer.disconnect();
  window.__observer = new MutationObserver(seen);
  window.__observer.observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Cores for the app's server and the CLI; None = all of them. --pin-browser keeps this process (and the Chromium it
# launches, which inherits its affinity) on the first core and gives the rest to these.
SERVER_CORES: set[int] | None = None


def _on_server_cores() -> None:
    if SERVER_CORES is not None:
        os.sched_setaffinity(0, SERVER_CORES)


def start_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_on_server_cores)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            if time.time() > deadline:
                proc.kill()
                raise RuntimeError("streamlit did not start") from None
            time.sleep(0.5)


def fingerprint(page) -> str:
    text = page.get_by_text(re.compile("Tokens fingerprint")).first.inner_text()
    return re.search(r"fingerprint\s+(\w+)", text).group(1)


def model_ms(page) -> float:
    return float(re.search(r"model wall time (\d+) ms", page.locator("[data-testid='stMain']").inner_text()).group(1))


def run_number(page) -> int:
    shown = page.get_by_text(re.compile(r"Run \d+ · Tokens fingerprint"))
    return int(re.search(r"Run (\d+)", shown.first.inner_text()).group(1)) if shown.count() else 0


def browser_cpu_s(cdp) -> float:
    """Seconds the page's renderer main thread has been busy so far (Chrome's Performance.getMetrics)."""
    return next(m["value"] for m in cdp.send("Performance.getMetrics")["metrics"] if m["name"] == "TaskDuration")


def process_cpu_s(match: str) -> float:
    """CPU seconds (user + system) used so far by every process whose command line contains `match`."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if match not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


# Whose CPU a click costs: the app's server, and Chromium with all its processes (renderer, GPU, browser, ...).
PROCESSES = {"server": "streamlit", "chromium": "chromium"}


def click_and_wait(page, cdp=None) -> dict:
    """Click Generate on an open Generate page and wait for the finished run, and for the last deltas to land: the
    times to its first step and to the end (with a CDP session, also the browser's main-thread CPU from just before
    the click to the end)."""
    page.evaluate(WATCH, run_number(page) + 1)
    cpu = browser_cpu_s(cdp) if cdp else None
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function("() => window.__marks.done", timeout=120_000)
    cpu = browser_cpu_s(cdp) - cpu if cdp else None
    marks = page.evaluate("window.__marks")
    page.wait_for_timeout(300)
    return {"first_step_s": marks["first"] / 1000, "done_s": marks["done"] / 1000, "browser_cpu_s": cpu}


def read_run(page) -> dict:
    """What the finished run shows. Reading it searches the whole page's text, which costs the browser far more
    than the observer does, so no other session may still be waiting for its run while this reads."""
    return {"model_ms": model_ms(page), "fingerprint": fingerprint(page)}


def one_click(page, cdp=None) -> dict:
    return click_and_wait(page, cdp) | read_run(page)


def open_link(browser, url: str, link: dict) -> tuple[object, float]:
    """A new session from a link (the page runs it on load): (page, seconds until the run shows)."""
    page = browser.new_context().new_page()
    t0 = time.perf_counter()
    page.goto(f"{url}/Generate?{urllib.parse.urlencode(link)}")
    page.get_by_text(re.compile("Tokens fingerprint")).first.wait_for(timeout=120_000)
    return page, time.perf_counter() - t0


def concurrent_round(url: str, links: list[dict]) -> list[tuple[str, float]]:
    """Four users, each in their own browser on their own link, press Generate at the same moment:
    (fingerprint, click-to-done) per session."""
    from playwright.sync_api import sync_playwright

    results: list = [None] * len(links)
    ready, all_done = threading.Barrier(len(links)), threading.Barrier(len(links))

    def session(i):
        with sync_playwright() as q:
            b = q.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            pg, _ = open_link(b, url, links[i])
            pg.wait_for_timeout(SETTLE_MS)
            ready.wait()
            click = click_and_wait(pg)
            all_done.wait()  # the sessions' own reading of their pages must not slow the others' runs
            results[i] = (read_run(pg)["fingerprint"], click["done_s"])
            b.close()

    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(links))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# The CLI's decode (`pipe.generate`, what `python -m core sample` runs) for the page's default settings, on as many
# threads as the app's server uses, in a process kept loaded: each line on stdin runs one decode and prints its
# model wall time (ms).
CLI_LOOP = """
import sys, torch
from core.pipeline import Pipeline, server_threads
torch.set_num_threads(server_threads())
pipe = Pipeline.load()
config = pipe.default_config(schedule='magnets', cache_stride='never', seed=0)
pipe.generate(config, [0])
print('ready', flush=True)
for _ in sys.stdin:
    print(1000 * pipe.generate(config, [0]).wall_time, flush=True)
"""


class CliDecodes:
    """The CLI's model time, measured between the page's clicks: the machine's speed drifts by tens of percent over
    minutes, so a CLI timed before or after the browsers is not comparable with the page; one timed right after
    each click is."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", CLI_LOOP], cwd=ROOT, text=True, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, preexec_fn=_on_server_cores)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the CLI decode process did not start")

    def __call__(self) -> float:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def main(argv=None) -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of four sessions at once (the machine is shared: "
                                                               "one round is a noisy sample)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "browser"))
    ap.add_argument("--pin-browser", action="store_true",
                    help="Chromium on the first core, the server and the CLI on the others (needs 2+ cores)")
    args = ap.parse_args(argv)
    global SERVER_CORES
    cores = sorted(os.sched_getaffinity(0))
    if args.pin_browser:
        if len(cores) < 2:
            ap.error("--pin-browser needs at least 2 cores")
        SERVER_CORES = set(cores[1:])
        os.sched_setaffinity(0, {cores[0]})
    cli = CliDecodes()
    server, url = start_server()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{url}/Generate", wait_until="networkidle")
            page.get_by_role("button", name="Generate").wait_for(timeout=90_000)
            one_click(page)  # warm-up: the first run loads the model into the server process
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            clicks = []
            for _ in range(args.runs):
                cpu = {name: process_cpu_s(match) for name, match in PROCESSES.items()}
                click = click_and_wait(page, cdp)  # reading the page (below) is not the click's cost
                click |= {f"{name}_cpu_s": process_cpu_s(match) - cpu[name] for name, match in PROCESSES.items()}
                clicks.append(click | read_run(page) | {"cli_model_ms": cli()})
            page.close()
            links = [{"steps": "12", "schedule": "magnets", "seed": str(s), "cls": c, "cfg": "2.0"}
                     for s, c in ((1, "Trouser"), (2, "Bag"), (3, "Dress"), (4, "Sneaker"))]
            alone = []
            for link in links:
                pg, _ = open_link(browser, url, link)
                alone.append(fingerprint(pg))
                pg.context.close()
            rounds = [concurrent_round(url, links) for _ in range(args.rounds)]
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
        cli.close()
    cli = statistics.median(c["cli_model_ms"] for c in clicks)
    page_model = statistics.median(c["model_ms"] for c in clicks)
    summary = {
        "click_to_first_step_median_s": statistics.median(c["first_step_s"] for c in clicks),
        "click_to_done_median_s": statistics.median(c["done_s"] for c in clicks),
        "click_to_done_min_s": min(c["done_s"] for c in clicks),
        "click_to_done_max_s": max(c["done_s"] for c in clicks),
        "page_model_ms_median": page_model, "cli_model_ms_median": cli, "page_vs_cli": page_model / cli,
        "browser_cpu_per_click_median_s": statistics.median(c["browser_cpu_s"] for c in clicks),
        "server_process_cpu_per_click_median_s": statistics.median(c["server_cpu_s"] for c in clicks),
        "chromium_processes_cpu_per_click_median_s": statistics.median(c["chromium_cpu_s"] for c in clicks),
        "concurrent_sessions": len(links), "concurrent_rounds": len(rounds),
        "concurrent_all_correct": all([r[0] for r in results] == alone for results in rounds),
        "concurrent_slowest_per_round_s": [max(r[1] for r in results) for results in rounds],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary["pinned"] = {"browser": cores[:1], "server_and_cli": cores[1:]} if args.pin_browser else None
    summary["cpu"] = cpu_name()
    out.with_suffix(".json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "summary": summary,
                                                    "clicks": clicks, "concurrent": rounds}, indent=2) + "\n")
    s, slowest = summary, summary["concurrent_slowest_per_round_s"]
    where = (f"Chromium on core {cores[0]}, the server and the CLI on {', '.join(map(str, cores[1:]))}"
             if args.pin_browser else f"everything sharing {len(cores)} cores") + f" of a {cpu_name()}"
    command = "python bench/browser.py" + (" --pin-browser" if args.pin_browser else "")
    lines = [f"Generate page, default settings (1 image, 12 steps), Debian chromium via Playwright, {args.runs} clicks "
             f"after a warm-up, {where} ({time.strftime('%Y-%m-%d')}; `{command}`).", "",
             "| measure | value | target |", "|---|---:|---:|",
             f"| click to first step (median) | {s['click_to_first_step_median_s']:.2f} s | <= 0.3 s |",
             f"| click to done (median; min-max) | {s['click_to_done_median_s']:.2f} s "
             f"({s['click_to_done_min_s']:.2f}-{s['click_to_done_max_s']:.2f}) | <= 0.6 s |",
             (f"| 4 sessions at once, slowest of the four (median of {len(rounds)} rounds; min-max; all correct: "
              f"{s['concurrent_all_correct']}) | {statistics.median(slowest):.2f} s ({min(slowest):.2f}-"
              f"{max(slowest):.2f}) | <= 2 s |" if rounds else "| 4 sessions at once | not measured (--rounds 0) | <= 2 s |"),
             f"| model wall time: page / CLI (medians) | {s['page_model_ms_median']:.0f} ms / "
             f"{s['cli_model_ms_median']:.0f} ms = {s['page_vs_cli']:.2f} | within 20 % |",
             f"| browser main-thread CPU per click (median) | {s['browser_cpu_per_click_median_s']:.2f} s | |",
             f"| CPU per click, all of Chromium's processes (median) | "
             f"{s['chromium_processes_cpu_per_click_median_s']:.2f} s | |",
             f"| CPU per click, the app's server process (median) | {s['server_process_cpu_per_click_median_s']:.2f} s | |"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

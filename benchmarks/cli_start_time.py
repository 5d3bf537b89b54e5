"""How long the command-line tools take from start to their last line of output (issue 30).

    python benchmarks/cli_start_time.py [--repeat 3] [--with-fallback-submit] [--before DIR]

--before DIR times the same commands run from DIR, a folder holding an older `wsi_assets` package, e.g.
    mkdir /tmp/before && git archive eaba26d wsi_assets | tar -x -C /tmp/before
so before and after come from one machine under the same load.

Starts a real webserver on a fresh SQLite instance (no daemon, so submitted runs stay queued),
uploads a small synthetic slide per submission, and times, as a user would see it:
- `python -m wsi_assets.cli.queue` asking the webserver (the default whenever run.sh is running);
- the same with no webserver answering: it reads the instance, importing Dagster;
- `python -m wsi_assets.cli.submit --help`, and a real submit through the webserver;
- with --with-fallback-submit, a submit with no webserver (`dagster job launch`, about a minute).
Each figure is the median wall time of the whole process, interpreter start included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from wsi_assets.testing.dagster_services import (
    BIN,
    free_port,
    running,
    service_env,
    wait_for_http,
    webserver_command,
)

REPO = Path(__file__).resolve().parents[1]

DEAD_URL = "http://127.0.0.1:9"  # nothing listens on the discard port: the CLIs fall back to the instance


def timed(argv: list[str], env: dict, cwd: Path = REPO) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "python"), "-m", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return elapsed, done.stdout


def median_of(repeat: int, argv_for, env: dict, cwd: Path = REPO) -> tuple[float, str]:
    times, out = [], ""
    for i in range(repeat):
        elapsed, out = timed(argv_for(i), env, cwd)
        times.append(elapsed)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", type=Path, help="a folder holding an older wsi_assets package to time as well")
    parser.add_argument(
        "--with-fallback-submit", action="store_true", help="also time a submit with no webserver (about a minute)"
    )
    args = parser.parse_args()
    from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

    work = Path(tempfile.mkdtemp(prefix="cli_start_time_"))
    home, user_files = work / "dagster_home", work / "user_files"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    slides = user_files / "bench" / "inputs" / "main"
    slides.mkdir(parents=True)
    source = work / "tiny.svs"
    write_synthetic_slide(source, SyntheticSlideSpec(width=1500, height=1200, mpp=0.25, seed=5))
    for i in range(2 * args.repeat + 2):
        shutil.copyfile(source, slides / f"s{i}.svs")

    port = free_port()
    env = service_env(home, user_files)
    url = f"http://127.0.0.1:{port}"
    fast, slow = {**env, "WSI_WEBSERVER_URL": url}, {**env, "WSI_WEBSERVER_URL": DEAD_URL}
    rows = []
    trees = [("", None)] + ([("before: ", args.before.resolve())] if args.before else [])
    try:
        with running(webserver_command(port), env, home / "webserver.log"):
            wait_for_http(f"{url}/server_info", timeout=300)
            timed(["wsi_assets.cli.submit", "bench/main/s0"], fast)  # one queued run, so the queue table has a row
            timed(["wsi_assets.cli.queue"], fast)  # the webserver's first answers are slower: warm it up
            for label, tree in trees:
                # `python -m` puts the working folder first on the path: run from the tree to time.
                cwd = tree or REPO
                first = len(rows) // 4 * args.repeat + 1  # each tree submits its own slides
                rows.append(
                    (label + "queue, webserver answers", *median_of(args.repeat, lambda i: ["wsi_assets.cli.queue"], fast, cwd))
                )
                rows.append(
                    (
                        label + "queue, no webserver (reads the instance)",
                        *median_of(args.repeat, lambda i: ["wsi_assets.cli.queue"], slow, cwd),
                    )
                )
                rows.append(
                    (label + "submit --help", *median_of(args.repeat, lambda i: ["wsi_assets.cli.submit", "--help"], fast, cwd))
                )
                rows.append(
                    (
                        label + "submit, webserver answers",
                        *median_of(args.repeat, lambda i: ["wsi_assets.cli.submit", f"bench/main/s{first + i}"], fast, cwd),
                    )
                )
            if args.with_fallback_submit:
                rows.append(
                    ("submit, no webserver (dagster job launch)", *timed(["wsi_assets.cli.submit", "bench/main/s0"], slow))
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'command':55s} {'median wall s':>13s}  (load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)")
    for name, seconds, _ in rows:
        print(f"{name:55s} {seconds:13.2f}")


if __name__ == "__main__":
    main()

"""Many app clients, then none: does the server give back what closed tabs held?

    python benchmarks/bench_load.py [--clients 8] [--rounds 6] [--steps 2]

Starts `python app.py` (the bundled demo checkpoint, the built-in simulator) in a subprocess, waits for
its "ready" line (the server's warm-up: the demo checkpoint read and stepped once in a tab it then
releases; panels.app.preload) and, for each round, opens `--clients` gradio_client sessions at once; each loads the simulator and steps. All
sessions stay open until the last round, then all are closed. Reads the server's RSS and thread count
(/proc/<pid>/status) when it first serves, at start (ready), once warm (one tab opened and closed: the model cache and the process-wide
pools of torch and Rerun exist from then on), at the peak and after the clients left (waiting up to
--settle seconds for the thread count to come back to the warm one).
Targets: RSS back within 200 MB of the start, threads back to the start count, no errors.
Prints a table and saves benchmarks/results/bench_load.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "app")]

from test_app_client import LOAD, SEED  # noqa: E402  (the /load arguments the app tests use)


def proc_status(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"])}


def thread_names(pid: int) -> dict[str, int]:
    """The server's threads by name (native ones included), e.g. {"RecordingStream": 2, ...}."""
    names: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        names[name] = names.get(name, 0) + 1
    return dict(sorted(names.items()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(sessions: Path, ready: threading.Event) -> tuple[subprocess.Popen, str]:
    """The app in a subprocess, and its URL once it serves; `ready` is set at its "ready" line."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--sessions-dir", str(sessions)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={"OMP_NUM_THREADS": "1", **__import__("os").environ},
    )

    def watch() -> None:
        for line in proc.stdout:
            if line.startswith("workbench app: ready"):
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the app exited before it served") from None
            time.sleep(0.5)
    proc.kill()
    raise TimeoutError("the app did not start within 180 s")


def use_tab(url: str, seed: int, steps: int, clients: list, errors: list) -> None:
    from gradio_client import Client

    try:
        c = Client(url, verbose=False)
        clients.append(c)
        args = list(LOAD)
        args[0] = ""  # the demo checkpoint
        args[SEED] = seed
        c.predict(*args, api_name="/load")
        for _ in range(steps):
            c.predict(api_name="/step")
    except Exception as e:  # counted, not raised: the figure is how many failed
        errors.append(f"{type(e).__name__}: {e}")


def poke(url: str) -> None:
    """A call that changes nothing (Pause with no tab), after every worker thread has idled > 10 s."""
    from gradio_client import Client

    time.sleep(11.0)
    client = Client(url, verbose=False)
    client.predict(api_name="/pause")
    client.close()
    time.sleep(1.0)


def settle(pid: int, start: dict, timeout: float) -> tuple[dict, float]:
    """The server's status once threads are back to the start count (or after `timeout`)."""
    t0 = time.monotonic()
    now = proc_status(pid)
    while now["threads"] > start["threads"] and time.monotonic() - t0 < timeout:
        time.sleep(1.0)
        now = proc_status(pid)
    return now, time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait for the release")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ready = threading.Event()
        proc, url = start_app(Path(tmp) / "sessions", ready)
        try:
            serving = proc_status(proc.pid)
            t0 = time.monotonic()
            if not ready.wait(timeout=300):
                raise TimeoutError("the app printed no 'ready' line within 300 s")
            ready_seconds = time.monotonic() - t0
            start = proc_status(proc.pid)
            # one tab opened and closed first: what stays is the process's one-time state (the model in
            # the checkpoint cache, torch's and Rerun's pools), not a tab's
            warm_clients: list = []
            errors: list[str] = []
            use_tab(url, 10_000, args.steps, warm_clients, errors)
            for c in warm_clients:
                c.close()
            deadline = time.monotonic() + args.settle  # until the page's unload has freed that tab
            while "RecordingStream" in thread_names(proc.pid) and time.monotonic() < deadline:
                time.sleep(1.0)
            warm = proc_status(proc.pid)
            warm_names = thread_names(proc.pid)
            clients: list = []
            peak = dict(start)
            rounds = []
            for r in range(args.rounds):
                t0 = time.monotonic()
                threads = [
                    threading.Thread(
                        target=use_tab, args=(url, r * args.clients + i, args.steps, clients, errors)
                    )
                    for i in range(args.clients)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                now = proc_status(proc.pid)
                peak = {k: max(peak[k], now[k]) for k in peak}
                rounds.append({"round": r, "seconds": time.monotonic() - t0, **now})
                print(f"round {r}: {time.monotonic() - t0:6.1f} s  {now}", flush=True)
            for c in clients:
                c.close()
            after, waited = settle(proc.pid, warm, args.settle)
            # Gradio runs handlers on anyio's worker threads, which end after 10 s idle, but only when
            # the next handler runs (anyio prunes then): one cheap call lets the idle ones go
            poke(url)
            after, _ = settle(proc.pid, warm, 5.0)
            after_names = thread_names(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result = {
        "clients": args.clients,
        "rounds": args.rounds,
        "steps": args.steps,
        "tabs": len(clients),
        "errors": len(errors),
        "error_samples": errors[:5],
        "serving": serving,
        "ready_seconds_after_serving": ready_seconds,
        "start": start,
        "warm": warm,
        "peak": peak,
        "after_close": after,
        "settle_seconds": waited,
        "rss_back_within_mb": after["rss_mb"] - start["rss_mb"],
        "rss_vs_warm_mb": after["rss_mb"] - warm["rss_mb"],
        "threads_back": after["threads"] <= start["threads"],
        "threads_back_to_warm": after["threads"] <= warm["threads"],
        "thread_names_warm": warm_names,
        "thread_names_after_close": after_names,
        "rounds_detail": rounds,
        "machine": {"python": platform.python_version(), "machine": platform.machine()},
    }
    print(f"\n{'':14s} {'RSS MB':>8s} {'threads':>8s}")
    for name in ("serving", "start", "warm", "peak", "after_close"):
        print(f"{name:14s} {result[name]['rss_mb']:8.0f} {result[name]['threads']:8d}")
    print(f"{len(clients)} tabs, {len(errors)} errors; after close RSS {result['rss_back_within_mb']:+.0f} MB "
          f"vs start (target <= 200), {result['rss_vs_warm_mb']:+.0f} MB vs warm; threads back to start: "
          f"{result['threads_back']}, to warm: {result['threads_back_to_warm']} (waited {waited:.0f} s)")  # fmt: skip
    extra = {k: v - warm_names.get(k, 0) for k, v in after_names.items() if v > warm_names.get(k, 0)}
    print(f"threads after close beyond the warm ones: {extra or 'none'}")
    out = ROOT / "benchmarks" / "results" / "bench_load.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Policy-server overhead and recorded-episode read speed.

    python benchmarks/bench_serve.py [--repeats 20]

Measures, on 127.0.0.1:
  - protocol round trip (msgpack + websocket + request checks) with a policy that does no work,
    for one 224x224 view and a batch of 8;
  - the tiny ST4VLA policy (tiny_config) called locally vs through PolicyServer + RemotePolicy;
  - reading the shipped sample episode (assets/episodes/sample) and writing a copy;
  - hostile load: the bundled st4vla-tiny served (--state-policy mean); one client's normal requests
    timed alone, then again while a second client keeps sending a 100 KB instruction, whose refusal
    time is measured too (target: refused in < 1 s, the first client's latency unchanged).
`--only hostile` runs the last part alone.
Prints a table and saves benchmarks/results/bench_serve.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.episodes import LeRobotDataset, LeRobotDatasetWriter  # noqa: E402
from workbench.records import ActionChunk  # noqa: E402
from workbench.serve import PolicyClient, PolicyServer, RemotePolicy  # noqa: E402


class NullPolicy:
    """Returns a fixed chunk: what is left of the round trip is the protocol's own cost."""

    def act(
        self, images, instruction, *, num_ddim_steps=10, cfg_scale=1.5, seed=None, return_internals=False
    ):
        a = np.zeros((16, 7))
        return ActionChunk(normalized=a, actions=a)


def timed(fn, repeats: int, label: str) -> dict[str, float]:
    fn()  # warm-up
    times = []
    for _ in tqdm(range(repeats), desc=label, leave=False):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_ms": 1e3 * statistics.median(times), "p90_ms": 1e3 * float(np.percentile(times, 90))}


def bench_protocol(repeats: int) -> dict[str, dict]:
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = {}
    with PolicyServer(NullPolicy(), port=0) as server, PolicyClient(port=server.port) as client:
        for batch in (1, 8):
            request = {
                "batch_images": [[image]] * batch,
                "instructions": ["pick the can"] * batch,
                "num_ddim_steps": 10,
            }
            out[f"round trip, null policy, batch {batch}"] = timed(
                lambda r=request: client.infer(r), repeats, f"B={batch}"
            )
    return out


def bench_tiny_policy(repeats: int) -> dict[str, dict]:
    import torch

    from workbench.policy import ST4VLAPolicy, tiny_config

    torch.set_num_threads(1)
    policy = ST4VLAPolicy.from_config(tiny_config())
    image = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = {
        "tiny ST4VLA act, local": timed(lambda: policy.act([image], "pick the can", seed=0), repeats, "local")
    }
    with PolicyServer(policy, port=0) as server:
        remote = RemotePolicy.connect(port=server.port)
        out["tiny ST4VLA act, remote"] = timed(
            lambda: remote.act([image], "pick the can", seed=0), repeats, "remote"
        )
        remote.client.close()
    return out


def bench_episode(repeats: int) -> dict[str, dict]:
    root = ROOT / "assets" / "episodes" / "sample"
    ds = LeRobotDataset(root)
    n = len(ds.episode(0))
    read = timed(lambda: ds.episode(0), repeats, "read")
    read["frames"] = n

    def write() -> None:
        episode = ds.episode(0)
        with tempfile.TemporaryDirectory() as tmp:
            w = LeRobotDatasetWriter(Path(tmp) / "copy", fps=ds.fps, features=ds.features)
            for t in range(len(episode)):
                w.add_observation(episode.observation(t), episode.frames[t].action)
            w.save_episode(task=episode.task)
            w.finalize()

    written = timed(write, max(3, repeats // 4), "read+write")
    written["frames"] = n
    return {"sample episode read (PNG decode)": read, "sample episode read + write copy": written}


def bench_hostile(repeats: int) -> dict[str, dict]:
    import threading

    import torch

    from workbench.policy import ST4VLAPolicy

    torch.set_num_threads(1)
    policy = ST4VLAPolicy.load(ROOT / "assets" / "checkpoints" / "st4vla-tiny")
    image = np.random.default_rng(2).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    request = {  # upstream's SimplerEnv client's request
        "batch_images": [[image]],
        "instructions": ["put the carrot on the plate"],
        "unnorm_key": "tabletop_panda",
        "do_sample": False,
        "cfg_scale": 1.5,
        "use_ddim": True,
        "num_ddim_steps": 10,
    }
    hostile = {**request, "instructions": ["put the carrot on the plate " * 3700]}  # 103,600 chars
    out: dict[str, dict] = {}
    with PolicyServer(policy, port=0, state_policy="mean") as server, PolicyClient(port=server.port) as b:
        out["normal request, alone"] = timed(lambda: b.infer(request), repeats, "alone")
        stop, refusals, messages = threading.Event(), [], set()

        def attack() -> None:
            with PolicyClient(port=server.port) as a:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    reply = a.infer(hostile)
                    refusals.append(time.perf_counter() - t0)
                    messages.add(reply["status"] + ": " + reply.get("error", {}).get("message", ""))

        attacker = threading.Thread(target=attack)
        attacker.start()
        out["normal request, while 100 KB instructions arrive"] = timed(
            lambda: b.infer(request), repeats, "under attack"
        )
        stop.set()
        attacker.join()
    out["100 KB instruction, refusal"] = {
        "median_ms": 1e3 * statistics.median(refusals),
        "p90_ms": 1e3 * float(np.percentile(refusals, 90)),
        "max_ms": 1e3 * max(refusals),
        "count": len(refusals),
        "replies": sorted(messages),
    }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", choices=["hostile"], default=None, help="run one part alone")
    args = parser.parse_args()
    if args.only == "hostile":
        results = bench_hostile(args.repeats)
    else:
        results = (
            bench_protocol(args.repeats)
            | bench_tiny_policy(args.repeats)
            | bench_episode(args.repeats)
            | bench_hostile(args.repeats)
        )
    print(f"\n{'measurement':50s} {'median ms':>10s} {'p90 ms':>10s}")
    for name, r in results.items():
        extra = f"  ({r['frames']} frames)" if "frames" in r else ""
        extra += f"  (max {r['max_ms']:.1f} ms over {r['count']})" if "max_ms" in r else ""
        print(f"{name:50s} {r['median_ms']:10.2f} {r['p90_ms']:10.2f}{extra}")
    for r in results.values():
        for reply in r.get("replies", []):
            print(f"  reply: {reply[:160]}")
    name = "bench_serve_hostile.json" if args.only else "bench_serve.json"
    out = ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
    out.write_text(json.dumps({"repeats": args.repeats, "machine": machine, "results": results}, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

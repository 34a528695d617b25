"""Latency per stage and peak memory of ST4VLAPolicy.spatial() and .act() (random weights, CPU).

    python benchmarks/bench_policy.py                 # tiny config
    python benchmarks/bench_policy.py --real          # also InternVLA-M1 sizes (Qwen2.5-VL-3B, DiT-B; bf16)

Each configuration runs in its own process so its peak RSS is its own. Prints a table and writes
benchmarks/results/bench_policy.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
RESULTS = Path(__file__).parent / "results" / "bench_policy.json"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_one(kind: str, repeats: int, new_tokens: int, threads: int) -> dict:
    import numpy as np
    import torch
    from tqdm import tqdm

    from workbench.policy import ST4VLAPolicy, internvla_m1_config, tiny_config

    torch.set_num_threads(threads)
    if kind == "tiny":
        config, dtype = tiny_config(), torch.float32
    else:
        config, dtype = internvla_m1_config(dino=True), torch.bfloat16
    t0 = time.perf_counter()
    policy = ST4VLAPolicy.from_config(config, dtype=dtype)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in policy.model.parameters())
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    instruction = "put the carrot on the plate"
    vlm = policy.model.qwen_vl_interface

    stages: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        stages.setdefault(name, []).append(seconds)

    policy.act([image], instruction, seed=0, num_ddim_steps=10)  # warm-up
    for i in tqdm(range(repeats), desc=f"{kind}: act + spatial", file=sys.stderr):
        t = time.perf_counter()
        chunk = policy.act(
            [image], instruction, seed=i, num_ddim_steps=10, cfg_scale=1.5, return_internals=True
        )
        record("act: total", time.perf_counter() - t)
        for name, sec in chunk.timings.items():
            record(f"act: {name}", sec)
        # spatial(): preprocessing, one prefill forward, and the greedy decode.
        views, _ = policy.prepare_images([image])
        t = time.perf_counter()
        inputs = vlm.build_inputs([views], [policy.prompt(instruction)])
        record("spatial: preprocess", time.perf_counter() - t)
        with torch.no_grad():
            t = time.perf_counter()
            vlm(inputs, output_hidden_states=False)
            record("spatial: vlm_forward (prefill)", time.perf_counter() - t)
        t = time.perf_counter()
        vlm.model.generation_config.min_new_tokens = new_tokens  # decode a fixed length (random model)
        vlm.generate(inputs, max_new_tokens=new_tokens)
        record(f"spatial: decode {new_tokens} tokens", time.perf_counter() - t)
        t = time.perf_counter()
        policy.spatial([image], instruction, max_new_tokens=new_tokens)
        record("spatial: total", time.perf_counter() - t)
    return {
        "config": kind,
        "dtype": str(dtype).replace("torch.", ""),
        "parameters_M": round(params / 1e6, 2),
        "build_s": round(build_s, 2),
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "new_tokens": new_tokens,
        "repeats": repeats,
        "threads": threads,
        "peak_rss_MB": round(peak_rss_mb(), 1),
        "stages_ms": {k: round(1000 * statistics.median(v), 2) for k, v in stages.items()},
    }


def print_table(results: list[dict]) -> None:
    names = list(dict.fromkeys(k for r in results for k in r["stages_ms"]))
    head = f"{'stage (median ms)':42s}" + "".join(f"{r['config'] + ' ' + r['dtype']:>18s}" for r in results)
    print(head)
    print("-" * len(head))
    for name in names:
        print(f"{name:42s}" + "".join(f"{r['stages_ms'].get(name, float('nan')):18.1f}" for r in results))
    for key in ("parameters_M", "build_s", "prompt_tokens", "peak_rss_MB", "threads"):
        print(f"{key:42s}" + "".join(f"{r[key]:>18}" for r in results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--real", action="store_true", help="also benchmark InternVLA-M1's real sizes (slow, ~9 GB)"
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; more than the free cores makes them wait on each other",
    )
    ap.add_argument("--only", choices=["tiny", "real"], help=argparse.SUPPRESS)  # child process
    args = ap.parse_args()
    if args.only:
        print(json.dumps(run_one(args.only, args.repeats, args.new_tokens, args.threads)))
        return
    results = []
    for kind in ["tiny"] + (["real"] if args.real else []):
        repeats = args.repeats if kind == "tiny" else max(1, min(args.repeats, 2))
        tokens = args.new_tokens if kind == "tiny" else min(args.new_tokens, 8)
        cmd = [sys.executable, __file__, "--only", kind, "--repeats", str(repeats), "--new-tokens", str(tokens),
               "--threads", str(args.threads)]  # fmt: skip
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": __import__("os").cpu_count(),
    }
    RESULTS.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\nsaved {RESULTS}")


if __name__ == "__main__":
    main()

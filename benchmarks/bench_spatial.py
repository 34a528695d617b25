"""Worst-case cost of the spatial parser on hostile model text (bounded by workbench.spatial.MAX_ANSWER_CHARS).

    python benchmarks/bench_spatial.py [--repeats 5]

Each case is about 1 MB: nested brackets around a wide list (the shape that made every candidate start
decode the whole text), deep opening brackets, brackets in prose, and a long list of complete items.
Target: every parse under 0.1 s. Prints a table and saves benchmarks/results/bench_spatial.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.spatial import MAX_ANSWER_CHARS, parse  # noqa: E402

ITEM = '{"label": "a", "bbox_2d": [1, 2, 3, 4]}'
CASES = {
    "nested brackets around a wide list": "[" * 64 + ",".join(["[1,2]"] * 150_000) + "]" * 64,
    "nested pairs in a wide list": "[" * 10 + ",".join(["[[1,2],[3,4]]"] * 70_000) + "]" * 10,
    "1 MB of opening brackets": "[" * 1_000_000,
    "brackets in prose": "x [ y { " * 130_000,
    "30,000 complete items": "[" + ",".join([ITEM] * 30_000) + "]",
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {}
    print(f"{'case':40s} {'chars':>9s} {'worst s':>8s}  problems")
    for name, text in CASES.items():
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            answer = parse(text)
            times.append(time.perf_counter() - t0)
        results[name] = {"chars": len(text), "worst_s": max(times), "problems": answer.problems}
        print(f"{name:40s} {len(text):9d} {max(times):8.4f}  {answer.problems[:1]}")
    out = ROOT / "benchmarks" / "results" / "bench_spatial.json"
    machine = {"python": platform.python_version(), "machine": platform.machine()}
    payload = {
        "max_answer_chars": MAX_ANSWER_CHARS,
        "repeats": args.repeats,
        "machine": machine,
        "results": results,
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

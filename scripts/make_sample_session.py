"""Write the shipped sample session (sessions/sample/) that the app replays with no model:

    python scripts/make_sample_session.py [--steps 40] [--root sessions] [--id sample]

A = assets/checkpoints/st4vla-tiny (the tiny random policy while it is missing), B =
assets/checkpoints/vanilla-tiny when present, in shared mode on tabletop_put_on at 224x168, the
aspect of the training frames (at 224x224 the bundled st4vla-tiny failed this episode), so the replay
shows the side-by-side A/B layout. The run stops when the episode ends (A puts the object on the plate
at step 28). One user click (at the ground-truth object's centre, step 0) is saved as an edit, so a
replay shows click-to-prompt too. Keep it small: it is committed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=ROOT / "sessions")
    ap.add_argument("--id", default="sample")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--task", default="tabletop_put_on")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    from tqdm import tqdm

    from panels.state import AppConfig
    from panels.state.core import Workbench
    from panels.state.sessions import save
    from panels.state.specs import PolicySettings, SourceSpec
    from workbench.policy.checkpoint import is_checkpoint_dir

    torch.set_num_threads(1)
    ckpts = ROOT / "assets" / "checkpoints"
    a = "st4vla-tiny" if is_checkpoint_dir(ckpts / "st4vla-tiny") else ""
    b = "vanilla-tiny" if is_checkpoint_dir(ckpts / "vanilla-tiny") else None
    out = args.root / args.id
    if out.exists():
        shutil.rmtree(out)
    scratch = args.root / f".{args.id}-tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    wb = Workbench(AppConfig(sessions_dir=scratch, camera_width=224, camera_height=168))
    tab = wb.new_tab()
    tab.load(SourceSpec(task=args.task, seed=args.seed), [a, *([b] if b else [])], PolicySettings())
    for note in tab.take_notes():
        print("note:", note)
    gt = tab.last_record.observation.ground_truth
    box = next((o for o in gt.objects if o.label == gt.object_label), None) if gt else None
    if box is not None:
        tab.mark_point(*box.center)
    for _ in tqdm(tab.run(args.steps), total=args.steps, desc="sample session"):
        pass
    saved = save(tab)
    tab.close()
    saved.rename(out)
    meta_file = out / "session.json"  # the id inside follows the folder's new name
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "id": args.id}, indent=2))
    shutil.rmtree(scratch, ignore_errors=True)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {len(tab.records)} records, policies {tab.policy_names}, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Model cards for the bundled checkpoints: how the model was trained, its evaluation, its deviations."""

from __future__ import annotations

import json
from pathlib import Path


def write_card(
    checkpoint: str | Path,
    title: str,
    summary: str,
    commands: list[str],
    evaluation_md: str | None,
    deviations: list[str],
    training_logs: dict[str, list[dict]] | None = None,
) -> Path:
    """Write README.md next to the weights; the evaluation table is pasted from evaluate's report.md."""
    checkpoint = Path(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    lines = [f"# {title}", "", summary, "", "## How it was trained", "", "```"] + commands + ["```", ""]
    for name, log in (training_logs or {}).items():
        if not log:
            continue
        keys = [k for k in log[0] if k != "minutes"] + ["minutes"]
        lines += [f"### {name} log", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_cell(r.get(k, "")) for k in keys) + " |" for r in log]
        lines.append("")
    lines += ["## Evaluation", ""]
    lines += [
        evaluation_md.replace("# Evaluation", "###  Evaluation") if evaluation_md else "Not evaluated yet."
    ]
    lines += ["", "## Architecture and deviations from upstream InternVLA-M1", ""]
    v, q, a = config["vlm"], config["qformer"], config["action"]
    lines += [
        f"- VLM: transformers Qwen2_5_VLForConditionalGeneration built from a config: text hidden {v['hidden_size']}, "
        f"{v['num_layers']} layers, {v['num_heads']} heads; vision depth {v['vision_depth']}, hidden {v['vision_hidden']}; "
        f"image {config['image_size']}x{config['image_size']} (patch {v['patch_size']}, merge {v['spatial_merge_size']}).",
        f"- Query former: {q['num_queries']} queries x {q['width']} on the last VLM layer; "
        f"DiT: width {a['width']}, depth {a['depth']}, heads {a['num_heads']}; chunk {a['chunk_length']} x {a['action_dim']}; "
        f"DDPM {a['diffusion_steps']} steps ({a['noise_schedule']}), repeated diffusion steps {a['repeated_diffusion_steps']}.",
        f"- Spatial prompt at control time: {config['use_spatial_prompt']}.",
    ]
    lines += [f"- {d}" for d in deviations]
    path = checkpoint / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def record_command(run_dir: str | Path, checkpoint: str | Path, command: str, config: dict) -> Path:
    """Save how a checkpoint was made: <run_dir>/command.json (the command line and the resolved config
    it parsed into) and the same, as a section, at the end of the checkpoint's card (README.md)."""
    run_dir, checkpoint = Path(run_dir), Path(checkpoint)
    record = {"command": command, "config": config}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "command.json").write_text(json.dumps(record, indent=1) + "\n")
    card = checkpoint / "README.md"
    text = card.read_text().rstrip("\n") + "\n\n" if card.exists() else ""
    section = ["## Command", "", "```", command, "```", "", "Resolved configuration:", "", "```json"]
    card.write_text(text + "\n".join([*section, json.dumps(config, indent=1), "```", ""]))
    return run_dir / "command.json"


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def export_checkpoint(src: str | Path, dst: str | Path, dtype: str = "float16") -> Path:
    """Copy a workbench checkpoint, storing the weights in half precision (loading casts them back).

    The bundled checkpoints are stored this way to stay small; their evaluation is run on the
    exported files, so the numbers in the card are those of what ships.
    """
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    if dtype not in ("float16", "bfloat16", "float32"):
        raise ValueError(f"dtype must be float16, bfloat16 or float32, got {dtype!r}")
    src, dst = Path(src), Path(dst)
    if not (src / "model.safetensors").exists():
        raise FileNotFoundError(f"{src} is not a workbench checkpoint (no model.safetensors)")
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy2(f, dst / f.name)
    weights = load_file(str(src / "model.safetensors"))
    target = getattr(torch, dtype)
    save_file(
        {k: v.to(target) if v.is_floating_point() else v for k, v in weights.items()},
        str(dst / "model.safetensors"),
    )
    return dst

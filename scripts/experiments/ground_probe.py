"""Phase-0 grounding probe: can a tiny Qwen2.5-VL learn to box the object named in the question?

Synthetic tabletop scenes like the built-in simulator's camera view (table, 2-4 coloured objects).
Standalone (no workbench imports) so it can run while the package is being built.
Usage: python scripts/experiments/ground_probe.py --steps 2000 --curriculum 600 --quant 4 --tag A
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

OBJECTS = {  # name -> (rgb, shape)
    "carrot": ((235, 120, 30), "rect"),
    "eggplant": ((110, 40, 140), "ellipse"),
    "spoon": ((170, 170, 180), "rect"),
    "cube": ((40, 170, 60), "rect"),
    "can": ((200, 30, 40), "ellipse"),
    "sponge": ((230, 210, 60), "rect"),
    "plate": ((240, 240, 240), "ellipse"),
    "cup": ((40, 80, 200), "ellipse"),
}
NAMES = list(OBJECTS)
SPECIAL = [
    "<pad>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "user",
    "assistant",
    "\n",
]
WORDS = ["locate", "the", "all", "objects", "[", "]", "{", "}", '"label":', '"bbox_2d":', ",", "in", "image"]
VOCAB = SPECIAL + WORDS + [f'"{n}"' for n in NAMES] + NAMES + [str(i) for i in range(1024)]
TOK = {t: i for i, t in enumerate(VOCAB)}


def render(rng: np.random.Generator, size: int, n_obj: int):
    img = np.zeros((size, size, 3), np.float32)
    table = np.array([150, 110, 70], np.float32) + rng.normal(0, 8, 3)
    img[:] = table
    img[: size // 6] = (90, 90, 100)  # wall strip at the top, a landmark like the sim's
    img += rng.normal(0, 6, img.shape)
    names = rng.choice(NAMES, n_obj, replace=False)
    boxes = []
    yy, xx = np.mgrid[0:size, 0:size]
    for n in names:
        for _ in range(50):
            w, h = rng.integers(size // 9, size // 4, 2)
            x1 = rng.integers(2, size - w - 2)
            y1 = rng.integers(size // 6 + 2, size - h - 2)
            b = (x1, y1, x1 + w, y1 + h)
            if all(
                b[0] >= o[2] + 2 or b[2] + 2 <= o[0] or b[1] >= o[3] + 2 or b[3] + 2 <= o[1] for o in boxes
            ):
                break
        rgb, shape = OBJECTS[n]
        col = np.array(rgb, np.float32) + rng.normal(0, 10, 3)
        if shape == "rect":
            m = (xx >= b[0]) & (xx < b[2]) & (yy >= b[1]) & (yy < b[3])
        else:
            cx, cy, rx, ry = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, (b[2] - b[0]) / 2, (b[3] - b[1]) / 2
            m = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1
        img[m] = col
        boxes.append(b)
    return np.clip(img, 0, 255).astype(np.uint8), list(names), boxes


def patchify(imgs: np.ndarray, patch: int, merge: int) -> torch.Tensor:
    """[B,H,W,3] uint8 -> [B*gh*gw, 3*2*p*p] in Qwen2-VL processor order."""
    x = torch.from_numpy(imgs).float().div(255).permute(0, 3, 1, 2)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    x = (x - mean) / std
    b, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    x = x.unsqueeze(1).repeat(1, 2, 1, 1, 1)  # temporal patch 2 (one frame repeated)
    x = x.view(b, 2, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(b * gh * gw, c * 2 * patch * patch), (gh, gw)


def q(v: float, quant: int, size: int) -> int:
    return int(min(size - 1, max(0, round(v / quant) * quant)))


def sample(rng, size, quant, n_vis, max_obj, p_all):
    n = int(rng.integers(1, max_obj + 1)) if max_obj > 1 else 1
    img, names, boxes = render(rng, size, n)
    k = int(rng.integers(n))
    prompt = (
        ["<|im_start|>", "user", "\n", "<|vision_start|>"] + ["<|image_pad|>"] * n_vis + ["<|vision_end|>"]
    )

    def ans(i):
        b = boxes[i]
        return [
            "{",
            '"label":',
            f'"{names[i]}"',
            ",",
            '"bbox_2d":',
            "[",
            str(q(b[0], quant, size)),
            ",",
            str(q(b[1], quant, size)),
            ",",
            str(q(b[2], quant, size)),
            ",",
            str(q(b[3], quant, size)),
            "]",
            "}",
        ]

    if rng.random() < p_all:
        q_words = ["locate", "all", "objects"]
        order = sorted(range(n), key=lambda i: boxes[i][0])
        a = ["["] + sum([ans(i) + [","] for i in order], [])[:-1] + ["]"]
    else:
        q_words = ["locate", "the", names[k]]
        a = ans(k)
    prompt += q_words + ["<|im_end|>", "\n", "<|im_start|>", "assistant", "\n"]
    return img, [TOK[t] for t in prompt], [TOK[t] for t in a + ["<|im_end|>"]], boxes[k], names[k]


def build(args):
    n_heads = 4
    hd = args.hidden // n_heads
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(VOCAB),
            hidden_size=args.hidden,
            intermediate_size=args.hidden * 3,
            num_hidden_layers=args.layers,
            num_attention_heads=n_heads,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [hd // 8, hd * 3 // 16, hd * 3 // 16],
            },
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        ),
        vision_config=dict(
            depth=args.vdepth,
            hidden_size=args.vhidden,
            intermediate_size=args.vhidden * 2,
            num_heads=3,
            out_hidden_size=args.hidden,
            patch_size=14,
            spatial_merge_size=args.merge,
            window_size=args.size,
            fullatt_block_indexes=list(range(args.vdepth)),
        ),
        image_token_id=TOK["<|image_pad|>"],
        video_token_id=TOK["<|video_pad|>"],
        vision_start_token_id=TOK["<|vision_start|>"],
        vision_end_token_id=TOK["<|vision_end|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(cfg)


def batch(rng, args, n_vis, max_obj, p_all):
    items = [sample(rng, args.size, args.quant, n_vis, max_obj, p_all) for _ in range(args.batch)]
    L = max(len(p) + len(a) for _, p, a, _, _ in items)
    ids = torch.zeros(args.batch, L, dtype=torch.long)
    labels = torch.full((args.batch, L), -100)
    att = torch.zeros(args.batch, L, dtype=torch.long)
    for i, (_, p, a, _, _) in enumerate(items):
        s = p + a
        ids[i, : len(s)] = torch.tensor(s)  # right padding for training
        labels[i, len(p) : len(s)] = torch.tensor(a)
        att[i, : len(s)] = 1
    pv, (gh, gw) = patchify(np.stack([it[0] for it in items]), 14, args.merge)
    thw = torch.tensor([[1, gh, gw]] * args.batch)
    return ids, att, labels, pv, thw


@torch.no_grad()
def evaluate(model, args, n_vis, max_obj, n=48):
    rng = np.random.default_rng(12345)
    model.eval()
    ious = []
    for _ in range(n // 16):
        items = [sample(rng, args.size, args.quant, n_vis, max_obj, 0.0) for _ in range(16)]
        pv, (gh, gw) = patchify(np.stack([it[0] for it in items]), 14, args.merge)
        ids = torch.tensor([it[1] for it in items])  # same prompt length for all
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=pv,
            image_grid_thw=torch.tensor([[1, gh, gw]] * 16),
            max_new_tokens=18,
            do_sample=False,
            eos_token_id=TOK["<|im_end|>"],
            pad_token_id=0,
        )
        for it, o in zip(items, out[:, ids.shape[1] :], strict=True):
            toks = [VOCAB[t] for t in o.tolist()]
            nums = [int(t) for t in toks if t.isdigit()][:4]
            b = it[3]
            if len(nums) < 4:
                ious.append(0.0)
                continue
            ix = max(0, min(b[2], nums[2]) - max(b[0], nums[0])) * max(
                0, min(b[3], nums[3]) - max(b[1], nums[1])
            )
            ua = (b[2] - b[0]) * (b[3] - b[1]) + max(0, nums[2] - nums[0]) * max(0, nums[3] - nums[1]) - ix
            ious.append(ix / ua if ua > 0 else 0.0)
    model.train()
    return float(np.mean(ious))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--curriculum", type=int, default=0, help="steps with one object before distractors")
    ap.add_argument("--quant", type=int, default=4)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--merge", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vdepth", type=int, default=4)
    ap.add_argument("--vhidden", type=int, default=192)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--p_all", type=float, default=0.0, help="share of 'locate all objects' questions")
    ap.add_argument("--max_obj", type=int, default=4)
    ap.add_argument("--eval_every", type=int, default=250)
    ap.add_argument("--tag", default="")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build(args)
    n_vis = (args.size // 14 // args.merge) ** 2
    print(
        f"params {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M, visual tokens {n_vis}", flush=True
    )
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1, (s + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))),
    )
    t0 = time.time()
    log = []
    for step in range(1, args.steps + 1):
        max_obj = 1 if step <= args.curriculum else args.max_obj
        ids, att, labels, pv, thw = batch(rng, args, n_vis, max_obj, args.p_all if max_obj > 1 else 0.0)
        loss = model(
            input_ids=ids, attention_mask=att, labels=labels, pixel_values=pv, image_grid_thw=thw
        ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % args.eval_every == 0 or step == args.steps:
            iou1 = evaluate(model, args, n_vis, 1)
            iouk = evaluate(model, args, n_vis, args.max_obj)
            row = dict(
                step=step,
                t=round(time.time() - t0),
                loss=round(loss.item(), 3),
                iou_1obj=round(iou1, 3),
                iou_choose=round(iouk, 3),
            )
            log.append(row)
            print(json.dumps(row), flush=True)
    print("FINAL", args.tag, json.dumps(vars(args)), json.dumps(log[-1]), flush=True)


if __name__ == "__main__":
    main()

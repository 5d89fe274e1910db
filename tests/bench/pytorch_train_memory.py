#!/usr/bin/env python3
"""PyTorch reference for tests/bench/train_memory.ts: the same work as a real `train` run, peak memory by stage.

Reads the same prepared features (outputs/<run>/features/{train,dev}.safetensors, int32, parsed here without the
safetensors package), builds the same BERT-Tiny classifier as tests/bench/pytorch_bench.py (random weights), and
trains with AdamW (lr 1e-3, wd 0.01, clip 1.0) on shuffled batches, evaluating the whole dev set (no_grad) every
--eval-steps and saving model + optimizer state (torch.save) every --save-steps, as lib/training/train.ts does. Prints
RSS and its high-water mark (VmHWM) at each stage. Reference only; never a dependency.

Usage: /usr/bin/python3 tests/bench/pytorch_train_memory.py --features outputs/<run>/features [--steps 40]
       [--eval-steps 20] [--save-steps 20] [--threads 1] [--output outputs/bench/pytorch_train_memory]
"""
import argparse
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_bench import SHAPES, build  # noqa: E402


def status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


T0 = time.time()


def report(stage):
    print(f"{time.time() - T0:7.1f} s  rss {status_mb('VmRSS'):5.0f}  peak {status_mb('VmHWM'):5.0f}  MB  {stage}",
          flush=True)


def read_features(torch, path):
    """int32 tensors of a safetensors file (8-byte little-endian header length, JSON header, raw data)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] != "I32":
            raise SystemExit(f"{path}: tensor {name} is {e['dtype']}, expected I32")
        a, b = e["data_offsets"]
        out[name] = torch.frombuffer(data, dtype=torch.int32, count=(b - a) // 4, offset=a).view(e["shape"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--eval-steps", type=int, default=20)
    ap.add_argument("--save-steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--output", default="outputs/bench/pytorch_train_memory")
    args = ap.parse_args()
    report("start")
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    report(f"torch {torch.__version__} imported, {args.threads} intra-op threads")
    train = read_features(torch, os.path.join(args.features, "train.safetensors"))
    report(f"train features loaded ({train['input_ids'].shape[0]} x {train['input_ids'].shape[1]})")
    dev = read_features(torch, os.path.join(args.features, "dev.safetensors"))
    report(f"dev features loaded ({dev['input_ids'].shape[0]})")
    model = build(torch, SHAPES["tiny"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    report("model built")
    n = train["input_ids"].shape[0]
    order = torch.randperm(n)
    os.makedirs(args.output, exist_ok=True)

    def rows(f, idx):
        return (f["input_ids"][idx].long(), f["token_type_ids"][idx].long(), f["attention_mask"][idx].long(),
                f["labels"][idx].long())

    for step in range(1, args.steps + 1):
        model.train()
        idx = order[(step - 1) * args.batch_size: step * args.batch_size]
        ids, types, mask, labels = rows(train, idx)
        loss = torch.nn.functional.cross_entropy(model(ids, types, mask), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 5 == 0 or step == 1:
            report(f"train step {step} (loss {loss.item():.4f})")
        if step % args.eval_steps == 0:
            model.eval()
            correct = 0
            with torch.no_grad():
                m = dev["input_ids"].shape[0]
                for s in range(0, m, args.eval_batch_size):
                    ids, types, mask, labels = rows(dev, torch.arange(s, min(m, s + args.eval_batch_size)))
                    correct += (model(ids, types, mask).argmax(-1) == labels).sum().item()
            report(f"evaluated (accuracy {correct / m:.4f})")
        if step % args.save_steps == 0:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()},
                       os.path.join(args.output, f"checkpoint-{step}.pt"))
            report(f"saved checkpoint-{step}")
    report("done")


if __name__ == "__main__":
    main()

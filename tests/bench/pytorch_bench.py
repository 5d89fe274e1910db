#!/usr/bin/env python3
"""Reference timings: the BERT training step of `deno task bert bench`, in PyTorch (optional; never a dependency).

A BertForSequenceClassification-equivalent written in plain torch.nn (post-LayerNorm encoder, erf GELU,
tanh pooler, dropout 0.1, cross-entropy, AdamW lr 2e-5 / wd 0.01), random ids and the same padding pattern
as lib/bench/bench.ts's randomBatch. Prints one JSON line per measurement (read by lib/bench/bench.ts) and a table.

Usage: /usr/bin/python3 tests/bench/pytorch_bench.py [--shapes tiny,base] [--threads 1,2] [--steps 5]
                                                     [--what train,infer] [--json]
       /usr/bin/python3 tests/bench/pytorch_bench.py --serve --shapes base --what train
(`--serve`: one shape and one `what`; builds the model, prints one JSON line with the engine, then runs one step per
line read from stdin, the line being the thread count, and answers each with one JSON line: its ms, CPU seconds and
the peak RSS so far. `deno task bench --pytorch` drives it so that tfjs and PyTorch take turns step by step.)
"""
import argparse
import json
import math
import os
import platform
import resource
import sys
import time

SHAPES = {
    "tiny": dict(layers=2, hidden=128, heads=2, intermediate=512, batch=32, seq=128),
    "mini": dict(layers=4, hidden=256, heads=4, intermediate=1024, batch=32, seq=128),
    "small": dict(layers=4, hidden=512, heads=8, intermediate=2048, batch=16, seq=128),
    "base": dict(layers=12, hidden=768, heads=12, intermediate=3072, batch=8, seq=128),
}
VOCAB = 30522


def build(torch, s, num_labels=2):
    nn = torch.nn
    F = torch.nn.functional

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            h, f = s["hidden"], s["intermediate"]
            self.q, self.k, self.v, self.o = (nn.Linear(h, h) for _ in range(4))
            self.ln1, self.ln2 = nn.LayerNorm(h, eps=1e-12), nn.LayerNorm(h, eps=1e-12)
            self.ffn1, self.ffn2 = nn.Linear(h, f), nn.Linear(f, h)
            self.drop = nn.Dropout(0.1)

        def forward(self, x, mask_bias):
            b, t, h = x.shape
            nh = s["heads"]
            dh = h // nh

            def heads(y):
                return y.view(b, t, nh, dh).transpose(1, 2)  # [b, nh, t, dh]

            q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
            scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + mask_bias  # [b, nh, t, t]
            probs = self.drop(F.softmax(scores, dim=-1))
            ctx = (probs @ v).transpose(1, 2).reshape(b, t, h)
            x = self.ln1(x + self.drop(self.o(ctx)))
            return self.ln2(x + self.drop(self.ffn2(F.gelu(self.ffn1(x)))))

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            h = s["hidden"]
            self.word = nn.Embedding(VOCAB, h)
            self.pos = nn.Embedding(512, h)
            self.token_type = nn.Embedding(2, h)
            self.ln = nn.LayerNorm(h, eps=1e-12)
            self.drop = nn.Dropout(0.1)
            self.layers = nn.ModuleList(Layer() for _ in range(s["layers"]))
            self.pooler = nn.Linear(h, h)
            self.classifier = nn.Linear(h, num_labels)

        def forward(self, ids, types, mask):
            t = ids.shape[1]
            x = self.word(ids) + self.token_type(types) + self.pos.weight[:t]
            x = self.drop(self.ln(x))
            mask_bias = (1.0 - mask[:, None, None, :].float()) * -10000.0
            for layer in self.layers:
                x = layer(x, mask_bias)
            pooled = torch.tanh(self.pooler(x[:, 0]))
            return self.classifier(self.drop(pooled))

    return Bert()


def batch(torch, s, seed=1):
    """Same padding pattern as lib/bench/bench.ts randomBatch (the values differ: a different generator)."""
    g = torch.Generator().manual_seed(seed)
    b, t = s["batch"], s["seq"]
    ids = torch.zeros(b, t, dtype=torch.long)
    types = torch.zeros(b, t, dtype=torch.long)
    mask = torch.zeros(b, t, dtype=torch.long)
    for i in range(b):
        n = t if i % 2 == 0 else max(2, int(t * (0.5 + 0.5 * torch.rand(1, generator=g).item())))
        ids[i, :n] = torch.randint(1000, VOCAB, (n,), generator=g)
        ids[i, 0], ids[i, n - 1] = 101, 102
        types[i, n // 2:n] = 1
        mask[i, :n] = 1
    labels = torch.randint(0, 2, (b,), generator=g)
    return ids, types, mask, labels


def peak_rss_mb():
    # VmHWM: this process image's high-water mark. ru_maxrss would do elsewhere, but on Linux it carries over the
    # parent's peak across fork + exec (run from `deno task bench --pytorch`, it would report Deno's memory).
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def stepper(torch, model, s, what):
    """One `what` step of `model` on the bench batch: a training step (AdamW) or a forward pass without gradients."""
    ids, types, mask, labels = batch(torch, s)
    if what == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01, eps=1e-6)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(ids, types, mask), labels)
            loss.backward()
            opt.step()
            return loss.item()
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                return model(ids, types, mask)[0, 0].item()
    return step


def serve(torch, name, what):
    """The `--serve` loop (see the module doc): one step per stdin line, timed here."""
    if name not in SHAPES or what not in ("train", "infer"):
        print(json.dumps({"error": f"no PyTorch model for shape {name!r} and what {what!r}"}), flush=True)
        return 2
    s = SHAPES[name]
    torch.manual_seed(0)
    step = stepper(torch, build(torch, s), s, what)
    print(json.dumps({"engine": f"pytorch {torch.__version__}", "batch": s["batch"], "seq": s["seq"]}), flush=True)
    for line in sys.stdin:
        # Only when the count changes: torch.set_num_threads(2) before every step made the 2-thread steps ~45% slower
        # (BERT-Tiny inference 89-93 against 60-61 ms on 2026-12-08's Zen 3; BENCHMARKS.md).
        if int(line) != torch.get_num_threads():
            torch.set_num_threads(int(line))
        ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        step()
        t1, ru1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        print(json.dumps({"ms": (t1 - t0) * 1000, "cpu_s": cpu, "peak_rss_mb": round(peak_rss_mb(), 0)}), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="tiny")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--what", default="train,infer")
    ap.add_argument("--json", action="store_true", help="print only JSON lines")
    ap.add_argument("--serve", action="store_true", help="one step per stdin line (see the module doc)")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print(json.dumps({"error": "torch is not installed for " + sys.executable}), flush=True)
        return 2
    if args.serve:
        return serve(torch, args.shapes, args.what)
    rows = []
    for name in args.shapes.split(","):
        s = SHAPES[name]
        for threads in [int(x) for x in args.threads.split(",")]:
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            model = build(torch, s)
            for what in args.what.split(","):
                step = stepper(torch, model, s, what)
                for _ in range(args.warmup):
                    step()
                times = []
                ru0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    step()
                    times.append((time.perf_counter() - t0) * 1000)
                ru1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                cpu_pct = 100 * ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) / (wall1 - wall0)
                times.sort()
                median = times[len(times) // 2]
                row = {
                    "engine": f"pytorch {torch.__version__}",
                    "shape": name,
                    "what": what,
                    "threads": threads,
                    "batch": s["batch"],
                    "seq": s["seq"],
                    "ms_per_step": round(median, 1),
                    "min_ms": round(times[0], 1),
                    "examples_per_s": round(s["batch"] * 1000 / median, 1),
                    "peak_rss_mb": round(peak_rss_mb(), 0),
                    "cpu_pct": round(cpu_pct, 0),
                    "cpu": cpu_model(),
                    "cores": os.cpu_count(),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    if not args.json:
        print()
        print(f"{'engine':<22}{'shape':<7}{'what':<7}{'thr':>4}{'ms/step':>10}{'min':>9}{'ex/s':>9}{'peak RSS MB':>13}{'CPU %':>7}")
        for r in rows:
            print(f"{r['engine']:<22}{r['shape']:<7}{r['what']:<7}{r['threads']:>4}{r['ms_per_step']:>10}"
                  f"{r['min_ms']:>9}{r['examples_per_s']:>9}{r['peak_rss_mb']:>13}{r['cpu_pct']:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""PyTorch side of tests/bench/eval_throughput.ts: the same evaluation batches, the same weights, timed.

eval_throughput.ts writes, per run (task x shape), a folder with
  header.json          task, shape, head, model config, and per batch set its batches as [rows, seq]
  weights.safetensors  the tfjs model's weights (Hugging Face names, [out, in] dense kernels)
  <set>.i32            every batch in order: input ids, then type ids, then mask, each [rows, seq] int32 LE
  <set>.first.f32      tfjs's logits on the set's first batch ([rows, 2], or start then end logits [2, rows, seq])
and index.json in the top folder lists the runs. This script loads the weights into a plain-torch BERT (the model of
tests/bench/pytorch_bench.py's `build`, without dropout, with a question-answering head added), runs each set
under torch.inference_mode at each thread count, and prints one JSON line per set:
  {"task", "shape", "set", "torch", "per_threads": [{"threads", "seconds"}], "max_abs_diff", "first_batch_shape"}
eval_throughput.ts runs it once per thread count, each in the environment that suits that count (lib/bench/pytorch_env.ts
pytorchEnv).

Usage: /usr/bin/python3 tests/bench/pytorch_eval.py DIR [--threads 1,2]
"""
import argparse
import json
import math
import os
import re
import struct
import sys
import time


def build(torch, config, head):
    """BERT as lib/model/model.ts computes it at inference (post-LayerNorm, erf GELU, float32's lowest mask bias)."""
    nn = torch.nn
    F = torch.nn.functional
    h, f, nh = config["hidden"], config["intermediate"], config["heads"]
    masked_score = torch.finfo(torch.float32).min

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(h, h) for _ in range(4))
            self.ln1, self.ln2 = nn.LayerNorm(h, eps=1e-12), nn.LayerNorm(h, eps=1e-12)
            self.ffn1, self.ffn2 = nn.Linear(h, f), nn.Linear(f, h)

        def forward(self, x, mask_bias):
            b, t, _ = x.shape
            dh = h // nh

            def heads(y):
                return y.view(b, t, nh, dh).transpose(1, 2)  # [b, nh, t, dh]

            q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
            scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + mask_bias  # [b, nh, t, t]
            ctx = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, h)
            x = self.ln1(x + self.o(ctx))
            return self.ln2(x + self.ffn2(F.gelu(self.ffn1(x))))

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.word = nn.Embedding(config["vocab"], h)
            self.pos = nn.Embedding(512, h)
            self.token_type = nn.Embedding(2, h)
            self.ln = nn.LayerNorm(h, eps=1e-12)
            self.layers = nn.ModuleList(Layer() for _ in range(config["layers"]))
            if head == "classification":
                self.pooler = nn.Linear(h, h)
                self.classifier = nn.Linear(h, 2)
            else:
                self.qa = nn.Linear(h, 2)

        def forward(self, ids, types, mask):
            t = ids.shape[1]
            x = self.ln(self.word(ids) + self.token_type(types) + self.pos.weight[:t])
            mask_bias = (1.0 - mask[:, None, None, :].float()) * masked_score
            for layer in self.layers:
                x = layer(x, mask_bias)
            if head == "classification":
                return self.classifier(torch.tanh(self.pooler(x[:, 0])))  # [b, 2]
            return self.qa(x).permute(2, 0, 1)  # [2, b, t]: start logits, then end logits

    return Bert()


# Hugging Face names -> the names of `build`'s modules, applied in this order.
RENAMES = [
    ("bert.embeddings.word_embeddings.", "word."),
    ("bert.embeddings.position_embeddings.", "pos."),
    ("bert.embeddings.token_type_embeddings.", "token_type."),
    ("bert.embeddings.LayerNorm.", "ln."),
    (".attention.self.query.", ".q."),
    (".attention.self.key.", ".k."),
    (".attention.self.value.", ".v."),
    (".attention.output.dense.", ".o."),
    (".attention.output.LayerNorm.", ".ln1."),
    (".intermediate.dense.", ".ffn1."),
    (".output.dense.", ".ffn2."),
    (".output.LayerNorm.", ".ln2."),
    ("bert.encoder.layer.", "layers."),
    ("bert.pooler.dense.", "pooler."),
    ("qa_outputs.", "qa."),
]


def read_safetensors(torch, path):
    """A safetensors file read by hand: 8-byte little-endian header length, the JSON header, then raw data."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {entry['dtype']}, expected F32")
        start, end = entry["data_offsets"]
        values = torch.frombuffer(bytearray(data[start:end]), dtype=torch.float32)  # little-endian, as written
        tensors[name] = values.reshape(entry["shape"])
    return tensors


def load_weights(torch, model, path):
    state = {}
    for name, value in read_safetensors(torch, path).items():
        for old, new in RENAMES:
            name = name.replace(old, new)
        state[name] = value
    model.load_state_dict(state, strict=True)  # every parameter present, no name left over


def read_batches(torch, path, batches):
    """The set's batches as (ids, types, mask) int64 tensors."""
    with open(path, "rb") as f:
        data = f.read()
    out, offset = [], 0
    for rows, seq in batches:
        arrays = []
        for _ in range(3):
            n = rows * seq * 4
            values = torch.frombuffer(bytearray(data[offset:offset + n]), dtype=torch.int32)
            arrays.append(values.reshape(rows, seq).long())
            offset += n
        out.append(tuple(arrays))
    if offset != len(data):
        raise ValueError(f"{path}: {len(data)} bytes, the header's batches take {offset}")
    return out


def time_set(torch, model, batches, threads, rounds=1):
    """Median seconds of `rounds` passes over `batches` (after one warm-up batch), and the first batch's output."""
    torch.set_num_threads(threads)
    times = []
    with torch.inference_mode():
        model(*batches[0])  # warm-up
        for _ in range(rounds):
            t0 = time.perf_counter()
            outputs = [model(*b) for b in batches]
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], outputs[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print(json.dumps({"error": "torch is not installed for " + sys.executable}))
        return 2
    config = torch.__config__.show()
    capability = re.search(r"CPU capability usage: (\w+)", config)
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    print(f"pytorch {torch.__version__}: CPU capability {capability and capability.group(1)}, "
          f"BLAS_INFO={blas and blas.group(1)}", flush=True)
    threads = [int(x) for x in args.threads.split(",")]
    with open(os.path.join(args.dir, "index.json")) as f:
        runs = json.load(f)["runs"]
    for run in runs:
        run_dir = os.path.join(args.dir, run)
        with open(os.path.join(run_dir, "header.json")) as f:
            header = json.load(f)
        torch.manual_seed(0)
        model = build(torch, header["config"], header["head"]).eval()
        load_weights(torch, model, os.path.join(run_dir, header["weights"]))
        for s in header["sets"]:
            batches = read_batches(torch, os.path.join(run_dir, s["file"]), s["batches"])
            per_threads = []
            first = None
            for n in threads:
                seconds, out = time_set(torch, model, batches, n, header.get("rounds", 1))
                per_threads.append({"threads": n, "seconds": round(seconds, 3)})
                print(f"{run} {s['name']}: {n} thr {seconds:.2f} s", file=sys.stderr, flush=True)
                first = out if first is None else first
            with open(os.path.join(run_dir, s["first_logits"]), "rb") as f:
                tfjs = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).reshape(first.shape)
            print(json.dumps({
                "task": header["task"],
                "shape": header["shape"],
                "set": s["name"],
                "torch": torch.__version__,
                "per_threads": per_threads,
                "max_abs_diff": (first - tfjs).abs().max().item(),
                "first_batch_shape": "x".join(str(d) for d in first.shape),
            }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

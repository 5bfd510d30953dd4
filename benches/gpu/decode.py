#!/usr/bin/env python3
"""Batch-1 decode on a GPU (or the CPU), timed per token: the measured
baseline `wafer bench` shows beside the emulated wafer.

Builds the model from the JSON `wafer model NAME --json` prints (or --tiny),
with random weights (timing does not depend on their values), and times one
token's forward pass with a static KV cache at several context lengths, in
eager mode, replayed as a CUDA graph, and (`--modes ...,compiled`) with each
block compiled by torch.compile, replayed as a CUDA graph. No network
access is needed.

    wafer model llama-3.1-8b --json > llama-3.1-8b.json
    python3 benches/gpu/decode.py --config llama-3.1-8b.json --dtype bf16 \
        --out baselines/measured/llama-3.1-8b-h100-bf16.json

Writes one JSON object: model, dtype, device, date, torch, runs[{context,
mode (eager|cuda_graphs|compiled), ms_per_token}] -- the format `wafer bench` reads
from baselines/measured/.
"""

import argparse
import datetime
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

TINY = {
    "model": "tiny",
    "dim": 64,
    "hidden_dim": 172,
    "layers": 2,
    "heads": 4,
    "kv_heads": 2,
    "vocab": 256,
    "family": "llama",
}


class Block(torch.nn.Module):
    """One Llama block: RMSNorm, GQA attention with RoPE, SwiGLU MLP."""

    def __init__(self, c, max_ctx, dtype, device):
        super().__init__()
        d, kv = c["dim"], c["dim"] // c["heads"] * c["kv_heads"]
        self.heads, self.kv_heads, self.hd = c["heads"], c["kv_heads"], c["dim"] // c["heads"]
        lin = lambda i, o: torch.nn.Linear(i, o, bias=False, dtype=dtype, device=device)
        self.q, self.k, self.v, self.o = lin(d, d), lin(d, kv), lin(d, kv), lin(d, d)
        self.gate, self.up, self.down = lin(d, c["hidden_dim"]), lin(d, c["hidden_dim"]), lin(c["hidden_dim"], d)
        self.n1 = torch.ones(d, dtype=dtype, device=device)
        self.n2 = torch.ones(d, dtype=dtype, device=device)
        shape = (1, self.kv_heads, max_ctx, self.hd)
        self.kc = torch.zeros(shape, dtype=dtype, device=device)
        self.vc = torch.zeros(shape, dtype=dtype, device=device)

    def forward(self, x, pos, length, cos, sin):
        h = F.rms_norm(x, (x.shape[-1],), self.n1)
        q = self.q(h).view(1, 1, self.heads, self.hd).transpose(1, 2)
        k = self.k(h).view(1, 1, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v(h).view(1, 1, self.kv_heads, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        # A static cache written in place keeps shapes fixed for CUDA graphs.
        self.kc.index_copy_(2, pos, k)
        self.vc.index_copy_(2, pos, v)
        # Attend to the positions held so far (0..=pos), as a decoder at
        # this context does; a mask over the whole cache would read and
        # score every cached slot whatever the context.
        kc, vc = self.kc[:, :, :length], self.vc[:, :, :length]
        a = F.scaled_dot_product_attention(q, kc, vc, enable_gqa=True)
        x = x + self.o(a.transpose(1, 2).reshape(1, 1, -1))
        h = F.rms_norm(x, (x.shape[-1],), self.n2)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def rope(x, cos, sin):
    a, b = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


class Model(torch.nn.Module):
    def __init__(self, c, max_ctx, dtype, device):
        super().__init__()
        self.emb = torch.nn.Embedding(c["vocab"], c["dim"], dtype=dtype, device=device)
        self.blocks = torch.nn.ModuleList(Block(c, max_ctx, dtype, device) for _ in range(c["layers"]))
        self.norm = torch.ones(c["dim"], dtype=dtype, device=device)
        self.head = torch.nn.Linear(c["dim"], c["vocab"], bias=False, dtype=dtype, device=device)
        hd = c["dim"] // c["heads"]
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, device=device).float() / hd))
        ang = torch.outer(torch.arange(max_ctx, device=device).float(), inv)
        self.cos, self.sin = ang.cos().to(dtype), ang.sin().to(dtype)

    def forward(self, token, pos, length):
        """One token at position `pos` (a tensor, so a CUDA graph replays
        with it in place); `length` = pos + 1, a Python int fixed per
        captured graph, is how many cached positions attention reads."""
        x = self.emb(token).view(1, 1, -1)
        cos, sin = self.cos[pos].view(1, 1, 1, -1), self.sin[pos].view(1, 1, 1, -1)
        for b in self.blocks:
            x = b(x, pos, length, cos, sin)
        return self.head(F.rms_norm(x, (x.shape[-1],), self.norm)).argmax(-1)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def compile_blocks(model):
    """torch.compile (inductor) on each block: the layers share one
    compiled graph per context (their weights are its inputs), so the
    compile costs a block's, not the model's."""
    torch._dynamo.config.recompile_limit = 64
    for b in model.blocks:
        b.forward = torch.compile(b.forward, fullgraph=True, dynamic=False)


def time_mode(model, device, context, mode, iters):
    token = torch.zeros(1, dtype=torch.long, device=device)
    pos = torch.tensor([context], dtype=torch.long, device=device)
    step = lambda: model(token, pos, context + 1)
    if mode in ("cuda_graphs", "compiled") and device.type == "cuda":
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            step()
        step = g.replay
    for _ in range(3):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return (time.perf_counter() - start) / iters * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON from `wafer model NAME --json`")
    p.add_argument("--tiny", action="store_true", help="a tiny built-in config (tests)")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--contexts", default="128,512,2048")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument(
        "--modes",
        help="comma-separated: eager, cuda_graphs (GPU only), compiled (torch.compile's blocks, "
        "replayed as a CUDA graph on a GPU); default: eager and cuda_graphs on a GPU, eager on the CPU",
    )
    p.add_argument("--out", help="write the JSON here (default: stdout)")
    a = p.parse_args(argv)
    if a.tiny == bool(a.config):
        p.error("give exactly one of --config and --tiny")
    if a.tiny:
        c = dict(TINY)
    else:
        with open(a.config) as f:
            c = json.load(f)
        missing = [k for k in TINY if k not in c]
        if missing:
            p.error(f"{a.config}: missing {', '.join(missing)} (write it with `wafer model NAME --json`)")
        if c["family"] != "llama":
            p.error(f"{a.config}: family {c['family']} is not supported here (llama only)")
        c["model"] = c["model"].split()[0]
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[a.dtype]
    device = torch.device(a.device)
    contexts = [int(x) for x in a.contexts.split(",")]
    modes = a.modes.split(",") if a.modes else ["eager"] + (["cuda_graphs"] if device.type == "cuda" else [])
    for m in modes:
        if m not in ("eager", "cuda_graphs", "compiled"):
            p.error(f"--modes: no mode `{m}` (eager, cuda_graphs, compiled)")
        if m == "cuda_graphs" and device.type != "cuda":
            p.error("--modes: cuda_graphs needs a GPU (--device cuda)")
    # Compiled last: compiling the blocks replaces their forward.
    modes.sort(key=lambda m: m == "compiled")
    torch.manual_seed(0)
    with torch.inference_mode():
        model = Model(c, max(contexts) + 1, dtype, device)
        for prm in model.parameters():
            prm.normal_(0, 0.02)
        runs = []
        for m in modes:
            if m == "compiled":
                compile_blocks(model)
            runs += [
                {"context": ctx, "mode": m, "ms_per_token": time_mode(model, device, ctx, m, a.iters)}
                for ctx in contexts
            ]
        runs.sort(key=lambda r: r["context"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    out = {
        "model": c["model"],
        "dtype": a.dtype,
        "device": name,
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "runs": runs,
    }
    text = json.dumps(out, indent=2)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

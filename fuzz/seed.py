#!/usr/bin/env python3
"""Write the seed corpora (fuzz/corpus/TARGET/seed-*) from the repository's
examples and checkpoints, with the `wafer` CLI (built by cargo) and small
files written here. Run from the repository root: python3 fuzz/seed.py.
Seeds are small on purpose: libFuzzer mutates faster on small inputs."""

import json, os, struct, subprocess, sys, glob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def wafer(*args):
    return subprocess.run(
        ["cargo", "run", "-q", "--release", "--", *args],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


examples = sorted(glob.glob(os.path.join(ROOT, "examples", "*.wsm")))
tmp = os.path.join(ROOT, "target", "fuzz-seeds")
os.makedirs(tmp, exist_ok=True)
for path in examples:
    name = os.path.basename(path)[:-4]
    text = open(path).read()
    put("wsm", name, text)
    put("run", name, text)
    out = os.path.join(tmp, name + ".wafer")
    wafer("asm", path, "-o", out)
    prog = open(out, "rb").read()
    put("wafer", name, prog)
    # A one-stage bundle around the program.
    stage = name.encode()
    bundle = b"WAFERMDL" + struct.pack("<II", 1, 1)
    bundle += struct.pack("<I", len(stage)) + stage + struct.pack("<IIQQ", 0, 0, 7, len(prog)) + prog
    put("bundle", name, bundle)
    stats = os.path.join(tmp, name + ".stats.json")
    trace = os.path.join(tmp, name + ".trace.json")
    wafer("run", path, "--stats", stats, "--trace", trace)
    put("stats", name + "-stats", open(stats).read())
    put("stats", name + "-trace", open(trace).read())
put("wsm", "scalar_loop", open(os.path.join(ROOT, "benches", "scalar_loop.wsm")).read())

# Machine files: first byte even = TOML, odd = JSON.
put("machine", "wse2-toml", b"\0" + b'base = "wse2"\nhop_latency = 3\nclock_hz = 1e9\n')
put("machine", "wse3-toml", b"\0" + b'base = "wse3"\nqueue_depth = 6\nramp_latency = 4\n')
put("machine", "wse3-json", b"\1" + wafer("arch", "wse3", "--json"))
put("machine", "wse2-base-json", b"\1" + b'{"base": "wse2", "router_buffer_depth": 4}')
put("machine", "grid-toml", b"\0" + b'base = "wse3"\ngrid_cols = 4\ngrid_rows = 2\n')

# IR text of decode steps (`compile --ir` prints the graph, then the
# compile summary: keep the graph).
def ir_of(model):
    out = wafer("compile", model, "--ir").decode()
    return out[: out.index("\nreturn ")] + "\n" + out[out.index("\nreturn "):].split("\n")[1] + "\n"



put("ir", "stories260K", ir_of("models/stories260K.bin"))
put("ir", "aidreams260K", ir_of("models/aidreams260K.bin"))


def llama2c(dim, hidden, layers, heads, kv, vocab, seq, shared=True):
    head = dim // heads
    kvd = head * kv
    n = vocab * dim + layers * (dim + 2 * dim * dim + 2 * kvd * dim + dim + 3 * hidden * dim) + dim
    n += seq * head  # the two legacy RoPE tables
    if not shared:
        n += vocab * dim
    vals = [((i * 7919) % 101 - 50) / 200.0 for i in range(n)]
    return struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if shared else -vocab, seq) + struct.pack("<%df" % n, *vals)


put("llama2c", "tiny-shared", llama2c(8, 12, 1, 2, 1, 8, 4))
put("llama2c", "tiny-unshared", llama2c(8, 12, 2, 2, 2, 6, 4, shared=False))
put("llama2c", "bad-stories260K-header", open(os.path.join(ROOT, "models", "stories260K.bin"), "rb").read()[:64])
put("llama2c", "gqa", llama2c(16, 8, 1, 4, 2, 5, 3))
put("llama2c", "one-token", llama2c(4, 4, 1, 1, 1, 1, 1))


def tokenizer(pieces):
    out = struct.pack("<i", max(len(p) for p in pieces))
    for i, p in enumerate(pieces):
        out += struct.pack("<fi", float(i) / 10.0, len(p)) + p
    return out


def tok_seed(vocab, text, tok):
    t = text.encode()
    return struct.pack("<HH", vocab, len(t)) + t + tok


aidreams = open(os.path.join(ROOT, "models", "aidreams_tok512.bin"), "rb").read()
put("tokenizer", "aidreams", tok_seed(512, "The wafer hums, é!", aidreams))
small = [b"<unk>", b"<s>", b"</s>"] + [b"<0x%02X>" % b for b in range(256)] + [b" ", b"a", b"b", b"ab", b" ab", b"ba"]
put("tokenizer", "bytes", tok_seed(len(small), "abba ab\u00e9", tokenizer(small)))
tiny = [b"<unk>", b"<s>", b"</s>", b" ", b"x", b"xx"]
put("tokenizer", "tiny", tok_seed(len(tiny), "xxxx", tokenizer(tiny)))
put("tokenizer", "empty-text", tok_seed(len(tiny), "", tokenizer(tiny)))
put("tokenizer", "bad-no-bytes", tok_seed(len(tiny), "y", tokenizer(tiny)))


def safetensors(tensors):
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def hf_seed(config, tensors):
    c = json.dumps(config).encode()
    return struct.pack("<I", len(c)) + c + safetensors(tensors)


def v(n):
    return [((i * 31) % 17 - 8) / 40.0 for i in range(n)]


d, h, voc = 8, 12, 6
llama = {"model.embed_tokens.weight": ([voc, d], v(voc * d)), "model.norm.weight": ([d], v(d))}
p = "model.layers.0."
for name, shape in [("input_layernorm.weight", [d]), ("self_attn.q_proj.weight", [d, d]),
                    ("self_attn.k_proj.weight", [4, d]), ("self_attn.v_proj.weight", [4, d]),
                    ("self_attn.o_proj.weight", [d, d]), ("post_attention_layernorm.weight", [d]),
                    ("mlp.gate_proj.weight", [h, d]), ("mlp.up_proj.weight", [h, d]),
                    ("mlp.down_proj.weight", [d, h])]:
    n = 1
    for s in shape:
        n *= s
    llama[p + name] = (shape, v(n))
cfg = {"model_type": "llama", "hidden_size": d, "intermediate_size": h, "num_hidden_layers": 1,
       "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": voc,
       "max_position_embeddings": 16, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
       "hidden_act": "silu", "rope_theta": 10000.0}
put("hf", "llama-tied", hf_seed(cfg, llama))
cfg5 = dict(cfg)
del cfg5["rope_theta"]
cfg5["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                           "high_freq_factor": 4.0, "original_max_position_embeddings": 8}
put("hf", "llama-rope-parameters", hf_seed(cfg5, llama))
untied = dict(llama)
untied["lm_head.weight"] = ([voc, d], v(voc * d))
put("hf", "llama-untied", hf_seed(dict(cfg, tie_word_embeddings=False), untied))
gpt = {"wte.weight": ([voc, d], v(voc * d)), "wpe.weight": ([4, d], v(4 * d)),
       "ln_f.weight": ([d], v(d)), "ln_f.bias": ([d], v(d))}
for name, shape in [("ln_1.weight", [d]), ("ln_1.bias", [d]), ("ln_2.weight", [d]), ("ln_2.bias", [d]),
                    ("attn.c_attn.weight", [d, 3 * d]), ("attn.c_attn.bias", [3 * d]),
                    ("attn.c_proj.weight", [d, d]), ("attn.c_proj.bias", [d]),
                    ("mlp.c_fc.weight", [d, 4 * d]), ("mlp.c_fc.bias", [4 * d]),
                    ("mlp.c_proj.weight", [4 * d, d]), ("mlp.c_proj.bias", [d])]:
    n = 1
    for s in shape:
        n *= s
    gpt["h.0." + name] = (shape, v(n))
gcfg = {"model_type": "gpt2", "n_embd": d, "n_layer": 1, "n_head": 2, "n_positions": 4, "vocab_size": voc,
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}
put("hf", "gpt2", hf_seed(gcfg, gpt))
put("hf", "bad-config-only", hf_seed(cfg, {}))


# Small Hugging Face checkpoints as directories, for the IR of each family
# and of RoPE scaling (small seeds mutate faster than a built-in's IR).
def hf_dir(name, config, tensors):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(safetensors(tensors))
    return d


put("ir", "gpt2-tiny", ir_of(hf_dir("gpt2-tiny", gcfg, gpt)))
put("ir", "llama-tiny", ir_of(hf_dir("llama-tiny", cfg, llama)))
put("ir", "llama3-rope-tiny", ir_of(hf_dir("llama3-rope-tiny", cfg5, llama)))
# Kernel specs (fuzz/entries.rs `kernel`): kind, strategy (+k), dtype,
# seed, then numbers as [length byte, little-endian bytes].
def n(v):
    b = v.to_bytes(4, "little").rstrip(b"\0")
    return bytes([len(b)]) + b


put("kernel", "gemv", bytes([0, 2]) + n(2) + bytes([0, 1]) + n(32) + n(48) + n(4) + n(3))
put("kernel", "allreduce", bytes([1, 0, 0, 1, 2, 0]) + n(4) + n(4) + n(16) + bytes([0]))
put("kernel", "rmsnorm", bytes([2, 0, 0, 1, 5]) + n(64) + n(4))
put("kernel", "attention", bytes([3, 0, 0, 1]) + n(8) + n(2) + n(32) + n(5) + n(2) + n(4))
put("kernel", "rope", bytes([4, 0, 0, 1]) + n(4) + n(8) + bytes([1]) + n(3) + n(2))
put("kernel", "embedding", bytes([5, 0, 1, 1]) + n(16) + n(8) + n(2) + n(2) + n(3))
put("kernel", "argmax", bytes([6, 0, 0, 1]) + n(20) + n(3))
put("kernel", "meshgemv", bytes([7, 0, 1, 1]) + n(40) + n(24) + n(3) + n(8) + n(2) + bytes([1, 1]))
put("kernel", "meshgemm", bytes([8, 0, 2, 1]) + n(16) + n(8) + n(12) + n(4) + bytes([0]))
print("seeds written to", CORPUS)

#!/usr/bin/env python3
"""Reference side of `analog bench`: the same safetensors through HF transformers (eager, CPU).

Prints one JSON object with the fields of the Rust `Measurement`.
"""
import argparse
import json
import os
import resource
import time

import torch
import transformers

parser = argparse.ArgumentParser()
parser.add_argument("dir")
parser.add_argument("--prefill", type=int, default=128)
parser.add_argument("--decode", type=int, default=64)
args = parser.parse_args()

torch.manual_seed(0)
model = transformers.AutoModelForCausalLM.from_pretrained(
    args.dir, dtype=torch.float32, attn_implementation="eager"
).eval()
prompt = torch.tensor([[(i * 7919) % 49152 for i in range(args.prefill)]])


def prefill():
    out = model(prompt, use_cache=True)
    return out.past_key_values, out.logits[0, -1].argmax()


with torch.no_grad():
    prefill()  # warm-up
    start = time.perf_counter()
    cache, token = prefill()
    prefill_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.decode):
        out = model(token.view(1, 1), past_key_values=cache, use_cache=True)
        cache, token = out.past_key_values, out.logits[0, -1].argmax()
    decode_s = time.perf_counter() - start

print(json.dumps({
    "prefill_tokens_per_s": args.prefill / prefill_s,
    "decode_tokens_per_s": args.decode / decode_s,
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "weight_bytes": os.path.getsize(os.path.join(args.dir, "model.safetensors")),
}))

#!/usr/bin/env python3
"""Reference side of `analog bench`: the same safetensors (or GGUF file) through HF transformers (eager, CPU).

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
parser.add_argument("dir", help="a model directory, or a .gguf file (transformers dequantises it to f32)")
parser.add_argument("--prefill", type=int, default=128)
parser.add_argument("--decode", type=int, default=64)
parser.add_argument("--extraction", action="store_true")
args = parser.parse_args()

torch.manual_seed(0)
if args.dir.endswith(".gguf"):
    weights = args.dir
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(args.dir) or ".", gguf_file=os.path.basename(args.dir), dtype=torch.float32, attn_implementation="eager"
    ).eval()
else:
    weights = os.path.join(args.dir, "model.safetensors")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        args.dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
# The same ids as the Rust side: inside the model's vocabulary.
vocab = model.config.vocab_size
prompt = torch.tensor([[(i * 7919) % vocab for i in range(args.prefill)]])

if args.extraction:
    # The same 100 pairs of 24-token prompts as `analog bench --extraction`, batch 16.
    pairs, tokens = 100, 24
    ids = torch.tensor([[(p * 131 + t * 7919 + 17) % 49152 for t in range(tokens)] for p in range(2 * pairs)])

    def extract():
        layers = []
        for batch in ids.split(16):
            hidden = model(batch, output_hidden_states=True).hidden_states[1:]
            layers.append(torch.stack([h[:, -1] for h in hidden]))
        acts = torch.cat(layers, dim=1)  # [layer, prompt, d]
        return (acts[:, 0::2] - acts[:, 1::2]).mean(dim=1)

    with torch.no_grad():
        extract()  # warm-up
        start = time.perf_counter()
        extract()
        seconds = time.perf_counter() - start
    print(json.dumps({
        "extraction_pairs_per_s": pairs / seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "weight_bytes": os.path.getsize(weights),
    }))
    raise SystemExit(0)


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
    "weight_bytes": os.path.getsize(weights),
}))

#!/usr/bin/env python3
"""llama.cpp side of `analog bench` on a GGUF file: the same prompt ids, prefill and greedy decode through
llama-cpp-python (its own build of llama.cpp, every core), timed like the Rust side.

Prints one JSON object with the fields of the Rust `Measurement`.
"""
import argparse
import json
import os
import resource
import time

import llama_cpp
import numpy as np
from llama_cpp import Llama

parser = argparse.ArgumentParser()
parser.add_argument("gguf")
parser.add_argument("--prefill", type=int, default=128)
parser.add_argument("--decode", type=int, default=64)
parser.add_argument("--threads", type=int, default=os.cpu_count())
args = parser.parse_args()

llm = Llama(
    model_path=args.gguf,
    n_ctx=args.prefill + args.decode + 8,
    n_batch=max(args.prefill, 8),
    n_threads=args.threads,
    n_threads_batch=args.threads,
    verbose=False,
)
# The same ids as the Rust side: inside the model's vocabulary.
vocab = llm.n_vocab()
prompt = [(i * 7919) % vocab for i in range(args.prefill)]


def last_logits():
    # The logits of the last token evaluated (llama-cpp-python keeps no scores unless every row's are asked for).
    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(vocab,))


def prefill():
    llm.reset()
    llm.eval(prompt)
    return int(np.argmax(last_logits()))


prefill()  # warm-up
start = time.perf_counter()
token = prefill()
prefill_s = time.perf_counter() - start
start = time.perf_counter()
for _ in range(args.decode):
    llm.eval([token])
    token = int(np.argmax(last_logits()))
decode_s = time.perf_counter() - start

print(json.dumps({
    "prefill_tokens_per_s": args.prefill / prefill_s,
    "decode_tokens_per_s": args.decode / decode_s,
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "weight_bytes": os.path.getsize(args.gguf),
}))

// The browser peer of `cargo xtask bench-app`: wllama (llama.cpp in wasm) loads the GGUF file the app loads,
// then runs what the app's benchmark runs: a short prompt to 128 greedy tokens, and a ~200-token prompt.
// The page's query names the model URL, the thread count and the prompts' URLs; results go to window.__result.
import { Wllama } from '/wllama/esm/index.js';

const log = (line) => { document.getElementById('log').textContent += line + '\n'; };
const query = new URLSearchParams(location.search);

async function run() {
  const threads = Number(query.get('threads') || '1');
  const wllama = new Wllama({ default: '/wllama/esm/wasm/wllama.wasm' }, { suppressNativeLog: true });
  await wllama.loadModelFromUrl(query.get('model'), { n_threads: threads, n_ctx: 1024, n_batch: 512, n_gpu_layers: 0 });
  log(`loaded at ${performance.now().toFixed(0)} ms, ${wllama.getNumThreads()} threads, multithread=${wllama.isMultithread()}`);
  const short = query.get('short');
  const long = query.get('long');
  let firstTokenMs = null;
  let decode = null;
  await wllama.createCompletion({
    prompt: short, max_tokens: Number(query.get('tokens') || '128'), temperature: 0, ignore_eos: true, stream: true,
    onData: (chunk) => {
      if (firstTokenMs === null && chunk.choices.some((c) => c.text)) firstTokenMs = performance.now();
      if (chunk.timings) decode = chunk.timings;
    },
  });
  log(`first token at ${firstTokenMs.toFixed(0)} ms; decode ${JSON.stringify(decode)}`);
  const prefill = await wllama.createCompletion({ prompt: long, max_tokens: 1, temperature: 0 });
  log(`prefill ${JSON.stringify(prefill.timings)}`);
  return {
    threads: wllama.getNumThreads(),
    first_token_ms: firstTokenMs,
    decode_tokens: decode.predicted_n,
    decode_tokens_per_s: decode.predicted_per_second,
    prefill_tokens: prefill.timings.prompt_n,
    prefill_tokens_per_s: prefill.timings.prompt_per_second,
  };
}

run().then((r) => { window.__result = r; }, (e) => { log(String(e && e.stack || e)); window.__result = { error: String(e) }; });

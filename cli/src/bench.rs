//! `analog bench`: prefill and decode speed and peak memory on a SmolLM2-135M-shaped model with
//! random weights (built in memory, written once so transformers can read the same file), side by
//! side with HF transformers in the same run when Python has it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use analog_core::device::BackendKind;
use analog_core::steering::HookSite;
use analog_core::steering::extract::{Aggregation, collect_stats_ids};
use analog_core::{Hooks, KvCache, LoadStage, Model, TextModel, WeightFiles, device, read_f32};
use anyhow::{Context, Result};
use burn::tensor::{Int, Tensor, TensorData};
use clap::Args;
use serde::{Deserialize, Serialize};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Where the random model is written (reused when present); or a model directory, or a `.gguf` file (a real
    /// released model; transformers reads the same file, dequantised to f32).
    #[arg(long, default_value = "target/bench/smollm2-135m-random")]
    dir: PathBuf,
    #[arg(long, default_value_t = 128)]
    prefill: usize,
    #[arg(long, default_value_t = 64)]
    decode: usize,
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
    /// Measure steering-vector extraction (100 pairs × all layers) instead of decoding.
    #[arg(long)]
    extraction: bool,
    /// Skip the transformers comparison.
    #[arg(long)]
    no_reference: bool,
    /// Run the plain-tensor references instead of the fused wgpu kernels (to measure what fusion gains).
    #[arg(long)]
    no_fused: bool,
    /// Internal: measure in this process (the parent spawns it so peak RSS covers only the run).
    #[arg(long, hide = true)]
    measure: bool,
}

/// What one run measured.
#[derive(Debug, Serialize, Deserialize)]
pub struct Measurement {
    #[serde(default)]
    pub prefill_tokens_per_s: f64,
    #[serde(default)]
    pub decode_tokens_per_s: f64,
    /// Pairs per second for extraction over every layer (with `--extraction`).
    #[serde(default)]
    pub extraction_pairs_per_s: f64,
    pub peak_rss_bytes: Option<u64>,
    /// Bytes of the weight file(s) read.
    pub weight_bytes: u64,
    /// Bytes the loaded weights hold (quantised where the device keeps them so).
    #[serde(default)]
    pub held_weight_bytes: u64,
    /// Peak RSS when loading is done, before any token runs.
    #[serde(default)]
    pub load_peak_rss_bytes: Option<u64>,
    /// The weight matrices one token reads (linear layers and the unembedding).
    #[serde(default)]
    pub weight_matrices: usize,
    /// Seconds per stage of loading (read, header, tokenizer, weights), for a GGUF file.
    #[serde(default)]
    pub load_profile: Vec<(String, f64)>,
    /// Best of a few 256 MiB memcpy runs, in bytes copied per second (measured by the child).
    #[serde(default)]
    pub copy_bytes_per_s: Option<f64>,
}

/// Memory bandwidth as a plain copy sees it: the best of five 256 MiB `copy_from_slice` runs.
fn copy_bandwidth() -> f64 {
    let len = 256 << 20;
    let src = vec![1u8; len];
    let mut dst = vec![0u8; len];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    len as f64 / best
}

/// SmolLM2-135M's published config.
const CONFIG: &str = r#"{"model_type":"llama","architectures":["LlamaForCausalLM"],"vocab_size":49152,
"hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,
"num_key_value_heads":3,"max_position_embeddings":8192,"rms_norm_eps":1e-5,"rope_theta":100000.0,
"tie_word_embeddings":true,"hidden_act":"silu","bos_token_id":0,"eos_token_id":0,"torch_dtype":"float32"}"#;

fn write_random_model(dir: &Path) -> Result<()> {
    if dir.join("model.safetensors").is_file() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let shapes = analog_core::ModelConfig::from_hf_json(CONFIG.as_bytes())?.hf_tensors();
    // A fixed xorshift stream: the same weights every time, no RNG dependency.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.07
    };
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let bytes = if shape.len() == 1 { (0..n).flat_map(|_| 1f32.to_le_bytes()).collect() } else { (0..n).flat_map(|_| next().to_le_bytes()).collect() };
            (name, shape, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = buffers
        .iter()
        .map(|(name, shape, bytes)| Ok((name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)?)))
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors"))?;
    std::fs::write(dir.join("config.json"), CONFIG)?;
    Ok(())
}

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn tokens(ids: &[i32], device: &analog_core::Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), device)
}

fn measure(args: &BenchArgs) -> Result<Measurement> {
    analog_kernels::set_enabled(!args.no_fused);
    let device = match args.device {
        BackendKind::Cpu => device::cpu(),
        BackendKind::Wgpu => device::wgpu()?,
    };
    let mut load_profile = Vec::new();
    let (model, weight_bytes) = if is_gguf(&args.dir) {
        let start = Instant::now();
        let bytes = std::fs::read(&args.dir)?;
        load_profile.push(("read".to_string(), start.elapsed().as_secs_f64()));
        let mut last: Option<(LoadStage, Instant)> = None;
        let model = TextModel::from_gguf_in_stages(&bytes, None, &device, &mut |stage| {
            if let Some((previous, at)) = last.replace((stage, Instant::now())) {
                // With the peak RSS when it ended: what each stage adds to loading's high-water mark.
                let peak = peak_rss().map_or(String::new(), |b| format!(" (peak {})", gib(b)));
                load_profile.push((format!("{}{peak}", previous.name()), at.elapsed().as_secs_f64()));
            }
        })?
        .model;
        (model, bytes.len() as u64)
    } else {
        let weights = std::fs::read(args.dir.join("model.safetensors"))?;
        let config = std::fs::read(args.dir.join("config.json"))?;
        (Model::from_bytes(&config, &WeightFiles::Single(&weights), &device)?, weights.len() as u64)
    };
    let (held_weight_bytes, load_peak_rss_bytes) = (model.weight_bytes(), peak_rss());
    if args.extraction {
        let prompts = extraction_prompts();
        let layers: Vec<usize> = (0..model.config.n_layers).collect();
        // Mean-difference vectors at every layer, reduced on the device (nothing per prompt read back).
        let run = || pollster::block_on(collect_stats_ids(&model, &prompts, HookSite::ResidPost, Aggregation::Last, &mut analog_core::progress::Silent));
        run()?; // warm-up
        let start = Instant::now();
        let stats = run()?;
        for &l in &layers {
            std::hint::black_box(&stats.mean_diff[l]);
        }
        let seconds = start.elapsed().as_secs_f64();
        return Ok(Measurement {
            prefill_tokens_per_s: 0.0,
            decode_tokens_per_s: 0.0,
            extraction_pairs_per_s: EXTRACTION_PAIRS as f64 / seconds,
            peak_rss_bytes: peak_rss(),
            weight_bytes,
            held_weight_bytes,
            load_peak_rss_bytes,
            weight_matrices: model.weight_matrices(),
            load_profile,
            copy_bytes_per_s: None,
        });
    }
    // Any model directory works (`--dir`): token ids stay inside its vocabulary.
    let vocab = model.config.vocab_size as i32;
    let prompt: Vec<i32> = (0..args.prefill as i32).map(|i| (i * 7919) % vocab).collect();
    let run_prefill = |cache: &mut KvCache| -> Result<u32> {
        let hidden = model.forward_hidden(tokens(&prompt, &device), cache, &mut Hooks::new())?;
        let logits = pollster::block_on(read_f32(model.unembed(hidden.slice_dim(1, args.prefill - 1..args.prefill))))?;
        Ok(analog_core::generate::argmax(&logits))
    };
    // Warm-up, then timed runs.
    run_prefill(&mut model.new_cache())?;
    let start = Instant::now();
    let mut cache = model.new_cache();
    let mut next = run_prefill(&mut cache)?;
    let prefill_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..args.decode {
        let hidden = model.forward_hidden(tokens(&[next as i32], &device), &mut cache, &mut Hooks::new())?;
        let logits = pollster::block_on(read_f32(model.unembed(hidden)))?;
        next = analog_core::generate::argmax(&logits);
    }
    let decode_s = start.elapsed().as_secs_f64();
    // Peak RSS first: the bandwidth probe's buffers must not count.
    let peak_rss_bytes = peak_rss();
    Ok(Measurement {
        prefill_tokens_per_s: args.prefill as f64 / prefill_s,
        decode_tokens_per_s: args.decode as f64 / decode_s,
        extraction_pairs_per_s: 0.0,
        peak_rss_bytes,
        weight_bytes,
        held_weight_bytes,
        load_peak_rss_bytes,
        weight_matrices: model.weight_matrices(),
        load_profile,
        copy_bytes_per_s: Some(copy_bandwidth()),
    })
}

const EXTRACTION_PAIRS: usize = 100;
const EXTRACTION_TOKENS: usize = 24;

/// 100 pairs of 24-token prompts (positive, negative alternating), the same ids the Python side builds.
fn extraction_prompts() -> Vec<Vec<u32>> {
    (0..2 * EXTRACTION_PAIRS).map(|p| (0..EXTRACTION_TOKENS).map(|t| ((p * 131 + t * 7919 + 17) % 49152) as u32).collect()).collect()
}

/// Measures in a child process (so that its peak RSS covers only the run), in `cwd` when given.
fn child(args: &BenchArgs, prefill: usize, decode: usize, cwd: Option<&Path>) -> Result<Measurement> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["bench", "--measure", "--dir"])
        .arg(std::path::absolute(&args.dir)?)
        .args(["--prefill", &prefill.to_string(), "--decode", &decode.to_string(), "--device", &args.device.to_string()])
        .args(args.extraction.then_some("--extraction"))
        .args(args.no_fused.then_some("--no-fused"));
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        anyhow::bail!("measurement failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Kernel launches per decoded token on wgpu, and the weight matrices a token reads: CubeCL logs every launch
/// ("Executing …") when a `cubecl.toml` in the working directory asks for it, so two runs that differ only in
/// the number of decoded tokens give launches per token.
fn dispatches_per_token(args: &BenchArgs) -> Result<(f64, usize)> {
    let dir = std::path::absolute("target/bench/dispatches")?;
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("launches.log");
    std::fs::write(dir.join("cubecl.toml"), format!("[profiling]\nlogger = {{ level = \"minimal\", file = {log:?}, append = false }}\n"))?;
    let (mut launches, mut matrices) = (Vec::new(), 0);
    for decode in [2, 6] {
        let _ = std::fs::remove_file(&log);
        matrices = child(args, 4, decode, Some(&dir))?.weight_matrices;
        let text = std::fs::read_to_string(&log).with_context(|| format!("CubeCL wrote no launch log to {}", log.display()))?;
        launches.push(text.lines().filter(|l| l.contains("Executing")).count());
    }
    Ok(((launches[1] as f64 - launches[0] as f64) / 4.0, matrices))
}

/// Runs a peer's side of the benchmark (`tests/bench/SCRIPT`), which prints a [`Measurement`] as JSON.
fn peer(script: &str, args: &BenchArgs) -> Result<Measurement> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/bench").join(script);
    let out = Command::new("python3")
        .arg(&script)
        .arg(&args.dir)
        .args(["--prefill", &args.prefill.to_string(), "--decode", &args.decode.to_string()])
        .args(args.extraction.then_some("--extraction"))
        .output()
        .context("python3 is not available")?;
    if !out.status.success() {
        anyhow::bail!("{}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("the peer failed"));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn reference(args: &BenchArgs) -> Result<Measurement> {
    peer("transformers_bench.py", args)
}

fn is_gguf(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

fn gib(bytes: u64) -> String {
    if bytes < 1 << 30 { format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64) } else { format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64) }
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.measure {
        println!("{}", serde_json::to_string(&measure(&args)?)?);
        return Ok(());
    }
    let gguf = is_gguf(&args.dir);
    if !gguf {
        write_random_model(&args.dir)?;
    }
    let ours = child(&args, args.prefill, args.decode, None)?;
    if args.extraction {
        println!(
            "Extraction: {EXTRACTION_PAIRS} pairs of {EXTRACTION_TOKENS}-token prompts, last-token activations of all 30 layers, mean difference, SmolLM2-135M-shaped random model"
        );
        println!("{:<34} {:>10}", "engine", "pairs/s");
        println!("{:<34} {:>10.2}", format!("analog ({}, batch 16)", args.device), ours.extraction_pairs_per_s);
        if !args.no_reference {
            match reference(&args) {
                Ok(theirs) => {
                    println!("{:<34} {:>10.2}", "PyTorch output_hidden_states (b16)", theirs.extraction_pairs_per_s);
                    println!("ratio analog / PyTorch: {:.2}x (target ≥ 2x)", ours.extraction_pairs_per_s / theirs.extraction_pairs_per_s);
                }
                Err(e) => println!("PyTorch reference not run: {e}"),
            }
        }
        return Ok(());
    }
    println!("{} ({} of weights), prompt {} tokens, decode {} tokens, batch 1", args.dir.display(), gib(ours.weight_bytes), args.prefill, args.decode);
    println!("{:<28} {:>14} {:>14} {:>12}", "engine", "prefill tok/s", "decode tok/s", "peak RSS");
    let rss = |m: &Measurement| m.peak_rss_bytes.map_or("?".into(), gib);
    println!("{:<28} {:>14.1} {:>14.2} {:>12}", format!("analog ({})", args.device), ours.prefill_tokens_per_s, ours.decode_tokens_per_s, rss(&ours));
    if let Some(peak) = ours.load_peak_rss_bytes {
        println!(
            "peak RSS while loading: {} for {} of weights held: {:.2}x (target ≤ 1.3)",
            gib(peak),
            gib(ours.held_weight_bytes),
            peak as f64 / ours.held_weight_bytes as f64
        );
    }
    if !ours.load_profile.is_empty() {
        let stages: Vec<String> = ours.load_profile.iter().map(|(stage, s)| format!("{stage} {s:.2} s")).collect();
        println!("load: {:.2} s ({})", ours.load_profile.iter().map(|(_, s)| s).sum::<f64>(), stages.join(", "));
    }
    if let Some(copy) = ours.copy_bytes_per_s {
        // Batch-1 decode reads every weight once per token: copy bandwidth / bytes held bounds it.
        let held = if ours.held_weight_bytes > 0 { ours.held_weight_bytes } else { ours.weight_bytes };
        let bound = copy / held as f64;
        println!(
            "memory bandwidth bound: {:.1} GB/s copy / {} = {:.1} tok/s; decode is {:.0}% of it (target ≥ 60%)",
            copy / 1e9,
            gib(held),
            bound,
            100.0 * ours.decode_tokens_per_s / bound
        );
    }
    if args.device == BackendKind::Wgpu && !args.extraction {
        match dispatches_per_token(&args) {
            Ok((per_token, matrices)) => println!(
                "wgpu dispatches per decoded token: {per_token:.1} for {matrices} weight matrices: {:.2} a matrix (goal ≤ 2)",
                per_token / matrices as f64
            ),
            Err(e) => println!("wgpu dispatches not counted: {e}"),
        }
    }
    if args.no_reference {
        return Ok(());
    }
    match reference(&args) {
        Ok(theirs) => {
            println!("{:<28} {:>14.1} {:>14.2} {:>12}", "transformers eager (torch)", theirs.prefill_tokens_per_s, theirs.decode_tokens_per_s, rss(&theirs));
            println!(
                "ratio analog / transformers: prefill {:.2}x, decode {:.2}x (target ≥ 2x decode)",
                ours.prefill_tokens_per_s / theirs.prefill_tokens_per_s,
                ours.decode_tokens_per_s / theirs.decode_tokens_per_s
            );
        }
        Err(e) => println!("transformers reference not run: {e}"),
    }
    if gguf {
        // llama.cpp reads the same file as it is (quantised), with every core.
        match peer("llamacpp_bench.py", &args) {
            Ok(theirs) => {
                println!(
                    "{:<28} {:>14.1} {:>14.2} {:>12}",
                    "llama.cpp (llama-cpp-python)",
                    theirs.prefill_tokens_per_s,
                    theirs.decode_tokens_per_s,
                    rss(&theirs)
                );
                println!(
                    "ratio analog / llama.cpp: prefill {:.2}x, decode {:.2}x (target ≥ 1x decode)",
                    ours.prefill_tokens_per_s / theirs.prefill_tokens_per_s,
                    ours.decode_tokens_per_s / theirs.decode_tokens_per_s
                );
            }
            Err(e) => println!("llama.cpp peer not run (pip install llama-cpp-python): {e}"),
        }
    }
    Ok(())
}

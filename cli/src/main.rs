//! `analog`: run, inspect and steer HF-format language models from the command line.
//!
//! Errors go to stderr as `error: ...` with exit code 2.

mod bench;
mod fetch;
mod files;
mod lab;
mod report;
mod soak;
mod steer;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use analog_core::device::BackendKind;
use analog_core::{ChatMessage, GenerateOptions, HookPoint, Hooks, Sampling, TextModel, device};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "analog",
    version,
    about = "Run, inspect and steer small language models from HF directories or GGUF files (Llama, Qwen2/3, Gemma 3, GPT-2, GPT-NeoX)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ModelArgs {
    /// A GGUF model file (or a directory holding one), or a directory with config.json,
    /// model.safetensors (or index + shards) and tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// Backend: burn's CPU backend or wgpu (Vulkan/Metal/DX12; Mesa lavapipe without a GPU).
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
}

#[derive(Subcommand)]
enum Command {
    /// Architecture and sizes of a model.
    Info {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        json: bool,
    },
    /// Next-token logits at the last prompt position.
    Logits {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        prompt: String,
        /// Add COEF × a vector file's directions at its hook and layers, at every position (repeatable).
        #[arg(long, value_name = "FILE:COEF", allow_hyphen_values = true)]
        steer: Vec<steer::SteerSpec>,
        /// Rescale each steered activation to the norm it had before (norm-preserving steering).
        #[arg(long)]
        preserve_norm: bool,
        #[arg(long)]
        json: bool,
    },
    /// Generate a continuation (greedy with --temperature 0).
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        /// The prompt (plain text; see --chat).
        #[arg(long, required_unless_present = "chat")]
        prompt: Option<String>,
        /// A user message, sent in the model's chat format (its chat template) and answered as the assistant.
        #[arg(long, conflicts_with = "prompt")]
        chat: Option<String>,
        /// A system message before --chat (templates that take none fold it into the first turn or refuse it).
        #[arg(long, requires = "chat")]
        system: Option<String>,
        /// Add COEF × a vector file's directions at its hook and layers, at every position (repeatable).
        #[arg(long, value_name = "FILE:COEF", allow_hyphen_values = true)]
        steer: Vec<steer::SteerSpec>,
        /// Rescale each steered activation to the norm it had before (norm-preserving steering).
        #[arg(long)]
        preserve_norm: bool,
        #[arg(long, default_value_t = 32)]
        max_tokens: usize,
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Keep generating past end-of-sequence tokens.
        #[arg(long)]
        no_stop: bool,
        #[arg(long)]
        json: bool,
    },
    /// Activations at one hook point for every prompt position.
    Activations {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        prompt: String,
        /// TransformerLens name, e.g. blocks.0.hook_resid_post or ln_final.hook_normalized.
        #[arg(long)]
        hook: String,
        #[arg(long)]
        json: bool,
    },
    /// Extract a steering vector from contrastive pairs.
    Extract(steer::ExtractArgs),
    /// Per-layer separation of a pair set and agreement between extraction methods.
    Sweep(steer::SweepArgs),
    /// Metrics of a steering vector per coefficient, beside an equal-norm random direction.
    SteerEval(steer::SteerEvalArgs),
    /// Export a vector to GGUF/safetensors, or import a GGUF control vector.
    Vector(steer::VectorArgs),
    /// Rewrite a model's weights as f16 or q8_0 (8-bit blocks of 32 with an f16 scale) into a new
    /// model directory (config.json and tokenizer.json are copied).
    Convert {
        /// Directory with config.json, model.safetensors (or index + shards) and tokenizer.json.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// f32, f16 or q8_0.
        #[arg(long)]
        format: analog_core::quant::WeightFormat,
    },
    /// Prefill and decode speed on a SmolLM2-135M-shaped model with random weights, side by side
    /// with HF transformers when Python has it.
    Bench(bench::BenchArgs),
    /// Frontier transfer reports: validate, compare with local measurements, export, schema.
    Report(report::ReportArgs),
    /// The reference lab: corpus, tokenizer, frontier training, analog distillation.
    Lab(lab::LabArgs),
    /// Many sequential generate + steer runs with resident memory sampled after each (a leak
    /// benchmark: memory must stay flat after the warm-up).
    Soak(soak::SoakArgs),
}

fn load(args: &ModelArgs) -> Result<TextModel> {
    let files = files::ModelFiles::read(&args.model)?;
    let device = match args.device {
        BackendKind::Cpu => device::cpu(),
        BackendKind::Wgpu => device::wgpu()?,
    };
    files.load(&device).with_context(|| format!("cannot load the model in {}", args.model.display()))
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { model, json } => {
            let m = load(&model)?;
            let c = m.config();
            let info = json!({
                "architecture": c.architecture,
                "n_layers": c.n_layers,
                "d_model": c.d_model,
                "n_params": m.model.n_params,
                "vocab_size": c.vocab_size,
                "n_heads": c.n_heads,
                "n_kv_heads": c.n_kv_heads,
                "head_dim": c.head_dim,
                "d_mlp": c.d_mlp,
                "context_length": c.context_length,
                "tied_embeddings": c.tied_embeddings,
                "parallel_residual": c.parallel_residual,
                "positions": c.positions,
                "norm": c.norm,
                "activation": c.activation,
                "eos_token_ids": c.eos_token_ids,
                "hook_points": HookPoint::all(c.n_layers).iter().map(ToString::to_string).collect::<Vec<_>>(),
            });
            if json {
                print_json(&info)?;
            } else {
                println!(
                    "{} model: {} layers, d_model {}, {} heads ({} kv, head_dim {}), d_mlp {}, vocab {}, context {}, {} parameters",
                    c.architecture.model_type(),
                    c.n_layers,
                    c.d_model,
                    c.n_heads,
                    c.n_kv_heads,
                    c.head_dim,
                    c.d_mlp,
                    c.vocab_size,
                    c.context_length,
                    m.model.n_params
                );
            }
        }
        Command::Logits { model, prompt, steer, preserve_norm, json } => {
            let m = load(&model)?;
            let ids = m.encode(&prompt)?;
            let mut hooks = steer::steering_hooks(&m, &steer, preserve_norm)?;
            let logits = pollster::block_on(m.last_logits(std::slice::from_ref(&ids), &mut hooks))?.remove(0);
            if json {
                print_json(&json!({ "input_ids": ids, "logits": logits }))?;
            } else {
                let mut ranked: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
                for (id, logit) in ranked.into_iter().take(10) {
                    let piece = m.tokenizer.piece(id as u32).unwrap_or_default();
                    println!("{id:>8} {logit:>10.4} {piece:?}");
                }
            }
        }
        Command::Generate { model, prompt, chat, system, steer, preserve_norm, max_tokens, temperature, top_k, top_p, seed, no_stop, json } => {
            let m = load(&model)?;
            let mut hooks = steer::steering_hooks(&m, &steer, preserve_norm)?;
            let (ids, prompt) = match (chat, prompt) {
                (Some(user), _) => {
                    let messages: Vec<ChatMessage> = system.map(ChatMessage::system).into_iter().chain([ChatMessage::user(user)]).collect();
                    (m.chat_ids(&messages)?, String::new())
                }
                (None, Some(prompt)) => (m.encode(&prompt)?, prompt),
                (None, None) => anyhow::bail!("give --prompt or --chat"),
            };
            let options = GenerateOptions { max_new_tokens: max_tokens, sampling: Sampling { temperature, top_k, top_p, seed }, stop_at_eos: !no_stop };
            let mut stdout = std::io::stdout();
            if !json {
                print!("{prompt}");
            }
            let out = pollster::block_on(m.generate(&ids, &options, &mut hooks, &mut |event| {
                if !json {
                    print!("{}", event.text);
                    let _ = stdout.flush();
                }
                true
            }))?;
            if json {
                print_json(&json!({ "input_ids": out.input_ids, "ids": out.ids, "text": out.text, "stop": out.stop }))?;
            } else {
                println!();
            }
        }
        Command::Activations { model, prompt, hook, json } => {
            let m = load(&model)?;
            let point: HookPoint = hook.parse()?;
            point.check(m.config().n_layers)?;
            let ids = m.encode(&prompt)?;
            let mut hooks = Hooks::new().capture(point);
            pollster::block_on(m.last_logits(std::slice::from_ref(&ids), &mut hooks))?;
            let tensor = hooks.take(point).context("the hook was not reached")?;
            let [_, pos, d] = tensor.dims();
            let values = pollster::block_on(analog_core::read_f32(tensor))?;
            let rows: Vec<&[f32]> = values.chunks_exact(d).collect();
            if json {
                print_json(&json!({ "hook": point.to_string(), "shape": [pos, d], "values": rows }))?;
            } else {
                for (i, row) in rows.iter().enumerate() {
                    let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                    println!("pos {i:>4} id {:>6} norm {norm:>10.4}", ids[i]);
                }
            }
        }
        Command::Convert { model, out, format } => {
            let files = files::ModelFiles::read(&model)?;
            let files::Format::Hf { config, tokenizer, .. } = &files.format else {
                anyhow::bail!("convert rewrites HF model directories; {} is a GGUF file (llama.cpp's tools convert between GGUF types)", model.display());
            };
            // Load first: a checkpoint this program cannot run is refused before anything is written.
            files.load(&device::cpu()).with_context(|| format!("cannot load the model in {}", model.display()))?;
            let bytes = analog_core::quant::convert(&files.weight_files(), format)?;
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            std::fs::write(out.join("model.safetensors"), &bytes).with_context(|| format!("cannot write {}", out.display()))?;
            std::fs::write(out.join("config.json"), config)?;
            std::fs::write(out.join("tokenizer.json"), tokenizer)?;
            println!("{}: {} bytes of weights ({:?}, was {} bytes)", out.display(), bytes.len(), format, files.weight_bytes());
        }
        Command::Extract(args) => steer::extract(args)?,
        Command::Sweep(args) => steer::run_sweep(args)?,
        Command::SteerEval(args) => steer::steer_eval(args)?,
        Command::Vector(args) => steer::vector(args)?,
        Command::Bench(args) => bench::run(args)?,
        Command::Report(args) => report::run(args)?,
        Command::Lab(args) => lab::run(args)?,
        Command::Soak(args) => soak::run(args)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    // A panic is a bug, but the user still gets the contract: an `error:` line and exit code 2.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error (please report): {info}");
        std::process::exit(2);
    }));
    let cli = Cli::parse();
    // The command runs on a thread of rayon's pool, so the CPU backend's parallel work (a matrix product per weight
    // matrix when decoding) starts on the calling thread instead of waking the pool and sleeping until it is done.
    let result = match rayon::ThreadPoolBuilder::new().build() {
        Ok(pool) => pool.install(|| run(cli)),
        Err(_) => run(cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

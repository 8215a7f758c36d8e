//! The steering subcommands: `extract`, `sweep`, `steer-eval`, and `--steer FILE:COEF`.

use std::path::{Path, PathBuf};

use analog_core::steering::metrics::{EvalSpec, evaluate};
use analog_core::steering::{
    Aggregation, Application, HookSite, Method, PairFormat, PairSet, PromptFormat, SteeringVector, VectorModel, collect_ids, encode_pairs, steering_vector,
    sweep,
};
use analog_core::{Hooks, Positions, TextModel};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use crate::{ModelArgs, load, print_json};

/// `FILE:COEF`: a vector file and the coefficient to add it with.
#[derive(Debug, Clone)]
pub struct SteerSpec {
    pub file: PathBuf,
    pub coef: f32,
}

impl std::str::FromStr for SteerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (file, coef) = s.rsplit_once(':').ok_or_else(|| format!("`{s}` should be FILE:COEF"))?;
        let coef: f32 = coef.parse().map_err(|_| format!("`{coef}` is not a number (in `{s}`)"))?;
        if !coef.is_finite() {
            return Err(format!("coefficient `{coef}` is not finite"));
        }
        Ok(Self { file: file.into(), coef })
    }
}

pub fn read_vector(path: &Path) -> Result<SteeringVector> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    SteeringVector::from_json(&bytes).with_context(|| format!("{}", path.display()))
}

/// Hooks that add every `--steer` vector at every position (rescaled to the activation's norm
/// with `preserve_norm`).
pub fn steering_hooks(model: &TextModel, specs: &[SteerSpec], preserve_norm: bool) -> Result<Hooks> {
    let mut hooks = Hooks::new();
    for spec in specs {
        let vector = read_vector(&spec.file)?;
        let config = model.config();
        vector.check_fits(config.d_model, config.n_layers).with_context(|| format!("{}", spec.file.display()))?;
        for edit in vector.edits(&Application { preserve_norm, ..Application::add(spec.coef) }) {
            hooks = hooks.edit(edit);
        }
    }
    Ok(hooks)
}

pub fn read_pairs(path: &Path) -> Result<PairSet> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    PairSet::parse(&text, PairFormat::from_name(&path.to_string_lossy())).with_context(|| format!("{}", path.display()))
}

#[derive(Args)]
pub struct PairArgs {
    /// Pair set: JSONL ({"positive", "negative"} or CAA A/B items) or CSV with positive,negative columns.
    #[arg(long)]
    pairs: PathBuf,
    /// Token aggregation per prompt.
    #[arg(long, default_value = "last")]
    aggregation: Aggregation,
    /// Hook site of every block to read (and later steer at).
    #[arg(long, default_value = "resid_post")]
    hook: HookSite,
    /// Send each prompt in the model's chat format: as the user's turn, read where the assistant is about to
    /// reply (a CAA A/B item's question as the user's turn and its answer opening the reply).
    #[arg(long)]
    chat: bool,
}

async fn activations(model: &TextModel, args: &PairArgs) -> Result<(PairSet, analog_core::steering::PairActivations)> {
    let pairs = read_pairs(&args.pairs)?;
    let format = if args.chat { PromptFormat::Chat } else { PromptFormat::Plain };
    let encoded = encode_pairs(model, &pairs, format)?;
    let acts = collect_ids(&model.model, &encoded, args.hook, args.aggregation, &mut |_: &str, done: usize, total: usize| {
        eprint!("\rextracting: {done}/{total} prompts")
    })
    .await?;
    eprintln!();
    Ok((pairs, acts))
}

pub fn parse_layers(spec: &str, n_layers: usize) -> Result<Vec<usize>> {
    if spec == "all" {
        return Ok((0..n_layers).collect());
    }
    spec.split(',')
        .map(|s| {
            let l: usize = s.trim().parse().with_context(|| format!("`{s}` is not a layer number (or use `all`)"))?;
            if l >= n_layers {
                bail!("layer {l} does not exist: the model has layers 0..={}", n_layers - 1);
            }
            Ok(l)
        })
        .collect()
}

#[derive(Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    pairs: PairArgs,
    /// A layer, a comma-separated list, or `all`.
    #[arg(long)]
    layer: String,
    #[arg(long, default_value = "mean-diff")]
    method: Method,
    /// Where to write the vector JSON.
    #[arg(long)]
    out: PathBuf,
}

pub fn extract(args: ExtractArgs) -> Result<()> {
    let (model, identity) = load_with_identity(&args.model)?;
    let layers = parse_layers(&args.layer, model.config().n_layers)?;
    let (pairs, acts) = pollster::block_on(activations(&model, &args.pairs))?;
    let mut vector = steering_vector(&acts, args.method, &layers, identity, &pairs)?;
    vector.pairs.prompt_format = if args.pairs.chat { PromptFormat::Chat } else { PromptFormat::Plain };
    std::fs::write(&args.out, vector.to_json()).with_context(|| format!("cannot write {}", args.out.display()))?;
    for (layer, d) in &vector.directions {
        println!("layer {layer:>3}: |v| = {:.4}, mean |resid| = {:.4}", d.norm, d.mean_resid_norm);
    }
    println!("wrote {} ({} pairs, {}, {})", args.out.display(), pairs.len(), args.method, vector.site);
    Ok(())
}

/// The model plus what identifies it in vector files: the directory name and the weights' sha256.
pub fn load_with_identity(args: &ModelArgs) -> Result<(TextModel, VectorModel)> {
    let model = load(args)?;
    let id = args.model.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_else(|| "model".into());
    let weights = if args.model.is_file() {
        args.model.clone()
    } else {
        let safetensors = ["model.safetensors", "model.safetensors.index.json"].iter().map(|f| args.model.join(f)).find(|p| p.is_file());
        safetensors.or(crate::files::gguf_in(&args.model)?).context("no weights file")?
    };
    let weights_sha256 = crate::files::sha256_file(&weights)?;
    let d_model = model.config().d_model;
    Ok((model, VectorModel { id, weights_sha256, d_model }))
}

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    pairs: PairArgs,
    #[arg(long)]
    json: bool,
}

pub fn run_sweep(args: SweepArgs) -> Result<()> {
    let model = load(&args.model)?;
    let (pairs, acts) = pollster::block_on(activations(&model, &args.pairs))?;
    let rows = sweep(&acts);
    if args.json {
        return print_json(&json!({ "hook": args.pairs.hook, "aggregation": args.pairs.aggregation, "n_pairs": pairs.len(), "rows": rows }));
    }
    println!("{:>5} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8}", "layer", "probe acc", "cohen d", "|diff|", "mean|res|", "cos pca", "cos pcc", "cos prb");
    for r in rows {
        println!(
            "{:>5} {:>9.3} {:>9.3} {:>9.4} {:>10.4} {:>8.3} {:>8.3} {:>8.3}",
            r.layer, r.probe_accuracy, r.cohens_d, r.mean_diff_norm, r.mean_resid_norm, r.cos_mean_diff_pca, r.cos_mean_diff_pca_center, r.cos_mean_diff_probe
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct SteerEvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    vector: PathBuf,
    /// Comma-separated coefficients.
    #[arg(long, default_value = "-4,-2,0,2,4", allow_hyphen_values = true)]
    coefs: String,
    /// Prompt after which target vs counter tokens are scored (repeatable).
    #[arg(long = "prompt")]
    prompts: Vec<String>,
    /// Continuation whose first token is the target, e.g. " happy".
    #[arg(long, allow_hyphen_values = true)]
    target: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    counter: Option<String>,
    /// Neutral prompt for KL and trigger sampling (repeatable; defaults to three story openings).
    #[arg(long = "neutral")]
    neutral: Vec<String>,
    /// Comma-separated trigger words.
    #[arg(long, default_value = "")]
    lexicon: String,
    #[arg(long, default_value_t = EvalSpec::SAMPLES_PER_PROMPT)]
    samples: usize,
    #[arg(long, default_value_t = EvalSpec::SAMPLE_TOKENS)]
    sample_tokens: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Steer only from this absolute position on (default: every position).
    #[arg(long, default_value_t = 0)]
    from_position: usize,
    /// Scale each layer's direction to its mean residual norm, so coefficients are fractions of it.
    #[arg(long)]
    normalise: bool,
    #[arg(long)]
    json: bool,
}

/// Comma-separated trigger words, blanks dropped.
pub fn parse_lexicon(spec: &str) -> Vec<String> {
    spec.split(',').map(str::trim).filter(|w| !w.is_empty()).map(String::from).collect()
}

/// Comma-separated finite coefficients.
pub fn parse_coefs(spec: &str) -> Result<Vec<f32>> {
    let coefs: Vec<f32> = spec.split(',').map(|c| c.trim().parse::<f32>().with_context(|| format!("`{c}` is not a number"))).collect::<Result<_>>()?;
    if coefs.is_empty() || coefs.iter().any(|c| !c.is_finite()) {
        bail!("--coefs needs finite numbers");
    }
    Ok(coefs)
}

pub fn steer_eval(args: SteerEvalArgs) -> Result<()> {
    let model = load(&args.model)?;
    let vector = read_vector(&args.vector)?;
    let coefs = parse_coefs(&args.coefs)?;
    let preset = EvalSpec::sweep(args.neutral, args.target, args.counter, parse_lexicon(&args.lexicon), args.normalise);
    let spec = EvalSpec {
        logit_prompts: if args.prompts.is_empty() { preset.logit_prompts.clone() } else { args.prompts },
        samples_per_prompt: args.samples,
        sample_tokens: args.sample_tokens,
        seed: args.seed,
        positions: Positions::from(args.from_position),
        ..preset
    };
    let rows =
        pollster::block_on(evaluate(&model, &vector, &coefs, &spec, &mut |_: &str, done: usize, total: usize| eprint!("\rmeasurements: {done}/{total}")))?;
    eprintln!();
    if args.json {
        return print_json(
            &json!({ "vector": args.vector.display().to_string(), "hook": vector.site, "layers": vector.directions.keys().collect::<Vec<_>>(), "rows": rows }),
        );
    }
    let opt = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    println!(
        "{:>7} {:>11} {:>9} {:>8} {:>8} {:>9} | random: {:>11} {:>8} {:>8} {:>9}",
        "coef", "logit diff", "p(target)", "KL", "trigger", "ppl", "logit shift", "KL", "trigger", "ppl"
    );
    for r in &rows {
        let (s, n) = (&r.steered, &r.random);
        println!(
            "{:>7.3} {:>11} {:>9} {:>8.4} {:>8} {:>9} | random: {:>11} {:>8.4} {:>8} {:>9}",
            r.coef,
            opt(s.logit_diff),
            opt(s.prob_target),
            s.kl,
            opt(s.trigger_rate),
            opt(s.perplexity),
            opt(n.logit_diff_shift),
            n.kl,
            opt(n.trigger_rate),
            opt(n.perplexity)
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct VectorArgs {
    #[command(subcommand)]
    command: VectorCommand,
}

#[derive(clap::Subcommand)]
enum VectorCommand {
    /// Write a vector JSON as a GGUF control vector (llama.cpp/repeng) or safetensors.
    Export {
        #[arg(long)]
        vector: PathBuf,
        /// gguf or safetensors
        #[arg(long)]
        format: String,
        /// `controlvector.model_hint` for GGUF (the HF model_type, e.g. llama).
        #[arg(long, default_value = "llama")]
        model_hint: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Read a GGUF control vector into the vector JSON format.
    Import {
        #[arg(long)]
        gguf: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn vector(args: VectorArgs) -> Result<()> {
    match args.command {
        VectorCommand::Export { vector, format, model_hint, out } => {
            let v = read_vector(&vector)?;
            let bytes = match format.as_str() {
                "gguf" => analog_core::steering::gguf::export(&v, &model_hint),
                "safetensors" => v.to_safetensors()?,
                other => bail!("unknown format `{other}`; expected gguf or safetensors"),
            };
            std::fs::write(&out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {} ({} layers)", out.display(), v.directions.len());
        }
        VectorCommand::Import { gguf, out } => {
            let bytes = std::fs::read(&gguf).with_context(|| format!("cannot read {}", gguf.display()))?;
            let v = analog_core::steering::gguf::import(&bytes).with_context(|| format!("{}", gguf.display()))?;
            std::fs::write(&out, v.to_json()).with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {} ({} layers, d_model {})", out.display(), v.directions.len(), v.model.d_model);
        }
    }
    Ok(())
}

//! `analog report`: validate a transfer report, compare it with local measurements, export one's own
//! measurements as a report, and print the JSON Schema.

use std::path::{Path, PathBuf};

use analog_core::report::{self, AnalogModel, Comparison, Intervention, InterventionInputs, MetricName, Outcome, Provenance, ReportKind, TransferReport};
use analog_core::steering::metrics::{EvalSpec, evaluate};
use analog_core::steering::{Aggregation, DatasetEntry, HookSite, Method, collect, steering_vector};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::ModelArgs;
use crate::fetch::{Location, MAX_FETCH_BYTES};
use crate::steer::{load_with_identity, parse_coefs, parse_layers, parse_lexicon, read_pairs};

#[derive(Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Check a report against schema v1 and every semantic rule (exit 0 when valid, 2 otherwise).
    Validate {
        /// Report file, or an http(s) URL.
        file: String,
    },
    /// Re-extract and re-measure a report's interventions on the analog and compare.
    Compare {
        #[command(flatten)]
        model: ModelArgs,
        /// Report file, or an http(s) URL; relative pair/vector URLs resolve against it.
        #[arg(long)]
        report: String,
        #[arg(long)]
        json: bool,
    },
    /// Measure steering on the analog and write it as a v1 report with no frontier parts.
    Export(Box<ExportArgs>),
    /// Print the JSON Schema of v1 reports (the content of public/schema/transfer-report.v1.json).
    Schema {
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(args: ReportArgs) -> Result<()> {
    match args.command {
        ReportCommand::Validate { file } => validate(&file),
        ReportCommand::Compare { model, report, json } => run_compare(&model, &report, json),
        ReportCommand::Export(args) => export(*args),
        ReportCommand::Schema { out } => match out {
            Some(path) => std::fs::write(&path, report::json_schema()).with_context(|| format!("cannot write {}", path.display())),
            None => {
                print!("{}", report::json_schema());
                Ok(())
            }
        },
    }
}

fn read_report(location: &Location) -> Result<TransferReport> {
    let bytes = location.read(report::MAX_REPORT_BYTES as u64)?;
    report::parse(&bytes).map_err(|errors| anyhow::anyhow!("{location} is not a valid v1 transfer report:\n{errors}"))
}

fn validate(file: &str) -> Result<()> {
    let location = Location::parse(file);
    let r = read_report(&location)?;
    let frontier = r.frontier.as_ref().map_or("no frontier".to_string(), |f| format!("frontier {}", f.id));
    println!("valid: {} ({:?} report by {}; analog {}, {frontier}; {} interventions)", r.id, r.kind, r.publisher.name, r.analog.id, r.interventions.len());
    Ok(())
}

/// Fetches (or reads) every external pair set and vector, checking their hashes.
fn resolve(location: &Location, iv: &Intervention) -> Result<InterventionInputs> {
    let pairs = match (iv.inline_pairs(), &iv.pairs.url) {
        (Some(set), _) => set?,
        (None, Some(url)) => {
            let at = location.join(url);
            iv.pairs_from_bytes(&at.read(MAX_FETCH_BYTES)?, at.pair_format()).with_context(|| format!("pair set {at}"))?
        }
        (None, None) => bail!("intervention `{}` has no pair set", iv.id),
    };
    let file = match &iv.vector.url {
        Some(url) if iv.vector.values.is_none() => Some(location.join(url).read(MAX_FETCH_BYTES)?),
        _ => None,
    };
    Ok(InterventionInputs { pairs, vector: iv.vector_from_bytes(file.as_deref())? })
}

fn run_compare(model_args: &ModelArgs, report_spec: &str, json: bool) -> Result<()> {
    let location = Location::parse(report_spec);
    let r = read_report(&location)?;
    let inputs = r.interventions.iter().map(|iv| resolve(&location, iv)).collect::<Result<Vec<_>>>()?;
    let (model, identity) = load_with_identity(model_args)?;
    let comparison = pollster::block_on(report::compare(&model, &identity, &r, &inputs, &mut |what: &str, done: usize, total: usize| {
        eprint!("\r{what}: {done}/{total} ");
    }))?;
    eprintln!();
    if json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print_comparison(&comparison);
    }
    Ok(())
}

fn opt(v: Option<f32>) -> String {
    v.map_or("—".into(), |v| format!("{v:.4}"))
}

fn opt64(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.3}"))
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "FAIL",
        Outcome::NotApplicable => "n/a",
    }
}

fn print_comparison(c: &Comparison) {
    println!("report {} ({:?}), analog {}", c.report_id, c.report_kind, c.analog_id);
    println!("weights: {}", if c.weights_match { "match the report's sha256" } else { "DIFFER from the report's sha256 (numbers may not be comparable)" });
    for v in &c.verdicts {
        println!("{:<28} {:>8}  {:<6} {} ({})", v.check, opt64(v.value), outcome(v.outcome), v.meaning, v.threshold);
    }
    for iv in &c.interventions {
        println!();
        println!("intervention {} — {}", iv.id, iv.concept);
        println!(
            "vector: cosine(re-extracted, published) = {:.4}; |local| = {:.4}, |published| = {:.4}",
            iv.vector_cosine, iv.local_vector_norm, iv.reported_vector_norm
        );
        println!("effect metric: {}", iv.effect_metric.name());
        println!("{:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}", "coef", "local", "reported", "diff", "native", "mapped", "random");
        for row in &iv.rows {
            let e = &row.effect;
            let diff = e.local.zip(e.reported_analog).map(|(l, r)| l - r);
            println!(
                "{:>8.3} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                row.coef,
                opt(e.local),
                opt(e.reported_analog),
                opt(diff),
                opt(e.frontier_native),
                opt(e.frontier_mapped),
                opt(e.random_baseline)
            );
        }
        let corr = |c: &analog_core::report::compare::Correlation| format!("Pearson {} / Spearman {} (n = {})", opt64(c.pearson), opt64(c.spearman), c.n);
        println!("local vs reported analog:  {}", corr(&iv.local_vs_reported_analog));
        println!("local vs frontier native:  {}", corr(&iv.local_vs_frontier_native));
        println!("local vs frontier mapped:  {}", corr(&iv.local_vs_frontier_mapped));
        println!("transfer ratio (mapped/native slope): {}", opt64(iv.transfer_ratio));
        for v in &iv.verdicts {
            println!("  {:<26} {:>8}  {:<5} {} ({})", v.check, opt64(v.value), outcome(v.outcome), v.meaning, v.threshold);
        }
    }
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Pair set (JSONL or CSV), one intervention each (repeatable). Evaluation prompts, target tokens
    /// and lexicon come from an `index.json` beside the file when it lists it, else from the flags.
    #[arg(long = "pairs", required = true)]
    pairs: Vec<PathBuf>,
    /// The analog layer to extract at and steer.
    #[arg(long)]
    layer: usize,
    #[arg(long, default_value = "mean-diff")]
    method: Method,
    #[arg(long, default_value = "last")]
    aggregation: Aggregation,
    #[arg(long, default_value = "resid_post")]
    hook: HookSite,
    #[arg(long, default_value = "-4,-2,-1,0,1,2,4", allow_hyphen_values = true)]
    coefs: String,
    /// Report id (default: `<model>-measurement`).
    #[arg(long)]
    id: Option<String>,
    /// `measurement` (your own results, ready to submit) or `example`.
    #[arg(long, default_value = "measurement")]
    kind: String,
    /// The analog's id in the report (default: the model directory's name).
    #[arg(long)]
    model_id: Option<String>,
    /// Where the analog can be downloaded.
    #[arg(long)]
    model_url: Option<String>,
    #[arg(long, default_value = "anonymous")]
    publisher: String,
    /// Target continuation (e.g. " happy") when the pair set has no index entry.
    #[arg(long, allow_hyphen_values = true)]
    target: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    counter: Option<String>,
    /// Comma-separated trigger words when the pair set has no index entry.
    #[arg(long, default_value = "")]
    lexicon: String,
    /// Effect metric (default: logit_diff_shift with target tokens, else trigger_rate, else kl).
    #[arg(long)]
    effect_metric: Option<String>,
    #[arg(long, default_value_t = EvalSpec::SAMPLES_PER_PROMPT)]
    samples: usize,
    #[arg(long, default_value_t = EvalSpec::SAMPLE_TOKENS)]
    sample_tokens: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    normalise: bool,
    /// The code revision in the provenance (default: `git rev-parse HEAD`, else the version).
    #[arg(long)]
    code_revision: Option<String>,
    #[arg(long)]
    out: PathBuf,
}

/// The entry of an `index.json` beside `pairs` that lists it; none when there is no index.
fn dataset_entry(pairs: &Path) -> Result<Option<DatasetEntry>> {
    let (Some(dir), Some(name)) = (pairs.parent(), pairs.file_name().and_then(|n| n.to_str())) else { return Ok(None) };
    let index = dir.join("index.json");
    let Ok(bytes) = std::fs::read(&index) else { return Ok(None) };
    let entries: Vec<DatasetEntry> = serde_json::from_slice(&bytes).with_context(|| format!("{} is not a dataset index", index.display()))?;
    Ok(entries.into_iter().find(|e| e.file == name))
}

fn parse_metric(name: &str) -> Result<MetricName> {
    serde_json::from_value(serde_json::Value::String(name.into()))
        .map_err(|_| anyhow::anyhow!("unknown metric `{name}`; expected logit_diff, logit_diff_shift, prob_target, kl, trigger_rate or perplexity"))
}

fn export(args: ExportArgs) -> Result<()> {
    let kind = match args.kind.as_str() {
        "measurement" => ReportKind::Measurement,
        "example" => ReportKind::Example,
        other => bail!("--kind `{other}`: expected measurement or example (lab reports come from a transfer study)"),
    };
    let (model, identity) = load_with_identity(&args.model)?;
    parse_layers(&args.layer.to_string(), model.config().n_layers)?;
    let coefs = parse_coefs(&args.coefs)?;
    let mut interventions = Vec::new();
    for path in &args.pairs {
        let pairs = read_pairs(path)?;
        let entry = dataset_entry(path)?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "pairs".into());
        let preset = match &entry {
            Some(e) => EvalSpec::for_dataset(e, args.normalise),
            None => EvalSpec::sweep(Vec::new(), args.target.clone(), args.counter.clone(), parse_lexicon(&args.lexicon), args.normalise),
        };
        let spec = EvalSpec { samples_per_prompt: args.samples, sample_tokens: args.sample_tokens, seed: args.seed, ..preset };
        let effect_metric = match &args.effect_metric {
            Some(name) => parse_metric(name)?,
            None if spec.target.is_some() => MetricName::LogitDiffShift,
            None if !spec.lexicon.is_empty() => MetricName::TriggerRate,
            None => MetricName::Kl,
        };
        eprintln!("{stem}: extracting from {} pairs", pairs.len());
        let acts = pollster::block_on(collect(&model, &pairs, args.hook, args.aggregation, &mut analog_core::progress::Silent))?;
        let vector = steering_vector(&acts, args.method, &[args.layer], identity.clone(), &pairs)?;
        let rows = pollster::block_on(evaluate(&model, &vector, &coefs, &spec, &mut |_: &str, done: usize, total: usize| {
            eprint!("\r{stem}: {done}/{total} measurements")
        }))?;
        eprintln!();
        let (id, concept) = match &entry {
            Some(e) => (e.id.clone(), e.concept.clone()),
            None => (stem.clone(), stem.clone()),
        };
        interventions.push(Intervention::measured(&id, &concept, &pairs, &vector, args.layer, spec, effect_metric, &rows)?);
    }
    let model_id = args.model_id.clone().unwrap_or_else(|| identity.id.clone());
    let analog = AnalogModel::of(&model, model_id, identity.weights_sha256.clone(), args.model_url.clone());
    let provenance = Provenance {
        code_revision: args.code_revision.clone().unwrap_or_else(code_revision),
        seeds: [("evaluation".to_string(), args.seed)].into(),
        date: today(),
        hardware: hardware(args.model.device),
        software: Some(format!("analog-explorer {} (burn 0.22)", env!("CARGO_PKG_VERSION"))),
    };
    let measured = TransferReport::measured(analog, args.publisher.clone(), interventions, provenance);
    let report = TransferReport { id: args.id.clone().unwrap_or(measured.id.clone()), kind, ..measured }
        .validated()
        .map_err(|errors| anyhow::anyhow!("the exported report would not be valid:\n{errors}"))?;
    std::fs::write(&args.out, report.to_json()).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("wrote {} ({} interventions, {} coefficients each)", args.out.display(), report.interventions.len(), coefs.len());
    Ok(())
}

pub fn code_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("analog-explorer {}", env!("CARGO_PKG_VERSION")))
}

/// Today's UTC date as YYYY-MM-DD (civil-from-days, Howard Hinnant's algorithm).
pub fn today() -> String {
    let days = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (year, month, day) = analog_core::chat::civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

pub fn hardware(device: analog_core::device::BackendKind) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {threads} threads; backend {device}")
}

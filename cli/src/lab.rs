//! `analog lab`: the reference lab's pipeline, step by step.

use std::path::PathBuf;

use analog_lab::pipeline::{self, CorpusSpec};
use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Generate the story corpus (training and held-out) and its statistics.
    Corpus {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 40_000)]
        stories: usize,
        #[arg(long, default_value_t = 1_000)]
        held_out: usize,
    },
    /// Train the BPE tokenizer on the corpus.
    Tokenizer {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 512)]
        vocab: usize,
    },
    /// Train the frontier, or distil the analog from it (resumes from the last checkpoint).
    Train {
        #[arg(long)]
        out: PathBuf,
        /// frontier or analog
        #[arg(long)]
        model: String,
        #[arg(long, default_value_t = 3000)]
        steps: usize,
        #[arg(long, default_value_t = 10)]
        log_every: usize,
        #[arg(long, default_value_t = 100)]
        checkpoint_every: usize,
        /// Train the analog on cross-entropy alone, without the frontier as teacher (an ablation).
        #[arg(long)]
        no_teacher: bool,
    },
    /// Measure the analog in f32, f16 and q8_0 (held-out perplexity, greedy continuations) and write
    /// the smallest within 1% of f32 into OUT/shipped/ (the study and publish use it).
    Formats {
        #[arg(long)]
        out: PathBuf,
    },
    /// The transfer study over the built-in pair sets and the corpus mood pairs, written as a v1 lab report.
    Transfer {
        #[arg(long)]
        out: PathBuf,
        /// Directory of the built-in pair sets (with index.json).
        #[arg(long, default_value = "public/datasets")]
        datasets: PathBuf,
        #[arg(long, default_value = "story-analog")]
        analog_id: String,
        #[arg(long, default_value = "story-frontier")]
        frontier_id: String,
        #[arg(long, default_value = "story-lab-transfer")]
        report_id: String,
        #[arg(long, default_value = "-2,-1,0,1,2,4", allow_hyphen_values = true)]
        coefs: String,
        #[arg(long, default_value_t = 0)]
        analog_layer: usize,
        #[arg(long, default_value_t = 1)]
        frontier_layer: usize,
        #[arg(long, default_value_t = 4)]
        samples: usize,
        /// Where to write the report (default: OUT/report.json).
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Every step from seeds: corpus, tokenizer, frontier, analog, transfer study, publication.
    /// Training resumes from checkpoints when rerun.
    All {
        #[arg(long, default_value = "target/lab")]
        out: PathBuf,
        #[arg(long, default_value = "public")]
        public: PathBuf,
        #[arg(long, default_value_t = 2500)]
        frontier_steps: usize,
        #[arg(long, default_value_t = 3000)]
        analog_steps: usize,
    },
    /// The analog size sweep: distil analogs at about 0.5%, 1%, 2% and 5% of the frontier with the
    /// default analog's recipe (training the frontier first when OUT has none), then measure
    /// fidelity and risk per size. Every step resumes.
    Sweep {
        #[arg(long, default_value = "target/lab")]
        out: PathBuf,
        #[arg(long, default_value_t = 2500)]
        frontier_steps: usize,
        /// Distillation steps of every sweep analog.
        #[arg(long, default_value_t = 3000)]
        steps: usize,
        /// Only train; measure nothing.
        #[arg(long)]
        train_only: bool,
        /// Directory of the built-in pair sets (with index.json).
        #[arg(long, default_value = "public/datasets")]
        datasets: PathBuf,
        /// Where to publish the sweep (lab/sweep*, reports/story-sweep-*.json, the catalog's entries).
        #[arg(long, default_value = "public")]
        public: PathBuf,
        /// Bootstrap seeds per pair set (the intervals are over these).
        #[arg(long, default_value_t = 5)]
        seeds: usize,
        #[arg(long, default_value = "0,1,2", allow_hyphen_values = true)]
        coefs: String,
        /// Sampled continuations per prompt for the trigger rate.
        #[arg(long, default_value_t = 4)]
        samples: usize,
        #[arg(long, default_value_t = 128)]
        refusal_requests: usize,
        /// Coefficient of the refusal vectors (a share of the mean residual norm); at 1 the
        /// frontier's replies stop being replies.
        #[arg(long, default_value_t = 0.25, allow_hyphen_values = true)]
        refusal_coef: f32,
        /// Steps of each extraction student (the frontier's budget is 2500); 0 skips the estimate.
        #[arg(long, default_value_t = analog_lab::sweep::FRONTIER_STEPS)]
        extraction_steps: usize,
        /// Tokens each analog samples for its extraction student.
        #[arg(long, default_value_t = 200_000)]
        pool_tokens: usize,
        /// Measure again even where measurements.json exists.
        #[arg(long)]
        remeasure: bool,
        /// The analog layer whose `resid_post` is mapped and patched.
        #[arg(long, default_value_t = 0)]
        analog_layer: usize,
        /// The frontier layer it is mapped to.
        #[arg(long, default_value_t = 1)]
        frontier_layer: usize,
        /// Train and measure only the analog with this label (0.5pct, 1pct, 2pct or 5pct).
        #[arg(long)]
        only: Option<String>,
    },
    /// Copy both models, their cards, the report and the catalog into the public directory.
    Publish {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "public")]
        public: PathBuf,
        #[arg(long, default_value = "story-analog")]
        analog_id: String,
        #[arg(long, default_value = "story-frontier")]
        frontier_id: String,
    },
    /// Steer a model with a mood vector (by default the published measurement's): happy-lexicon
    /// trigger rate and grammaticality per coefficient.
    Mood {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value = "public/datasets")]
        datasets: PathBuf,
        #[arg(long, default_value_t = pipeline::MOOD.layer)]
        layer: usize,
        #[arg(long, default_value = "0,0.1,0.2,0.25,0.3,0.35,0.4,0.5,1,2", allow_hyphen_values = true)]
        coefs: String,
        #[arg(long, default_value_t = pipeline::MOOD_SAMPLES_PER_PROMPT)]
        per_prompt: usize,
        /// Tokens generated per sample.
        #[arg(long, default_value_t = pipeline::MOOD_TOKENS)]
        tokens: usize,
        /// last or mean
        #[arg(long, default_value = "last")]
        aggregation: String,
        /// mean-diff, pca, pca-center or probe
        #[arg(long, default_value = "mean-diff")]
        method: String,
        /// Steer only over the prompt's positions.
        #[arg(long)]
        prompt_only: bool,
        /// Hook site: resid_pre, attn_out, resid_mid, mlp_out or resid_post.
        #[arg(long, default_value = "resid_post")]
        hook: String,
        /// Pair-set file in the datasets directory, e.g. sentiment.jsonl.
        #[arg(long, default_value = pipeline::STORY_MOOD_PAIRS)]
        pairs: String,
        /// Print every sample.
        #[arg(long)]
        show: bool,
        /// Add the raw mean difference instead of the unit direction times the mean residual norm.
        #[arg(long)]
        raw: bool,
    },
    /// Write contrastive mood pairs from the corpus grammar (happy and sad tellings of one story).
    MoodPairs {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = pipeline::MOOD_SEED)]
        seed: u64,
        #[arg(long, default_value_t = pipeline::MOOD_PAIRS)]
        n: usize,
    },
    /// Sample stories and measure the share of sentences the grammar accepts.
    Sample {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 4)]
        per_prompt: usize,
    },
}

/// The command that regenerates every published artifact.
const COMMAND: &str = "cargo run --release -p analog-cli -- lab all";
const DEFAULT_COEFS: &str = "-2,-1,0,1,2,4";

fn transfer_settings<'a>(datasets: &'a std::path::Path, coefs: &str) -> Result<analog_lab::study::StudySettings<'a>> {
    Ok(analog_lab::study::StudySettings {
        datasets_dir: datasets,
        analog_id: "story-analog",
        frontier_id: "story-frontier",
        report_id: "story-lab-transfer",
        coefs: crate::steer::parse_coefs(coefs)?,
        layers: (0, 1),
        samples_per_prompt: 4,
        code_revision: crate::report::code_revision(),
        hardware: crate::report::hardware(analog_core::device::BackendKind::Cpu),
        date: crate::report::today(),
    })
}

/// Measures the analog's weight formats and writes the shipped one (see `analog_lab::formats`).
fn ship(out: &std::path::Path) -> Result<()> {
    let choice = analog_lab::formats::ship(out, pipeline::default_run(true, 0).schedule.seq_len)?;
    for r in &choice.rows {
        eprintln!(
            "{:?}: {} bytes, held-out loss {:.5} (perplexity {:+.3}%), greedy identical {}/{}",
            r.format,
            r.bytes,
            r.held_out_loss,
            100.0 * (r.perplexity_ratio - 1.0),
            r.greedy_identical,
            r.greedy_prompts
        );
    }
    eprintln!("shipping the analog as {:?}", choice.shipped);
    Ok(())
}

pub fn run(args: LabArgs) -> Result<()> {
    match args.command {
        LabCommand::Corpus { out, seed, stories, held_out } => {
            let stats = pipeline::write_corpus(&out, &CorpusSpec { seed, train_stories: stories, held_out_stories: held_out })?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
        }
        LabCommand::Tokenizer { out, vocab } => pipeline::write_tokenizer(&out, vocab)?,
        LabCommand::Train { out, model, steps, log_every, checkpoint_every, no_teacher } => {
            let (frontier, analog) = pipeline::model_dirs(&out);
            let (dir, teacher, spec) = match model.as_str() {
                "frontier" => (frontier, None, pipeline::default_run(false, steps)),
                "analog" => (analog, (!no_teacher).then_some(frontier), pipeline::default_run(true, steps)),
                other => return Err(anyhow!("--model `{other}`: expected frontier or analog")),
            };
            eprintln!("{model}: {} parameters", spec.shape.n_params());
            pipeline::train_model(&out, &dir, &spec, teacher.as_deref(), log_every, checkpoint_every)?;
        }
        LabCommand::All { out, public, frontier_steps, analog_steps } => {
            let started = std::time::Instant::now();
            let stats = pipeline::write_corpus(&out, &CorpusSpec { seed: 0, train_stories: 40_000, held_out_stories: 1_000 })?;
            eprintln!("corpus: {} stories, {} distinct sentences", stats.stories, stats.distinct_sentences);
            pipeline::write_tokenizer(&out, 512)?;
            let (frontier, analog) = pipeline::model_dirs(&out);
            pipeline::train_model(&out, &frontier, &pipeline::default_run(false, frontier_steps), None, 20, 100)?;
            pipeline::train_model(&out, &analog, &pipeline::default_run(true, analog_steps), Some(&frontier), 20, 100)?;
            ship(&out)?;
            let datasets = public.join("datasets");
            pipeline::write_mood_pairs(&datasets)?;
            let settings = transfer_settings(&datasets, DEFAULT_COEFS)?;
            let report = analog_lab::study::run(&out, &settings, &mut |msg| eprintln!("{msg}"))?;
            std::fs::write(out.join("report.json"), report.to_json())?;
            let publish = pipeline::PublishSettings { public: &public, analog_id: "story-analog", frontier_id: "story-frontier", command: COMMAND };
            pipeline::publish(&out, &publish, &report, &mut |m| eprintln!("{m}"))?;
            println!("published into {} in {:.0} s", public.display(), started.elapsed().as_secs_f64());
        }
        LabCommand::Sweep {
            out,
            frontier_steps,
            steps,
            train_only,
            datasets,
            public,
            seeds,
            coefs,
            samples,
            refusal_requests,
            refusal_coef,
            extraction_steps,
            pool_tokens,
            remeasure,
            analog_layer,
            frontier_layer,
            only,
        } => {
            if let Some(label) = only.as_deref().filter(|l| !analog_lab::sweep::SWEEP.iter().any(|a| a.label == *l)) {
                return Err(anyhow!("--only `{label}`: expected 0.5pct, 1pct, 2pct or 5pct"));
            }
            analog_lab::sweep::train(&out, frontier_steps, steps, only.as_deref(), &mut |m| eprintln!("{m}"))?;
            if train_only {
                return Ok(());
            }
            pipeline::write_mood_pairs(&datasets)?;
            let settings = analog_lab::sweep::MeasureSettings {
                seeds: seeds.max(1),
                coefs: crate::steer::parse_coefs(&coefs)?,
                samples_per_prompt: samples,
                layers: (analog_layer, frontier_layer),
                refusal_requests,
                refusal_coef,
                extraction_steps,
                extraction_pool_tokens: pool_tokens,
            };
            let provenance = analog_core::report::Provenance {
                code_revision: crate::report::code_revision(),
                seeds: std::collections::BTreeMap::from([("evaluation".into(), 0), ("map_windows".into(), 2024), ("bootstrap_seeds".into(), seeds as u64)]),
                date: crate::report::today(),
                hardware: crate::report::hardware(analog_core::device::BackendKind::Cpu),
                software: Some(format!("analog-explorer {} (burn 0.22, flex CPU)", env!("CARGO_PKG_VERSION"))),
            };
            let results = analog_lab::sweep::measure_all(&out, &datasets, &settings, &provenance, remeasure, only.as_deref(), &mut |m| eprintln!("{m}"))?;
            let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
            analog_lab::sweep::publish(&out, &public, &results, &format!("analog {command}"))?;
            println!("{}", analog_lab::sweep::table(&results));
        }
        LabCommand::Publish { out, public, analog_id, frontier_id } => {
            let report: analog_core::report::TransferReport =
                analog_core::report::parse(&std::fs::read(out.join("report.json"))?).map_err(|e| anyhow!("{e}"))?;
            let settings = pipeline::PublishSettings { public: &public, analog_id: &analog_id, frontier_id: &frontier_id, command: COMMAND };
            pipeline::publish(&out, &settings, &report, &mut |m| eprintln!("{m}"))?;
            println!("published into {}", public.display());
        }
        LabCommand::Formats { out } => ship(&out)?,
        LabCommand::Transfer { out, datasets, analog_id, frontier_id, report_id, coefs, analog_layer, frontier_layer, samples, report } => {
            ship(&out)?;
            pipeline::write_mood_pairs(&datasets)?;
            let settings = analog_lab::study::StudySettings {
                datasets_dir: &datasets,
                analog_id: &analog_id,
                frontier_id: &frontier_id,
                report_id: &report_id,
                coefs: crate::steer::parse_coefs(&coefs)?,
                layers: (analog_layer, frontier_layer),
                samples_per_prompt: samples,
                code_revision: crate::report::code_revision(),
                hardware: crate::report::hardware(analog_core::device::BackendKind::Cpu),
                date: crate::report::today(),
            };
            let r = analog_lab::study::run(&out, &settings, &mut |msg| eprintln!("{msg}"))?;
            let report = report.unwrap_or_else(|| out.join("report.json"));
            std::fs::write(&report, r.to_json())?;
            println!("wrote {} ({} interventions)", report.display(), r.interventions.len());
        }
        LabCommand::Mood { model, datasets, layer, coefs, per_prompt, tokens, aggregation, method, prompt_only, hook, pairs, show, raw } => {
            let site = serde_json::from_value(serde_json::Value::String(hook.clone()))
                .map_err(|_| anyhow!("--hook `{hook}`: expected resid_pre, attn_out, resid_mid, mlp_out or resid_post"))?;
            let aggregation = serde_json::from_value(serde_json::Value::String(aggregation.clone()))
                .map_err(|_| anyhow!("--aggregation `{aggregation}`: expected last or mean"))?;
            let method = serde_json::from_value(serde_json::Value::String(method.clone()))
                .map_err(|_| anyhow!("--method `{method}`: expected mean-diff, pca, pca-center or probe"))?;
            let how = pipeline::MoodSteering { pairs: &pairs, site, layer, aggregation, method, prompt_only, normalise: !raw };
            let rows = pipeline::mood_steering(&model, &datasets, how, &crate::steer::parse_coefs(&coefs)?, per_prompt, tokens, &mut |coef, text| {
                if show {
                    println!("[{coef}] {text}");
                }
            })?;
            println!("{:>8} {:>10} {:>12}", "coef", "trigger", "grammatical");
            for r in rows {
                println!("{:>8} {:>9.1}% {:>11.1}%", r.coef, r.trigger_rate * 100.0, r.grammatical * 100.0);
            }
        }
        LabCommand::MoodPairs { out, seed, n } => std::fs::write(&out, pipeline::mood_pairs_jsonl(seed, n))?,
        LabCommand::Sample { model, per_prompt } => {
            let (share, _, texts) = pipeline::grammaticality(&model, per_prompt, 60)?;
            for t in texts.iter().take(8) {
                println!("{t}\n");
            }
            println!("grammatical sentences: {:.1}%", share * 100.0);
        }
    }
    Ok(())
}

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
    },
    /// Sample stories and measure the share of sentences the grammar accepts.
    Sample {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 4)]
        per_prompt: usize,
    },
}

pub fn run(args: LabArgs) -> Result<()> {
    match args.command {
        LabCommand::Corpus { out, seed, stories, held_out } => {
            let stats = pipeline::write_corpus(&out, &CorpusSpec { seed, train_stories: stories, held_out_stories: held_out }).map_err(|e| anyhow!(e))?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
        }
        LabCommand::Tokenizer { out, vocab } => pipeline::write_tokenizer(&out, vocab).map_err(|e| anyhow!(e))?,
        LabCommand::Train { out, model, steps, log_every, checkpoint_every } => {
            let (frontier, analog) = pipeline::model_dirs(&out);
            let (dir, teacher, spec) = match model.as_str() {
                "frontier" => (frontier, None, pipeline::default_run(false, steps)),
                "analog" => (analog, Some(frontier), pipeline::default_run(true, steps)),
                other => return Err(anyhow!("--model `{other}`: expected frontier or analog")),
            };
            eprintln!("{model}: {} parameters", spec.shape.n_params());
            pipeline::train_model(&out, &dir, &spec, teacher.as_deref(), log_every, checkpoint_every).map_err(|e| anyhow!(e))?;
        }
        LabCommand::Sample { model, per_prompt } => {
            let prompts = ["Once upon a time", "One day, Lily", "Tom said,", "The bride"];
            let (share, texts) = pipeline::grammaticality(&model, &prompts, per_prompt, 60, 0).map_err(|e| anyhow!(e))?;
            for t in texts.iter().take(8) {
                println!("{t}\n");
            }
            println!("grammatical sentences: {:.1}%", share * 100.0);
        }
    }
    Ok(())
}

//! `analog soak`: many sequential generate + steer runs in one process, with resident memory
//! sampled after each. Anything a run leaves behind (KV caches, hooks, tensors, allocator growth)
//! shows as resident memory that keeps rising after the warm-up.

use std::path::PathBuf;

use analog_core::steering::{Aggregation, Application, HookSite, Method, collect, steering_vector};
use analog_core::{GenerateOptions, Hooks, Sampling};
use anyhow::{Result, bail};
use clap::Args;

use crate::ModelArgs;
use crate::steer::{load_with_identity, read_pairs};

#[derive(Args)]
pub struct SoakArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Pair set the steering vector is extracted from (once, before the runs).
    #[arg(long, default_value = "public/datasets/story-mood.jsonl")]
    pairs: PathBuf,
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Runs before the baseline memory sample (caches and allocator pools fill up first).
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    #[arg(long, default_value_t = 24)]
    max_tokens: usize,
}

/// Resident set size now (`VmRSS`), in bytes.
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

pub fn run(args: SoakArgs) -> Result<()> {
    if args.warmup >= args.runs {
        bail!("--warmup ({}) must be smaller than --runs ({})", args.warmup, args.runs);
    }
    let (model, identity) = load_with_identity(&args.model)?;
    let pairs = read_pairs(&args.pairs)?;
    let layer = model.config().n_layers / 2;
    let acts = pollster::block_on(collect(&model, &pairs, HookSite::ResidPost, Aggregation::Last, &mut analog_core::progress::Silent))?;
    let vector = steering_vector(&acts, Method::MeanDiff, &[layer], identity, &pairs)?;
    let prompts: Vec<Vec<u32>> = pairs.pairs.iter().map(|p| model.encode(&p.positive)).collect::<analog_core::Result<_>>()?;
    println!(
        "soak: {} runs of generate + steer ({} new tokens, sampled, steering at layer {layer}), {}",
        args.runs,
        args.max_tokens,
        args.model.model.display()
    );
    println!("{:>6} {:>12} {:>12}", "run", "RSS MiB", "tokens");
    let (mut baseline, mut highest, mut tokens) = (0u64, 0u64, 0usize);
    let start = std::time::Instant::now();
    for run in 1..=args.runs {
        // Coefficients cycle through none, both signs and a strong push; prompts and seeds vary.
        let coef = [0.0, 4.0, -4.0, 8.0][run % 4];
        let mut hooks = Hooks::new();
        for edit in vector.edits(&Application::add(coef)) {
            hooks = hooks.edit(edit);
        }
        let options = GenerateOptions {
            max_new_tokens: args.max_tokens,
            sampling: Sampling { temperature: 1.0, top_k: 0, top_p: 1.0, seed: run as u64 },
            stop_at_eos: false,
        };
        let out = pollster::block_on(model.generate(&prompts[run % prompts.len()], &options, &mut hooks, &mut |_| true))?;
        tokens += out.ids.len();
        let now = rss().unwrap_or(0);
        if run == args.warmup {
            baseline = now;
        }
        if run > args.warmup {
            highest = highest.max(now);
        }
        if run % 100 == 0 || run == args.runs {
            println!("{run:>6} {:>12.1} {tokens:>12}", mib(now));
        }
    }
    let growth = (highest as f64 - baseline as f64) / baseline.max(1) as f64;
    println!("{} runs, {tokens} tokens in {:.1} s", args.runs, start.elapsed().as_secs_f64());
    println!(
        "resident memory after {} warm-up runs: {:.1} MiB; highest after: {:.1} MiB ({:+.2}%; target: within 5%)",
        args.warmup,
        mib(baseline),
        mib(highest),
        growth * 100.0
    );
    Ok(())
}

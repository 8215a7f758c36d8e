use super::compare::{EffectRow, RowComparison, summarise};
use super::*;
use crate::steering::metrics::Metrics;
use crate::{
    Positions,
    steering::{Aggregation, HookSite, Method, PromptFormat},
};

fn metrics(v: f32) -> Metrics {
    Metrics { logit_diff: Some(v), logit_diff_shift: Some(v), prob_target: Some(0.5), kl: 0.1, trigger_rate: None, perplexity: Some(3.0) }
}

fn intervention() -> Intervention {
    Intervention {
        id: "mood".into(),
        concept: "happy vs sad".into(),
        pairs: PairSetRef { n_pairs: 2, sha256: "0".repeat(64), inline: None, url: Some("pairs.jsonl".into()), prompt_format: PromptFormat::Plain },
        method: Method::MeanDiff,
        aggregation: Aggregation::Last,
        analog_hook: HookSite::ResidPost,
        analog_layer: 0,
        vector: VectorRef { norm: 1.0, mean_resid_norm: 2.0, values: Some(vec![1.0, 0.0]), url: None, sha256: None },
        frontier_layer: Some(1),
        mapping: None,
        evaluation: EvalSpec {
            logit_prompts: vec![],
            target: None,
            counter: None,
            neutral_prompts: vec![],
            neutral_texts: vec![],
            lexicon: vec![],
            samples_per_prompt: 0,
            sample_tokens: 0,
            temperature: 1.0,
            seed: 0,
            positions: Positions::ALL,
            normalise: false,
        },
        effect_metric: MetricName::LogitDiffShift,
        results: vec![],
    }
}

/// Rows where the local and reported analog curves are `2c`, native `c`, mapped `ratio · c`.
fn rows(ratio: f32, random_slope: f32) -> Vec<RowComparison> {
    [-2.0f32, -1.0, 0.0, 1.0, 2.0]
        .into_iter()
        .map(|c| RowComparison {
            coef: c,
            local: metrics(2.0 * c),
            local_random: metrics(0.0),
            reported_analog: Some(metrics(2.0 * c)),
            diff: Default::default(),
            effect: EffectRow {
                local: Some(2.0 * c),
                reported_analog: Some(2.0 * c),
                frontier_native: Some(c),
                frontier_mapped: Some(ratio * c),
                random_baseline: Some(random_slope * c),
            },
        })
        .collect()
}

fn outcome(cmp: &InterventionComparison, check: &str) -> Outcome {
    cmp.verdicts.iter().find(|v| v.check == check).map(|v| v.outcome).unwrap()
}

#[test]
fn clean_transfer_passes_every_check() {
    let cmp = summarise(&intervention(), rows(0.97, 0.1), 0.999, 1.0);
    assert!((cmp.transfer_ratio.unwrap() - 0.97).abs() < 1e-6);
    assert!((cmp.local_vs_frontier_mapped.pearson.unwrap() - 1.0).abs() < 1e-9);
    assert_eq!(cmp.max_abs_diff, Some(0.0));
    for check in ["vector_reproduced", "analog_curve_reproduced", "transfer_degradation", "failure_signature", "mapped_beats_random"] {
        assert_eq!(outcome(&cmp, check), Outcome::Pass, "{check}");
    }
}

#[test]
fn weak_transfer_shows_the_failure_signature() {
    let cmp = summarise(&intervention(), rows(0.5, 0.8), 0.5, 1.0);
    assert_eq!(outcome(&cmp, "vector_reproduced"), Outcome::Fail);
    assert_eq!(outcome(&cmp, "transfer_degradation"), Outcome::Fail);
    assert_eq!(outcome(&cmp, "failure_signature"), Outcome::Fail);
    assert_eq!(outcome(&cmp, "mapped_beats_random"), Outcome::Fail);
    // Between 70% and 95%: no failure signature, but degraded.
    let partial = summarise(&intervention(), rows(0.8, 0.1), 1.0, 1.0);
    assert_eq!(outcome(&partial, "failure_signature"), Outcome::Pass);
    assert_eq!(outcome(&partial, "transfer_degradation"), Outcome::Fail);
}

#[test]
fn missing_frontier_curves_are_not_applicable() {
    let mut r = rows(1.0, 0.0);
    for row in &mut r {
        row.effect.frontier_native = None;
        row.effect.frontier_mapped = None;
        row.effect.random_baseline = None;
    }
    let cmp = summarise(&intervention(), r, 1.0, 1.0);
    assert_eq!(cmp.transfer_ratio, None);
    assert_eq!(outcome(&cmp, "failure_signature"), Outcome::NotApplicable);
    assert_eq!(outcome(&cmp, "analog_curve_reproduced"), Outcome::Pass);
}

#[test]
fn urls_are_limited_to_https_localhost_and_relative_paths() {
    for ok in ["https://example.org/r.json", "http://localhost:8080/x", "http://127.0.0.1/x", "../datasets/sentiment.jsonl", "pairs.jsonl"] {
        assert!(check_url(ok).is_ok(), "{ok}");
    }
    for bad in [
        "javascript:alert(1)",
        "data:text/html,x",
        "file:///etc/passwd",
        "http://example.org/x",
        "//evil.org/x",
        "",
        "https://",
        "a b",
        "http://localhost:80@evil.org/x",
        "https://user@example.org/x",
        "http://localhost.evil.org/x",
        "http://127.0.0.1.evil.org/x",
    ] {
        assert!(check_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn schema_is_draft_2020_12_and_documents_fields() {
    let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(schema["properties"]["interventions"]["description"].as_str().unwrap().contains("interventions"));
    assert!(schema["$defs"]["CoefResult"]["properties"]["frontier_mapped"].is_object());
}

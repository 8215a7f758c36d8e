//! Steering studio: pick or write contrastive pairs, extract a vector at every layer, read the
//! layer sweep, then steer: baseline and steered generations side by side (same seed) and the
//! metrics across coefficients. Vectors are saved, exported (JSON, GGUF) and imported.
//!
//! [`Studio`] lays the panels out and provides a [`StudioState`] context that holds what they
//! share: the pairs, the vector, the job's progress and the error line.

mod extract;
mod pairs;
mod saved;
mod steer;
mod sweep;

use analog_core::steering::{DatasetEntry, Pair, PairSet, SteeringVector, SweepRow};
use leptos::prelude::*;

use super::bridge::done;
use super::widgets::{ErrorLine, JobProgress};
use super::{AppState, ModelStatus};
use crate::protocol::{CoefficientSweep, Event, Steer};

/// What the studio's panels share (a context provided by [`Studio`]).
#[derive(Debug, Clone, Copy)]
pub struct StudioState {
    /// The built-in pair sets (`datasets/index.json`).
    pub datasets: RwSignal<Vec<DatasetEntry>>,
    /// The pairs being edited.
    pub rows: RwSignal<Vec<Pair>>,
    /// The error line (`steer-error`).
    pub message: RwSignal<Option<String>>,
    /// The extracted, imported or saved vector steering uses.
    pub vector: RwSignal<Option<SteeringVector>>,
    /// The held-out layer sweep of the last extraction.
    pub layer_sweep: RwSignal<Vec<SweepRow>>,
    /// The running extraction (kind `extract`) or coefficient sweep (`sweep`); `None` when idle.
    pub progress: RwSignal<Option<JobProgress>>,
    /// `coef` is a fraction of the layer's mean residual norm.
    pub normalise: RwSignal<bool>,
    /// The logit-difference metric's words and the trigger lexicon (comma-separated).
    pub target: RwSignal<String>,
    pub counter: RwSignal<String>,
    pub lexicon: RwSignal<String>,
    /// The last coefficient sweep.
    pub coef_sweep: RwSignal<Option<CoefficientSweep>>,
}

impl StudioState {
    fn new() -> Self {
        Self {
            datasets: RwSignal::new(Vec::new()),
            rows: RwSignal::new(Vec::new()),
            message: RwSignal::new(None),
            vector: RwSignal::new(None),
            layer_sweep: RwSignal::new(Vec::new()),
            progress: RwSignal::new(None),
            normalise: RwSignal::new(true),
            target: RwSignal::new(String::new()),
            counter: RwSignal::new(String::new()),
            lexicon: RwSignal::new(String::new()),
            coef_sweep: RwSignal::new(None),
        }
    }

    /// Shows `message` on the error line.
    fn fail(self, message: impl Into<String>) {
        self.message.set(Some(message.into()));
    }

    /// The built-in pair set `id`, if it is one.
    fn dataset(self, id: &str) -> Option<DatasetEntry> {
        self.datasets.with_untracked(|list| list.iter().find(|d| d.id == id).cloned())
    }

    /// The edited pairs that have both sides, as a pair set.
    fn pair_set(self) -> Result<PairSet, analog_core::steering::PairError> {
        PairSet::new(self.rows.get_untracked().into_iter().filter(|p| !p.positive.trim().is_empty() && !p.negative.trim().is_empty()).collect())
    }

    /// The vector at the chosen layer and coefficient, once there is a vector.
    fn steer(self, app: AppState) -> Option<Steer> {
        let vector = self.vector.get_untracked()?;
        Some(Steer { vector, layer: app.layer.get_untracked(), coef: app.coef.get_untracked(), normalise: self.normalise.get_untracked() })
    }

    /// Handles the events every studio job shares (progress, failure, stop) and returns the others.
    fn progress_or_failure(self, event: Event) -> Option<Event> {
        match event {
            Event::Progress { done, total, what, .. } => self.progress.update(|p| {
                if let Some(p) = p {
                    p.update(what, done, total);
                }
            }),
            Event::Failed { job, errors } => {
                self.progress.set(None);
                self.fail(errors.join("; "));
                done(job);
            }
            Event::Stopped { job } => {
                let what = self.progress.with_untracked(|p| p.as_ref().map(|p| p.kind));
                self.progress.set(None);
                self.fail(if what == Some("sweep") { "Stopped: the coefficient sweep was not finished." } else { "Stopped: no new vector was extracted." });
                done(job);
            }
            other => return Some(other),
        }
        None
    }

    /// Starts following `job` of `kind` (`extract` or `sweep`).
    fn started(self, job: crate::protocol::Job, kind: &'static str, what: &str) {
        self.message.set(None);
        self.progress.set(Some(JobProgress::starting(job, kind, what)));
    }
}

/// The studio's state, from the context [`Studio`] provides (a detached one outside it).
fn studio() -> StudioState {
    use_context::<StudioState>().unwrap_or_else(StudioState::new)
}

/// Whether a model is loaded (the studio's buttons wait for one).
fn model_ready(app: AppState) -> bool {
    app.model.with(|m| matches!(m, ModelStatus::Ready { .. }))
}

/// The steering studio: the pairs, extraction and layer sweep, steering, the coefficient sweep
/// and the visitor's saved work. No props; it reads the page's state and provides [`StudioState`].
#[component]
pub fn Studio() -> impl IntoView {
    let studio = StudioState::new();
    provide_context(studio);
    pairs::load_built_in(studio, super::state());
    view! {
        <section class="view" aria-labelledby="steer-title">
            <h2 id="steer-title">"Steering studio"</h2>
            <p class="hint">"A steering vector is the difference between the model's activations on contrastive prompts. Extract one, pick a layer, and add it while the model writes."</p>
            <ErrorLine message=studio.message testid="steer-error"/>
            <div class="grid2">
                <div>
                    <pairs::Pairs/>
                    <extract::Extract/>
                </div>
                <div>
                    <extract::LayerSweep/>
                </div>
            </div>
            <steer::SteerPanel/>
            <sweep::MetricSettings/>
            <sweep::CoefCharts/>
            <saved::SavedWork/>
        </section>
    }
}

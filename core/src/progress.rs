//! How a long job (an extraction, a layer sweep, a coefficient sweep, a report comparison) says how
//! far it has come, and how it is stopped between two of its steps.

use std::future::Future;

use crate::error::Result;

/// Told after each step of a long job: a batch of prompts, a layer, a measured coefficient. The job
/// awaits it, so a browser worker can yield to its event loop there and read a Stop message; an
/// error (a stop answers [`crate::Error::Cancelled`]) ends the job at that step.
pub trait Progress {
    /// `done` of `total` steps of `what` (e.g. "running the pairs") are finished.
    fn step(&mut self, what: &str, done: usize, total: usize) -> impl Future<Output = Result<()>>;
}

/// A closure watches the steps and never stops the job.
impl<F: FnMut(&str, usize, usize)> Progress for F {
    fn step(&mut self, what: &str, done: usize, total: usize) -> impl Future<Output = Result<()>> {
        self(what, done, total);
        std::future::ready(Ok(()))
    }
}

/// Nobody is watching.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn step(&mut self, _: &str, _: usize, _: usize) -> impl Future<Output = Result<()>> {
        std::future::ready(Ok(()))
    }
}

/// Another job's steps under this job's name: `what` replaces the inner job's own.
pub struct Named<'a, P> {
    pub what: String,
    pub inner: &'a mut P,
}

impl<P: Progress> Progress for Named<'_, P> {
    fn step(&mut self, _: &str, done: usize, total: usize) -> impl Future<Output = Result<()>> {
        self.inner.step(&self.what, done, total)
    }
}

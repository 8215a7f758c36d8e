//! The page's end of the worker: sends requests, routes events to the job that asked, restarts
//! the worker if it dies.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::Array;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker};

use super::{AppState, ModelStatus};
use crate::protocol::{Event, Job, Request};

type Handler = Rc<dyn Fn(Event)>;

struct Bridge {
    worker: Option<Worker>,
    /// Messages waiting for the worker to say it listens.
    queue: Option<Vec<Array>>,
    next_job: Job,
    handlers: HashMap<Job, Handler>,
    state: Option<AppState>,
    webgpu: bool,
}

thread_local! {
    static BRIDGE: RefCell<Bridge> = RefCell::new(Bridge { worker: None, queue: Some(Vec::new()), next_job: 1, handlers: HashMap::new(), state: None, webgpu: true });
}

/// Starts the worker and asks it to pick a backend.
pub fn start(state: AppState, webgpu: bool) {
    BRIDGE.with_borrow_mut(|b| {
        b.state = Some(state);
        b.webgpu = webgpu;
    });
    spawn();
}

fn spawn() {
    let worker = match Worker::new("./worker_loader.js") {
        Ok(w) => w,
        Err(e) => {
            fail_everything(&format!("this browser cannot start the model worker: {e:?}"));
            return;
        }
    };
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        let Some(text) = event.data().as_string() else { return };
        // A batch of events (the worker posts new tokens a few at a time) is a JSON array of them.
        if text.starts_with('[') {
            match serde_json::from_str::<Vec<Event>>(&text) {
                Ok(events) => events.into_iter().for_each(dispatch),
                Err(e) => web_sys::console::error_1(&format!("unreadable worker events: {e}").into()),
            }
            return;
        }
        match serde_json::from_str::<Event>(&text) {
            Ok(event) => dispatch(event),
            Err(e) => match event_job(&text) {
                // The job that waits for it fails with the reason, rather than waiting forever.
                Some(job) if job > 0 => dispatch(Event::Failed { job, errors: vec![format!("the page cannot read the worker's answer: {e}")] }),
                _ => web_sys::console::error_1(&format!("unreadable worker event: {e}").into()),
            },
        }
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(|_| {
        // A panic or an out-of-memory kills the worker's wasm instance: start a fresh one and say so.
        fail_everything("the model worker stopped (it ran out of memory or crashed); a fresh one was started: try again to reload the model");
        BRIDGE.with_borrow_mut(|b| {
            if let Some(w) = b.worker.take() {
                w.terminate();
            }
        });
        spawn();
    });
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();
    let webgpu = BRIDGE.with_borrow_mut(|b| {
        b.worker = Some(worker);
        b.queue = Some(Vec::new());
        b.webgpu
    });
    post(&Request::Init { webgpu }, &[]);
}

/// The job of an event the page cannot read in full (`{"<variant>": {"job": …, …}}`).
fn event_job(text: &str) -> Option<Job> {
    #[derive(serde::Deserialize)]
    struct JobOnly {
        job: Job,
    }
    let event: HashMap<String, JobOnly> = serde_json::from_str(text).ok()?;
    event.into_values().next().map(|e| e.job)
}

/// Fails every pending job with `message`, and the model with it.
fn fail_everything(message: &str) {
    let (handlers, state) = BRIDGE.with_borrow_mut(|b| (std::mem::take(&mut b.handlers), b.state));
    for (job, handler) in handlers {
        handler(Event::Failed { job, errors: vec![message.to_string()] });
    }
    if let Some(state) = state {
        state.model.set(ModelStatus::Error(message.to_string()));
    }
}

fn post(request: &Request, files: &[web_sys::File]) {
    let Ok(text) = serde_json::to_string(request) else { return };
    let message = Array::of1(&JsValue::from_str(&text));
    for f in files {
        message.push(f);
    }
    BRIDGE.with_borrow_mut(|b| match (&mut b.queue, &b.worker) {
        (Some(queue), _) => queue.push(message),
        (None, Some(w)) => {
            let _ = w.post_message(&message);
        }
        (None, None) => {}
    });
}

fn dispatch(event: Event) {
    if let Event::Started = event {
        BRIDGE.with_borrow_mut(|b| {
            if let (Some(queue), Some(w)) = (b.queue.take(), &b.worker) {
                for message in queue {
                    let _ = w.post_message(&message);
                }
            }
        });
        return;
    }
    if let Event::Ready { backend, reason } = &event {
        if let Some(state) = BRIDGE.with_borrow(|b| b.state) {
            state.backend.set(Some((*backend, reason.clone())));
        }
        return;
    }
    let job = event.job();
    let handler = BRIDGE.with_borrow(|b| b.handlers.get(&job).cloned());
    if let Some(handler) = handler {
        handler(event);
    } else if let Event::Failed { errors, .. } = event {
        web_sys::console::error_1(&errors.join("; ").into());
    }
}

/// Sends the request `make(job)` with `files` beside it; `on_event` sees every event of the job.
/// The job's handler is dropped after its final event (the caller knows which one that is and
/// calls [`done`]).
pub fn send(make: impl FnOnce(Job) -> Request, files: &[web_sys::File], on_event: impl Fn(Event) + 'static) -> Job {
    let job = BRIDGE.with_borrow_mut(|b| {
        let job = b.next_job;
        b.next_job += 1;
        b.handlers.insert(job, Rc::new(on_event));
        job
    });
    post(&make(job), files);
    job
}

/// Forgets a finished job's handler.
pub fn done(job: Job) {
    BRIDGE.with_borrow_mut(|b| b.handlers.remove(&job));
}

/// Asks the worker to stop a job between two tokens.
pub fn cancel(job: Job) {
    post(&Request::Cancel { job }, &[]);
}

/// The backend badge.
#[component]
pub fn BackendBadge() -> impl IntoView {
    let state = super::state();
    let text = move || match state.backend.get() {
        None => "backend: starting".to_string(),
        Some((analog_core::device::BackendKind::Wgpu, _)) => "WebGPU".to_string(),
        Some((analog_core::device::BackendKind::Cpu, _)) => "CPU".to_string(),
    };
    let title = move || state.backend.get().map(|(_, why)| why).unwrap_or_default();
    let kind = move || state.backend.get().map_or("none".to_string(), |(k, _)| k.to_string());
    view! {
        <span class="badge" data-testid="backend-badge" data-backend=kind title=title>
            {text}
            <span class="why">{move || state.backend.get().map(|(_, why)| format!(" · {why}")).unwrap_or_default()}</span>
        </span>
    }
}

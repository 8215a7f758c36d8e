//! The visitor's saved work in the studio: pair sets, vectors (with "Use") and results, each
//! deletable, and everything exported or imported as one file.

use leptos::prelude::*;

use super::studio;
use crate::ui::state;
use crate::ui::store::{Saved, export_all};
use crate::ui::widgets::{ErrorLine, read_picked};

/// The list of saved items (`saved`, `saved-pairs`, `saved-vector`, `saved-result`), "Use" on a
/// vector to steer with it, delete buttons, and export/import of everything (`saved-import`).
/// No props.
#[component]
pub fn SavedWork() -> impl IntoView {
    let (studio, app) = (studio(), state());
    let error = RwSignal::new(None::<String>);
    let import_all = move |ev: leptos::ev::Event| {
        leptos::task::spawn_local(async move {
            let Some((_, bytes)) = read_picked(&ev).await else { return };
            match Saved::from_export(&String::from_utf8_lossy(&bytes)) {
                Ok(other) => {
                    app.saved.update(|s| s.merge(other));
                    error.set(None);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let pair_sets = move || {
        app.saved
            .get()
            .pair_sets
            .into_iter()
            .map(|p| {
                let name = p.name.clone();
                view! { <li data-testid="saved-pairs">{format!("pair set: {} ({} lines)", p.name, p.jsonl.lines().count())}
                <button class="icon" aria-label="delete" on:click=move |_| app.saved.update(|s| s.pair_sets.retain(|x| x.name != name))>"×"</button></li> }
            })
            .collect_view()
    };
    let vectors = move || {
        app.saved
            .get()
            .vectors
            .into_iter()
            .map(|v| {
                let name = v.name.clone();
                let chosen = v.vector.clone();
                view! { <li data-testid="saved-vector">{format!("vector: {}", v.name)}
                <button on:click=move |_| studio.vector.set(Some(chosen.clone()))>"Use"</button>
                <button class="icon" aria-label="delete" on:click=move |_| app.saved.update(|s| s.vectors.retain(|x| x.name != name))>"×"</button></li> }
            })
            .collect_view()
    };
    let results = move || {
        app.saved
            .get()
            .results
            .into_iter()
            .map(|r| {
                let name = r.name.clone();
                view! { <li data-testid="saved-result">{format!("result: {}", r.name)}
                <button class="icon" aria-label="delete" on:click=move |_| app.saved.update(|s| s.results.retain(|x| x.name != name))>"×"</button></li> }
            })
            .collect_view()
    };
    view! {
        <section class="saved" data-testid="saved">
            <h3>"Saved in this browser"</h3>
            <ErrorLine message=error/>
            <ul>{pair_sets}{vectors}{results}</ul>
            <div class="buttons">
                <button on:click=move |_| export_all(app)>"Export everything"</button>
                <label class="file-button">"Import…"<input type="file" data-testid="saved-import" accept=".json" on:change=import_all/></label>
            </div>
        </section>
    }
}

//! Step 1 of the studio: the pair set (built in, saved or written here), its table, import from
//! JSONL/CSV and saving it in this browser.

use analog_core::steering::{DatasetEntry, Pair, PairFormat, PairSet};
use leptos::prelude::*;

use super::{StudioState, studio};
use crate::fetch::page_text;
use crate::ui::store::SavedPairs;
use crate::ui::widgets::read_picked;
use crate::ui::{AppState, state};

/// An empty row for the table.
fn blank() -> Pair {
    Pair { positive: String::new(), negative: String::new(), label: None, question: None }
}

/// Fetches `datasets/index.json`, then loads the pair set the URL names.
pub(super) fn load_built_in(studio: StudioState, app: AppState) {
    leptos::task::spawn_local(async move {
        let index = page_text("datasets/index.json", "pair set index").await;
        match index.and_then(|t| serde_json::from_str::<Vec<DatasetEntry>>(&t).map_err(|e| e.to_string())) {
            Ok(list) => {
                studio.datasets.set(list);
                select(studio, app, app.pair_set.get_untracked());
            }
            Err(e) => studio.fail(format!("cannot read the built-in pair sets: {e}")),
        }
    });
}

/// Loads the chosen set: a saved one, a blank one to write ("custom"), or a built-in one from
/// `datasets/` (with its metric words). A set the URL names but this browser no longer has
/// (deleted, another browser) falls back to the first built-in one instead of an empty table.
fn select(studio: StudioState, app: AppState, id: String) {
    app.pair_set.set(id.clone());
    if let Some(saved) = app.saved.get_untracked().pair_sets.into_iter().find(|p| format!("saved:{}", p.name) == id) {
        match PairSet::parse(&saved.jsonl, PairFormat::Jsonl) {
            Ok(set) => studio.rows.set(set.pairs),
            Err(e) => studio.fail(e.to_string()),
        }
        return;
    }
    if id == "custom" {
        studio.rows.set(vec![blank()]);
        return;
    }
    let Some(d) = studio.dataset(&id).or_else(|| studio.datasets.with_untracked(|list| list.first().cloned())) else { return };
    app.pair_set.set(d.id.clone());
    studio.target.set(d.target_tokens.first().cloned().unwrap_or_default());
    studio.counter.set(d.counter_tokens.first().cloned().unwrap_or_default());
    studio.lexicon.set(d.lexicon.join(", "));
    leptos::task::spawn_local(async move {
        let text = page_text(&format!("datasets/{}", d.file), "pair set").await;
        match text.and_then(|t| PairSet::parse(&t, PairFormat::from_name(&d.file)).map_err(|e| e.to_string())) {
            Ok(set) => {
                studio.rows.set(set.pairs);
                studio.message.set(None);
            }
            Err(e) => studio.fail(e),
        }
    });
}

/// "1 · Pairs": the pair-set picker (`pairs-select`) and the editable table. No props.
#[component]
pub fn Pairs() -> impl IntoView {
    let (studio, app) = (studio(), state());
    let options = move || {
        let built_in = studio.datasets.get().into_iter().map(|d| {
            let label = format!("{} — {}", d.id, d.concept);
            view! { <option value=d.id.clone()>{label}</option> }
        });
        let saved = app.saved.get().pair_sets.into_iter().map(|p| view! { <option value=format!("saved:{}", p.name)>{format!("saved: {}", p.name)}</option> });
        (built_in.collect_view(), saved.collect_view(), view! { <option value="custom">"write your own…"</option> })
    };
    view! {
        <h3>"1 · Pairs"</h3>
        <label>"Pair set "
            <select data-testid="pairs-select" prop:value=move || app.pair_set.get() on:change=move |ev| select(studio, app, event_target_value(&ev))>{options}</select>
        </label>
        <PairTable/>
    }
}

/// The pairs as an editable table (collapsed under their count), with adding a pair, import
/// (`pairs-file`) and saving under a name (`pairs-name`, `save-pairs`). No props.
#[component]
fn PairTable() -> impl IntoView {
    let (studio, app) = (studio(), state());
    let rows = studio.rows;
    let save_name = RwSignal::new(String::new());
    let table = move || {
        rows.get()
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                view! {
                    <tr>
                        <td><input type="text" aria-label=format!("positive {}", i + 1) prop:value=p.positive.clone()
                            on:change=move |ev| rows.update(|r| if let Some(row) = r.get_mut(i) { row.positive = event_target_value(&ev) })/></td>
                        <td><input type="text" aria-label=format!("negative {}", i + 1) prop:value=p.negative.clone()
                            on:change=move |ev| rows.update(|r| if let Some(row) = r.get_mut(i) { row.negative = event_target_value(&ev) })/></td>
                        <td><button class="icon" aria-label=format!("remove pair {}", i + 1) on:click=move |_| rows.update(|r| { if i < r.len() { r.remove(i); } })>"×"</button></td>
                    </tr>
                }
            })
            .collect_view()
    };
    let import = move |ev: leptos::ev::Event| {
        leptos::task::spawn_local(async move {
            let Some((name, bytes)) = read_picked(&ev).await else { return };
            let text = String::from_utf8_lossy(&bytes);
            match PairSet::parse(&text, PairFormat::from_name(&name)) {
                Ok(set) => {
                    rows.set(set.pairs);
                    app.pair_set.set("custom".into());
                    save_name.set(name.trim_end_matches(".jsonl").trim_end_matches(".csv").to_string());
                    studio.message.set(None);
                }
                Err(e) => studio.fail(format!("{name}: {e}")),
            }
        });
    };
    let save = move |_| {
        let name = save_name.get_untracked().trim().to_string();
        if name.is_empty() {
            return studio.fail("name the pair set first");
        }
        match studio.pair_set() {
            Ok(set) => {
                app.saved.update(|s| {
                    s.pair_sets.retain(|p| p.name != name);
                    s.pair_sets.push(SavedPairs { name: name.clone(), jsonl: set.to_jsonl() });
                });
                app.pair_set.set(format!("saved:{name}"));
            }
            Err(e) => studio.fail(e.to_string()),
        }
    };
    view! {
        <details class="pairs">
            <summary>{move || format!("{} pairs (edit)", rows.with(Vec::len))}</summary>
            <table class="pair-table">
                <thead><tr><th>"positive"</th><th>"negative"</th><th></th></tr></thead>
                <tbody>{table}</tbody>
            </table>
            <div class="buttons">
                <button on:click=move |_| rows.update(|r| r.push(blank()))>"Add a pair"</button>
                <label class="file-button">"Import JSONL/CSV…"<input type="file" data-testid="pairs-file" accept=".jsonl,.json,.csv,.txt" on:change=import/></label>
                <input type="text" placeholder="name" aria-label="pair set name" data-testid="pairs-name" prop:value=save_name on:input=move |ev| save_name.set(event_target_value(&ev))/>
                <button data-testid="save-pairs" on:click=save>"Save pair set"</button>
            </div>
        </details>
    }
}

//! About: analog models and the idea behind this site, in plain words.

use leptos::prelude::*;

/// The About view: what the site does and where its numbers come from. No props.
#[component]
pub fn About() -> impl IntoView {
    view! {
        <section class="view about" aria-labelledby="about-title">
            <h2 id="about-title">"About analog models"</h2>
            <p>"The most capable AI models are too large, and often too closely guarded, for outside researchers to study directly.
               One proposal is that a lab releasing a frontier model also releases a small "<b>"analog"</b>": a model 0.5–5% of its size,
               trained on the same data and distilled from it, so that its insides resemble the big model's."</p>
            <p>"If they resemble it closely enough, methods that work on the analog should carry over. The proposal names two: "<b>"steering vectors"</b>
               ", directions in a model's internal activations that push its behaviour (happier, more formal, more likely to refuse), found on a
               0.5B-parameter model and still working on a 3B one, and "<b>"embedding geometry"</b>" that stays nearly the same across model sizes. Anyone
               could then test safety and interpretability ideas on the analog, and the lab would report how they transferred."</p>
            <h3>"What you can do here"</h3>
            <ul>
                <li><b>"Playground"</b>": run the analog in this browser tab, on your GPU through WebGPU when the browser offers it, otherwise on the CPU. Look at its tokens and at its residual stream layer by layer."</li>
                <li><b>"Steering studio"</b>": give pairs of sentences that differ in one concept (happy vs sad). The difference in the model's activations is a steering vector. Add it while the model writes and compare with the unsteered text, seed for seed."</li>
                <li><b>"Transfer reports"</b>": a lab's report says how the same vectors behaved on the frontier model. This site re-extracts and re-measures the analog's side here and checks the lab's claims against the thresholds the paper uses: representational alignment r > 0.9, transfer degradation below 5%, and a success rate below 70% flagged as a failure."</li>
            </ul>
            <h3>"The default analog"</h3>
            <p>"The model that loads first was trained by this project's own reference lab, on a story corpus written by a program. It is a 152-thousand-parameter
               analog of a 3.2-million-parameter frontier model (4.8%). Both are published with model cards that state how they were trained and what was measured,
               including the goals they did not meet. The catalog also lists released small models (SmolLM2, Pythia, GPT-2, Qwen2.5) that you can load by name."</p>
            <h3>"How big should an analog be?"</h3>
            <p>"The proposal leaves its central choice to argument: a 0.5% analog protects the lab's model better, a 5% one should transfer better.
               The reference lab measures it on its own corpus: analogs at 0.49%, 0.94%, 2.1% and 4.8% of the frontier, distilled with one recipe, and for each
               how well steering vectors found on it move the frontier (fidelity) against how much of the frontier a student recovers from the analog's outputs alone (risk).
               Each size has its own report in the Reports view."</p>
            <figure data-testid="about-sweep">
                <img src="lab/sweep.svg" alt="Analog size against transfer fidelity and extraction risk, measured by the reference lab" width="880" height="360" style="max-width:100%;height:auto"/>
                <figcaption>"Every number is in "<a href="lab/sweep.md">"the sweep's table"</a>", with the command that measured it. These are tiny models on a synthetic corpus: the trends, not the values, are what might carry over."</figcaption>
            </figure>
            <h3>"Privacy"</h3>
            <p>"Models, pairs, vectors and results stay in your browser. Your saved work lives in this browser's storage and can be exported as one file."</p>
        </section>
    }
}

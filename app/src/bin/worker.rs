//! The model worker (loaded by the page as `worker_loader.js`).

fn main() {
    #[cfg(target_arch = "wasm32")]
    analog_app::worker::start();
}

//! The demo program of `ispyd-std` (same workers, same `demo` plugin: the
//! code is shared, see `adapter-std/examples/shared/demo_app.rs`), with its
//! shell served by the mio engine: one `ispyd-loop` thread for every
//! session.
//!
//! ```text
//! cargo run -p ispyd-mio --example demo-mio -- adapter-std/examples/demo.ini
//! ispy adapter-std/examples/demo.ini
//! ```

#[path = "../../adapter-std/examples/shared/demo_app.rs"]
mod demo_app;

use ispyd_mio::ShellManager;

fn main() {
    let demo = demo_app::Demo::start();
    let started = ShellManager::builder()
        .config_file(&demo.config)
        .plugin(demo.plugin())
        .start();
    let manager = demo.announce(started, |m| m.address().to_string());
    demo.wait();
    manager.shutdown();
}

//! A small program with ispyd embedded (on std threads): a few named worker
//! threads doing real work, one of them stuck on a lock, and a plugin of
//! its own (see `shared/demo_app.rs`).
//!
//! Run it with a configuration file, then inspect it with `ispy`:
//!
//! ```text
//! cargo run -p ispyd-std --example demo -- adapter-std/examples/demo.ini
//! ispy adapter-std/examples/demo.ini
//! ```
//!
//! It runs until SIGINT or SIGTERM, then shuts ispyd down, which tells the
//! connected clients and removes the socket file.

#[path = "shared/demo_app.rs"]
mod demo_app;

use ispyd_std::ShellManager;

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

//! kshark's terminal UI (`kshark tap`, `kshark tui --hub URL`): a client of the hub's
//! API, in the shape of gitui and the ratatui examples.
//!
//! - [`app::App`] is the state; one [`app::AppEvent`] at a time goes through
//!   [`app::App::handle_event`] (keys, mouse, resize, and a tick that pulls new entries).
//! - `view.rs` draws it (`impl Widget for &App`), reading only.
//! - [`source::Source`] is the hub behind a trait: [`source::HubSource`] talks to a real
//!   one; tests drive the whole UI with a scripted source and ratatui's `TestBackend`.
//! - [`run`] owns the terminal: raw mode and the alternate screen, mouse capture, a panic
//!   hook and restoring all of it however the UI ends.
//!
//! Captured text (paths, headers, bodies, names) is hostile: every string from an entry
//! is made terminal-safe (control characters shown escaped) before it is drawn.

pub mod app;
pub mod detail;
pub mod row;
pub mod source;
mod view;

use app::{App, AppEvent};
use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture};
use ratatui::crossterm::execute;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("the terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// Frames a second at least: the UI redraws every tick whether or not anything arrived.
const TICK: Duration = Duration::from_millis(40);

/// Runs the UI on the terminal until the user quits (`q`, Ctrl-C), or `stop` says so.
pub fn run(source: Box<dyn source::Source>, title: &str, filter: &str, stop: &dyn Fn() -> bool) -> Result<(), Error> {
    // ratatui::init: raw mode, the alternate screen, and a panic hook that restores both
    let mut terminal = ratatui::init();
    // on a panic, mouse capture goes too, before ratatui's own restoring hook runs
    let restore = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = execute!(std::io::stdout(), DisableMouseCapture);
        restore(info);
    }));
    let _ = execute!(std::io::stdout(), EnableMouseCapture);
    let result = (|| -> Result<(), Error> {
        let size = terminal.size()?;
        let mut app = App::new(source, title, filter, (size.width, size.height));
        let start = Instant::now();
        let mut next_tick = Instant::now();
        while !app.quit && !stop() {
            if Instant::now() >= next_tick {
                app.handle_event(AppEvent::Tick(start.elapsed()));
                terminal.draw(|f| f.render_widget(&app, f.area()))?;
                next_tick = Instant::now() + TICK;
                // for the test that the terminal is restored on a panic (tests/tui.rs)
                if !app.rows.is_empty() && std::env::var_os("KSHARK_TEST_PANIC").is_some() {
                    panic!("KSHARK_TEST_PANIC is set: panicking on purpose, with the UI up");
                }
            }
            // keys as they come; a burst of them is drawn once
            if event::poll(next_tick.saturating_duration_since(Instant::now()))? {
                app.handle_event(AppEvent::Term(event::read()?));
                while event::poll(Duration::ZERO)? {
                    app.handle_event(AppEvent::Term(event::read()?));
                }
                terminal.draw(|f| f.render_widget(&app, f.area()))?;
            }
        }
        Ok(())
    })();
    let _ = execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    // the hooks as they were before (ours wraps ratatui's, which wraps the default)
    let _ = std::panic::take_hook();
    result
}

//! The UI's state and everything that changes it: one [`AppEvent`] at a time through
//! [`App::handle_event`], the same path for a user's keys and for tests. Rendering
//! (`view.rs`) only reads it.

use crate::row::Row;
use crate::source::{Refused, Source};
use kshark_hub::Filter;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

/// Entries the live table keeps (the oldest go first).
pub const HISTORY: usize = 100_000;
/// Entries held while paused, beyond which the oldest held are dropped (and counted).
const HELD: usize = 100_000;
/// Service-map polls kept for each edge's sparkline.
const SPARK: usize = 60;

#[derive(Debug)]
pub enum AppEvent {
    /// A terminal event: a key, the mouse, a resize.
    Term(Event),
    /// Time since the UI started: pull from the source, update rates.
    Tick(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Live,
    Services,
    /// The TLS status: processes read as plaintext, and those not readable and why.
    Tls,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing a filter.
    Filter,
    /// `y` pressed: which form to copy the entry in.
    Copy,
    Help,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Request,
    Response,
    Info,
}

pub struct App {
    pub(crate) source: Box<dyn Source>,
    /// What is tapped, for the header.
    pub title: String,
    pub rows: VecDeque<Row>,
    /// Rows dropped from the front since the start (so indexes stay meaningful).
    pub held: VecDeque<Row>,
    pub held_dropped: u64,
    pub ui_dropped: u64,
    /// Index into the visible order of the selected row.
    pub selected: usize,
    /// First visible row.
    pub offset: usize,
    pub follow: bool,
    pub paused: bool,
    pub sort_latency: bool,
    /// Row indexes by latency, slowest first, when sorting.
    pub sorted: Vec<usize>,
    pub sorted_dirty: bool,
    pub view: View,
    pub mode: Mode,
    pub detail: Option<Tab>,
    pub detail_scroll: u16,
    pub show_namespace: bool,
    /// The filter the hub applies.
    pub filter: String,
    pub input: String,
    /// The filter being typed, checked: None when it compiles, else (message, position).
    pub input_error: Option<(String, usize)>,
    pub history: Vec<String>,
    history_pos: Option<usize>,
    pub message: Option<String>,
    pub stats: Value,
    pub servicemap: Value,
    /// Each edge's request rate at each service-map poll.
    pub sparks: HashMap<String, VecDeque<u64>>,
    pub services_selected: usize,
    /// (when, entries, errors) arrivals per tick, for the rates.
    arrivals: VecDeque<(Duration, u64, u64)>,
    pub entries_per_s: f64,
    pub errors_per_s: f64,
    pub size: (u16, u16),
    pub quit: bool,
    /// Where `y` writes.
    pub out_dir: PathBuf,
    pub color: bool,
}

impl App {
    pub fn new(source: Box<dyn Source>, title: &str, filter: &str, size: (u16, u16)) -> App {
        App {
            source,
            title: kshark_dissect::export::terminal_safe(title),
            rows: VecDeque::new(),
            held: VecDeque::new(),
            held_dropped: 0,
            ui_dropped: 0,
            selected: 0,
            offset: 0,
            follow: true,
            paused: false,
            sort_latency: false,
            sorted: Vec::new(),
            sorted_dirty: false,
            view: View::Live,
            mode: Mode::Normal,
            detail: None,
            detail_scroll: 0,
            show_namespace: false,
            filter: filter.to_string(),
            input: String::new(),
            input_error: None,
            history: Vec::new(),
            history_pos: None,
            message: None,
            stats: Value::Null,
            servicemap: Value::Null,
            sparks: HashMap::new(),
            services_selected: 0,
            arrivals: VecDeque::new(),
            entries_per_s: 0.0,
            errors_per_s: 0.0,
            size,
            quit: false,
            out_dir: PathBuf::from("."),
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    /// The row shown at visible position `i`.
    pub fn visible(&self, i: usize) -> Option<&Row> {
        if self.sort_latency && !self.sorted_dirty {
            self.rows.get(*self.sorted.get(i)?)
        } else {
            self.rows.get(i)
        }
    }

    pub fn selected_row(&self) -> Option<&Row> {
        self.visible(self.selected)
    }

    /// Rows the table shows at once, for the current size (the layout's arithmetic, as
    /// `view.rs` lays it out).
    pub fn table_height(&self) -> usize {
        let body = self.size.1.saturating_sub(4) as usize; // header 3, footer 1
        let body = if self.detail.is_some() { body * 2 / 5 } else { body };
        body.saturating_sub(3) // borders and the column titles
    }

    pub fn handle_event(&mut self, ev: AppEvent) {
        match ev {
            AppEvent::Tick(now) => self.tick(now),
            AppEvent::Term(Event::Resize(w, h)) => {
                self.size = (w, h);
                self.scroll_into_view();
            }
            AppEvent::Term(Event::Key(k)) if k.kind != KeyEventKind::Release => self.key(k),
            AppEvent::Term(Event::Mouse(m)) => match m.kind {
                MouseEventKind::ScrollUp => self.move_by(-3),
                MouseEventKind::ScrollDown => self.move_by(3),
                _ => {}
            },
            AppEvent::Term(_) => {}
        }
    }

    fn tick(&mut self, now: Duration) {
        let u = self.source.poll();
        if let Some(s) = u.stats {
            self.stats = s;
        }
        if let Some(m) = u.servicemap {
            self.take_servicemap(m);
        }
        if let Some(n) = u.notice {
            self.message = Some(kshark_dissect::export::terminal_safe(&n));
        }
        self.ui_dropped += u.dropped;
        let (mut n, mut errors) = (0, 0);
        for json in u.entries {
            let Some(row) = Row::of(&json) else { continue };
            n += 1;
            errors += row.is_error() as u64;
            if self.paused {
                if self.held.len() >= HELD {
                    self.held.pop_front();
                    self.held_dropped += 1;
                }
                self.held.push_back(row);
            } else {
                self.push(row);
            }
        }
        self.arrivals.push_back((now, n, errors));
        while self.arrivals.front().is_some_and(|(t, _, _)| now.saturating_sub(*t) > Duration::from_secs(1)) {
            self.arrivals.pop_front();
        }
        let span = self.arrivals.front().map_or(Duration::ZERO, |(t, _, _)| now.saturating_sub(*t)).max(Duration::from_millis(100));
        let (e, r): (u64, u64) = self.arrivals.iter().skip(1).fold((0, 0), |(a, b), (_, n, r)| (a + n, b + r));
        self.entries_per_s = e as f64 / span.as_secs_f64();
        self.errors_per_s = r as f64 / span.as_secs_f64();
        if self.sort_latency && self.sorted_dirty {
            self.sort();
        }
        if self.follow {
            self.selected = self.rows.len().saturating_sub(1);
        }
        self.scroll_into_view();
    }

    fn push(&mut self, row: Row) {
        if self.rows.len() >= HISTORY {
            self.rows.pop_front();
            // the selection stays on its row when not following
            if !self.follow {
                self.selected = self.selected.saturating_sub(1);
            }
        }
        self.rows.push_back(row);
        self.sorted_dirty = true;
    }

    fn sort(&mut self) {
        let mut idx: Vec<usize> = (0..self.rows.len()).collect();
        idx.sort_by_key(|i| std::cmp::Reverse(self.rows[*i].latency_us.unwrap_or(0)));
        self.sorted = idx;
        self.sorted_dirty = false;
    }

    fn take_servicemap(&mut self, m: Value) {
        for e in m.get("edges").and_then(Value::as_array).into_iter().flatten() {
            let key = format!("{} -> {}", e["source"].as_str().unwrap_or(""), e["destination"].as_str().unwrap_or(""));
            let spark = self.sparks.entry(key).or_default();
            spark.push_back((e["rate"].as_f64().unwrap_or(0.0) * 10.0).round() as u64);
            while spark.len() > SPARK {
                spark.pop_front();
            }
        }
        self.servicemap = m;
    }

    fn scroll_into_view(&mut self) {
        let h = self.table_height().max(1);
        let n = self.rows.len();
        self.selected = self.selected.min(n.saturating_sub(1));
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + h {
            self.offset = self.selected + 1 - h;
        }
        self.offset = self.offset.min(n.saturating_sub(h));
    }

    fn move_by(&mut self, d: isize) {
        if self.detail.is_some() {
            self.detail_scroll = (self.detail_scroll as isize + d).clamp(0, u16::MAX as isize) as u16;
            return;
        }
        if self.view == View::Services {
            let n = self.servicemap.get("edges").and_then(Value::as_array).map_or(0, Vec::len);
            self.services_selected = (self.services_selected as isize + d).clamp(0, n.saturating_sub(1) as isize) as usize;
            return;
        }
        let n = self.rows.len();
        let to = (self.selected as isize + d).clamp(0, n.saturating_sub(1) as isize) as usize;
        self.selected = to;
        // following means sitting on the newest row
        self.follow = !self.sort_latency && n > 0 && to == n - 1;
        self.scroll_into_view();
    }

    fn key(&mut self, k: KeyEvent) {
        if k.modifiers.contains(KeyModifiers::CONTROL) && matches!(k.code, KeyCode::Char('c')) {
            self.quit = true;
            return;
        }
        match self.mode {
            Mode::Filter => self.filter_key(k),
            Mode::Copy => {
                self.mode = Mode::Normal;
                if let KeyCode::Char(c @ ('j' | 'c' | 'h')) = k.code {
                    self.copy(c);
                }
            }
            Mode::Help => self.mode = Mode::Normal,
            Mode::Normal => self.normal_key(k),
        }
    }

    fn normal_key(&mut self, k: KeyEvent) {
        let page = self.table_height().max(1) as isize;
        match k.code {
            KeyCode::Char('q') => {
                if self.detail.is_some() {
                    self.detail = None;
                } else {
                    self.quit = true;
                }
            }
            KeyCode::Esc => {
                self.detail = None;
                self.message = None;
            }
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char('/') => {
                self.mode = Mode::Filter;
                self.input = self.filter.clone();
                self.history_pos = None;
                self.check_input();
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-page),
            KeyCode::PageDown => self.move_by(page),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX / 2),
            KeyCode::Char('f') => {
                self.follow = !self.follow;
                if self.follow {
                    self.selected = self.rows.len().saturating_sub(1);
                    self.scroll_into_view();
                }
            }
            KeyCode::Char(' ') | KeyCode::Char('p') => {
                self.paused = !self.paused;
                if !self.paused {
                    while let Some(r) = self.held.pop_front() {
                        self.push(r);
                    }
                    if self.follow {
                        self.selected = self.rows.len().saturating_sub(1);
                    }
                    self.scroll_into_view();
                }
            }
            KeyCode::Char('s') => {
                self.sort_latency = !self.sort_latency;
                if self.sort_latency {
                    self.sort();
                    self.follow = false;
                    self.selected = 0;
                }
                self.scroll_into_view();
            }
            KeyCode::Char('n') => self.show_namespace = !self.show_namespace,
            KeyCode::Char('c') => {
                self.rows.clear();
                self.sorted.clear();
                self.selected = 0;
                self.offset = 0;
            }
            KeyCode::Char('1') => self.view = View::Live,
            KeyCode::Char('2') | KeyCode::Char('v') => self.view = View::Services,
            KeyCode::Char('3') | KeyCode::Char('t') => self.view = View::Tls,
            KeyCode::Enter if self.view == View::Live && self.selected_row().is_some() => {
                self.detail = if self.detail.is_some() { None } else { Some(Tab::Request) };
                self.detail_scroll = 0;
                self.scroll_into_view();
            }
            KeyCode::Tab | KeyCode::Right | KeyCode::Char('l') if self.detail.is_some() => self.turn_tab(1),
            KeyCode::BackTab | KeyCode::Left | KeyCode::Char('h') if self.detail.is_some() => self.turn_tab(2),
            KeyCode::Tab => {
                self.view = match self.view {
                    View::Live => View::Services,
                    View::Services => View::Tls,
                    View::Tls => View::Live,
                }
            }
            KeyCode::Char('y') if self.selected_row().is_some() => self.mode = Mode::Copy,
            _ => {}
        }
    }

    /// The detail's tab `by` places on (of three, so 2 is one back).
    fn turn_tab(&mut self, by: usize) {
        const TABS: [Tab; 3] = [Tab::Request, Tab::Response, Tab::Info];
        self.detail = self.detail.map(|t| TABS[(TABS.iter().position(|x| *x == t).unwrap_or(0) + by) % 3]);
        self.detail_scroll = 0;
    }

    fn filter_key(&mut self, k: KeyEvent) {
        match k.code {
            KeyCode::Esc => self.mode = Mode::Normal,
            KeyCode::Enter => {
                if let Some((m, p)) = &self.input_error {
                    self.message = Some(format!("not applied: {m} (at {p})"));
                    return;
                }
                let f = self.input.trim().to_string();
                match self.source.set_filter(&f) {
                    Ok(()) => {
                        self.filter = f.clone();
                        self.mode = Mode::Normal;
                        self.rows.clear();
                        self.held.clear();
                        self.sorted.clear();
                        self.selected = 0;
                        self.offset = 0;
                        self.follow = true;
                        self.message = None;
                        if !f.is_empty() {
                            self.history.retain(|h| *h != f);
                            self.history.push(f);
                        }
                    }
                    Err(Refused { message, position }) => {
                        let m = kshark_dissect::export::terminal_safe(&message);
                        self.input_error = Some((m.clone(), position.unwrap_or(0)));
                        self.message = Some(format!("the hub refused the filter: {m}"));
                    }
                }
            }
            KeyCode::Up | KeyCode::Down if !self.history.is_empty() => {
                let n = self.history.len();
                let pos = match (self.history_pos, k.code) {
                    (None, KeyCode::Up) => Some(n - 1),
                    (Some(p), KeyCode::Up) => Some(p.saturating_sub(1)),
                    (Some(p), KeyCode::Down) if p + 1 < n => Some(p + 1),
                    _ => None,
                };
                self.history_pos = pos;
                self.input = pos.map_or_else(String::new, |p| self.history[p].clone());
                self.check_input();
            }
            KeyCode::Backspace => {
                self.input.pop();
                self.check_input();
            }
            KeyCode::Char('u') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                self.input.clear();
                self.check_input();
            }
            KeyCode::Char(c) if !c.is_control() => {
                self.input.push(c);
                self.check_input();
            }
            _ => {}
        }
    }

    /// Compiles what is typed, as the hub will, to show an error and where at once.
    fn check_input(&mut self) {
        self.input_error = Filter::compile(&self.input).err().map(|e| (e.message, e.position));
    }

    fn copy(&mut self, form: char) {
        let Some(row) = self.selected_row() else { return };
        let Ok(e) = serde_json::from_str::<Value>(&row.json()) else { return };
        let id: String = e.get("id").and_then(Value::as_str).unwrap_or("entry").chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
        let (ext, text) = match form {
            'c' => ("sh", crate::detail::curl(&e)),
            'h' => ("har", crate::detail::har(&e)),
            _ => ("json", Some(serde_json::to_string_pretty(&e).unwrap_or_default())),
        };
        let Some(text) = text else {
            self.message = Some(format!("this entry has no {} form (HTTP entries only)", if form == 'c' { "curl" } else { "HAR" }));
            return;
        };
        let path = self.out_dir.join(format!("kshark-{id}.{ext}"));
        self.message = Some(match std::fs::write(&path, text + "\n") {
            Ok(()) => format!("wrote {}", path.display()),
            Err(err) => format!("{}: {err}", path.display()),
        });
    }

    /// The entry behind the selected row, parsed.
    pub fn selected_entry(&self) -> Option<Value> {
        serde_json::from_str(&self.selected_row()?.json()).ok()
    }

    /// For the header: the source's entries dropped because the UI fell behind, and
    /// entries dropped while paused.
    pub fn ui_drops(&self) -> u64 {
        self.ui_dropped + self.held_dropped
    }
}

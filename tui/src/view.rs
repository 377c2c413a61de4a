//! Drawing the UI from [`App`]'s state, which it cannot change. Only the rows in view are
//! drawn, so 100,000 kept entries cost no more to draw than 20.

use crate::app::{App, Mode, Tab, View};
use crate::detail;
use crate::row::{latency, size, Class, Row};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row as TRow, Table, Widget, Wrap};
use serde_json::Value;

/// A JSON value as text (a string without its quotes).
fn t(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

impl App {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    fn class_style(&self, c: Class) -> Style {
        match c {
            Class::Ok => self.fg(Color::Green),
            Class::Redirect => self.fg(Color::Cyan),
            Class::ClientError => self.fg(Color::Yellow),
            Class::ServerError | Class::Failed => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Class::Unknown => Style::new(),
        }
    }
}

const KEYS: &[(&str, &str)] = &[
    ("↑ ↓ j k, wheel", "move; leaving the last row stops following"),
    ("PgUp PgDn g G", "a page; the first; the last (and follow)"),
    ("f", "follow the newest on/off"),
    ("space, p", "pause/resume (entries are held meanwhile)"),
    ("s", "sort by latency, slowest first, on/off"),
    ("/", "filter: checked as you type, Enter applies it on the hub; ↑ ↓ history"),
    ("Enter", "detail of the selected entry on/off"),
    ("Tab ← →", "detail: request, response, info; otherwise: switch view"),
    ("y then j c h", "write the entry as JSON, curl or HAR to a file"),
    ("n", "namespaces on/off"),
    ("1, 2 v, 3 t", "live entries; services; TLS (what is read, what cannot be)"),
    ("c", "clear the table"),
    ("Esc", "close the detail, clear the message"),
    ("?", "this help"),
    ("q, Ctrl-C", "quit (q first closes the detail)"),
];

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let [head, body, foot] = Layout::vertical([Constraint::Length(3), Constraint::Min(0), Constraint::Length(1)]).areas(area);
        self.header(head, buf);
        match self.view {
            View::Live => {
                if self.detail.is_some() {
                    let [top, bottom] = Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(body);
                    self.table(top, buf);
                    self.detail(bottom, buf);
                } else {
                    self.table(body, buf);
                }
            }
            View::Services => self.services(body, buf),
            View::Tls => self.tls(body, buf),
        }
        self.footer(foot, buf);
        if self.mode == Mode::Help {
            self.help(area, buf);
        }
    }
}

impl App {
    fn header(&self, area: Rect, buf: &mut Buffer) {
        let workers = self.stats.get("workers").and_then(Value::as_object);
        let mut engines: Vec<String> = workers.into_iter().flatten().filter_map(|(_, w)| w.pointer("/stats/engine").and_then(Value::as_str).map(str::to_string)).collect();
        engines.sort();
        engines.dedup();
        let pods: u64 = workers.into_iter().flatten().filter_map(|(_, w)| w.pointer("/stats/pods").and_then(Value::as_u64)).sum();
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let mut l1 = vec![Span::styled(" kshark ", bold.patch(self.fg(Color::Cyan))), Span::raw(format!("{}  ", self.title))];
        if pods > 0 {
            l1.push(Span::raw(format!("{pods} pods  ")));
        }
        if !engines.is_empty() {
            l1.push(Span::raw(format!("engine {}  ", kshark_dissect::export::terminal_safe(&engines.join(",")))));
        }
        // TLS read as plaintext: the processes whose library is hooked
        let tls: Vec<&Value> = workers.into_iter().flatten().filter_map(|(_, w)| w.pointer("/stats/tls")).collect();
        if !tls.is_empty() {
            let n: usize = tls.iter().filter_map(|t| t["hooked"].as_array()).map(Vec::len).sum();
            l1.push(Span::styled(format!("TLS {n} processes  "), self.fg(Color::Green)));
            // and what cannot be read: a user must know what they are not seeing
            let blind: Vec<String> = tls
                .iter()
                .filter_map(|t| t["not_readable"].as_array())
                .flatten()
                .map(|b| format!("{} {} ({})", b["pod"].as_str().unwrap_or("host"), b["process"].as_str().unwrap_or("?"), b["tls"].as_str().unwrap_or("?")))
                .collect();
            if !blind.is_empty() {
                let more = if blind.len() > 2 { format!(" +{}", blind.len() - 2) } else { String::new() };
                let text = format!("TLS NOT READABLE: {}{more}  ", blind[..blind.len().min(2)].join(", "));
                l1.push(Span::styled(kshark_dissect::export::terminal_safe(&text), self.fg(Color::Red).add_modifier(Modifier::BOLD)));
            }
        }
        l1.push(Span::styled(format!("filter: {}", if self.filter.is_empty() { "none".into() } else { kshark_dissect::export::terminal_safe(&self.filter) }), self.fg(Color::Magenta)));
        let mut l2 = vec![
            Span::styled(format!(" {:.0} entries/s", self.entries_per_s), bold),
            Span::raw("  "),
            Span::styled(format!("{:.0} errors/s", self.errors_per_s), if self.errors_per_s > 0.0 { self.fg(Color::Red).add_modifier(Modifier::BOLD) } else { Style::new() }),
            Span::raw(format!("  {} shown", self.rows.len())),
        ];
        if let Some(n) = self.stats.get("entries").and_then(Value::as_u64) {
            l2.push(Span::raw(format!("  {n} stored")));
        }
        if self.follow {
            l2.push(Span::styled("  FOLLOW", self.fg(Color::Green)));
        }
        if self.paused {
            l2.push(Span::styled(format!("  PAUSED ({} held)", self.held.len()), self.fg(Color::Yellow).add_modifier(Modifier::BOLD)));
        }
        if self.sort_latency {
            l2.push(Span::styled("  SORTED by latency", self.fg(Color::Yellow)));
        }
        let drops = self.stats.get("drops").and_then(Value::as_object);
        let mut l3 = vec![Span::raw(" drops:")];
        let mut list: Vec<(String, u64)> = drops.into_iter().flatten().map(|(k, v)| (k.trim_end_matches("_drops").to_string(), v.as_u64().unwrap_or(0))).collect();
        list.push(("ui".into(), self.ui_drops()));
        for (k, n) in list {
            let style = if n > 0 { self.fg(Color::Red).add_modifier(Modifier::BOLD) } else { Style::new().add_modifier(Modifier::DIM) };
            l3.push(Span::styled(format!(" {} {n}", kshark_dissect::export::terminal_safe(&k)), style));
        }
        // what is not captured, and why (a user must know what they are not seeing)
        let nc = self.stats.get("not_captured");
        let pods: Vec<String> = nc.and_then(|n| n.get("pods")).and_then(Value::as_array).into_iter().flatten().map(|p| format!("{} ({})", t(&p["pod"]), t(&p["reason"]))).collect();
        let nodes: Vec<String> = nc.and_then(|n| n.get("nodes")).and_then(Value::as_array).into_iter().flatten().map(t).collect();
        if !pods.is_empty() || !nodes.is_empty() {
            let mut what = Vec::new();
            if !nodes.is_empty() {
                what.push(format!("node {} (no worker)", nodes.join(", ")));
            }
            if !pods.is_empty() {
                what.push(format!("{} pods: {}", pods.len(), pods.join(", ")));
            }
            l3.push(Span::styled(format!("  NOT CAPTURED: {}", kshark_dissect::export::terminal_safe(&what.join("; "))), self.fg(Color::Yellow).add_modifier(Modifier::BOLD)));
        }
        Paragraph::new(vec![Line::from(l1), Line::from(l2), Line::from(l3)]).render(area, buf);
    }

    fn end(&self, name: &str, ns: &str) -> String {
        if self.show_namespace && !ns.is_empty() {
            format!("{ns}/{name}")
        } else {
            name.to_string()
        }
    }

    fn table(&self, area: Rect, buf: &mut Buffer) {
        let title = format!(" Live  {}/{} ", if self.rows.is_empty() { 0 } else { self.selected + 1 }, self.rows.len());
        let block = Block::default().borders(Borders::ALL).title(title);
        let h = area.height.saturating_sub(3) as usize;
        let rows: Vec<TRow> = (self.offset..self.offset + h)
            .filter_map(|i| self.visible(i).map(|r| (i, r)))
            .map(|(i, r): (usize, &Row)| {
                let cells = vec![
                    Cell::from(r.time.clone()),
                    Cell::from(r.protocol.clone()),
                    Cell::from(r.method.clone()),
                    Cell::from(r.what.clone()),
                    Cell::from(Span::styled(r.status.clone(), self.class_style(r.class))),
                    Cell::from(self.end(&r.src, &r.src_ns)),
                    Cell::from(self.end(&r.dst, &r.dst_ns)),
                    Cell::from(latency(r.latency_us)),
                    Cell::from(size(r.size)),
                ];
                let row = TRow::new(cells);
                if i == self.selected {
                    row.style(Style::new().add_modifier(Modifier::REVERSED))
                } else {
                    row
                }
            })
            .collect();
        // protocols by their short names; methods such as "COM_QUERY" and statuses such as
        // "SELECT 3" or "WRONGTYPE" fit
        let widths = [
            Constraint::Length(12),
            Constraint::Length(5),
            Constraint::Length(9),
            Constraint::Fill(3),
            Constraint::Length(9),
            Constraint::Fill(2),
            Constraint::Fill(2),
            Constraint::Length(9),
            Constraint::Length(7),
        ];
        let header = TRow::new(["TIME", "PROTO", "METHOD", "PATH / NAME", "STATUS", "SOURCE", "DESTINATION", "LATENCY", "SIZE"]).style(Style::new().add_modifier(Modifier::BOLD));
        Widget::render(Table::new(rows, widths).header(header).block(block).column_spacing(1), area, buf);
    }

    fn detail(&self, area: Rect, buf: &mut Buffer) {
        let Some(tab) = self.detail else { return };
        let e = self.selected_entry().unwrap_or_default();
        let lines = match tab {
            Tab::Request => detail::request(&e),
            Tab::Response => detail::response(&e),
            Tab::Info => detail::info(&e),
        };
        let width = lines.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0).min(28);
        let text: Vec<Line> = lines
            .into_iter()
            .map(|(k, v)| if k.is_empty() { Line::from(Span::styled(v, self.fg(Color::Cyan))) } else { Line::from(vec![Span::styled(format!("{k:<width$} "), Style::new().add_modifier(Modifier::BOLD)), Span::raw(v)]) })
            .collect();
        let tabs: Vec<Span> = [(Tab::Request, "Request"), (Tab::Response, "Response"), (Tab::Info, "Info")]
            .into_iter()
            .flat_map(|(t, name)| [Span::styled(format!(" {name} "), if t == tab { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() }), Span::raw("│")])
            .collect();
        let block = Block::default().borders(Borders::ALL).title(Line::from(tabs));
        Paragraph::new(text).block(block).wrap(Wrap { trim: false }).scroll((self.detail_scroll, 0)).render(area, buf);
    }

    fn services(&self, area: Rect, buf: &mut Buffer) {
        const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let edges = self.servicemap.get("edges").and_then(Value::as_array).cloned().unwrap_or_default();
        let window = self.servicemap.get("window_seconds").and_then(Value::as_u64).unwrap_or(60);
        let ms = |v: &Value| v.as_f64().map_or("-".to_string(), |m| if m >= 1000.0 { format!("{:.2}s", m / 1000.0) } else { format!("{m:.1}ms") });
        let h = area.height.saturating_sub(3) as usize;
        let first = self.services_selected.saturating_sub(h.saturating_sub(1));
        let rows: Vec<TRow> = edges
            .iter()
            .enumerate()
            .skip(first)
            .take(h)
            .map(|(i, e)| {
                let s = |k: &str| kshark_dissect::export::terminal_safe(e[k].as_str().unwrap_or(""));
                let key = format!("{} -> {}", e["source"].as_str().unwrap_or(""), e["destination"].as_str().unwrap_or(""));
                let spark = self.sparks.get(&key).map(|v| {
                    let max = v.iter().copied().max().unwrap_or(0).max(1);
                    v.iter().map(|x| BARS[((*x * 7) / max) as usize]).collect::<String>()
                });
                let ratio = e["error_ratio"].as_f64().unwrap_or(0.0);
                let protocols = e["protocols"].as_array().map(|p| p.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")).unwrap_or_default();
                let row = TRow::new(vec![
                    Cell::from(s("source")),
                    Cell::from(s("destination")),
                    Cell::from(kshark_dissect::export::terminal_safe(&protocols)),
                    Cell::from(format!("{:.1}/s", e["rate"].as_f64().unwrap_or(0.0))),
                    Cell::from(Span::styled(format!("{:.1}%", ratio * 100.0), if ratio > 0.0 { self.fg(Color::Red) } else { self.fg(Color::Green) })),
                    Cell::from(ms(&e["p50_ms"])),
                    Cell::from(ms(&e["p95_ms"])),
                    Cell::from(ms(&e["p99_ms"])),
                    Cell::from(Span::styled(spark.unwrap_or_default(), self.fg(Color::Cyan))),
                ]);
                if i == self.services_selected {
                    row.style(Style::new().add_modifier(Modifier::REVERSED))
                } else {
                    row
                }
            })
            .collect();
        let widths = [
            Constraint::Fill(2),
            Constraint::Fill(2),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Fill(1),
        ];
        let header = TRow::new(["SOURCE", "DESTINATION", "PROTOCOL", "RATE", "ERRORS", "P50", "P95", "P99", "RATE, LAST POLLS"]).style(Style::new().add_modifier(Modifier::BOLD));
        let block = Block::default().borders(Borders::ALL).title(format!(" Services  {} edges, last {window}s ", edges.len()));
        Widget::render(Table::new(rows, widths).header(header).block(block).column_spacing(1), area, buf);
    }

    /// Every worker's TLS report, one process a row: those whose TLS cannot be read first
    /// (with why), then those read as plaintext (library, version, calls lost).
    fn tls(&self, area: Rect, buf: &mut Buffer) {
        let safe = |v: &Value| kshark_dissect::export::terminal_safe(v.as_str().unwrap_or(""));
        let mut blind = Vec::new();
        let mut read = Vec::new();
        for (worker, w) in self.stats.get("workers").and_then(Value::as_object).into_iter().flatten() {
            let Some(t) = w.pointer("/stats/tls") else { continue };
            for p in t["not_readable"].as_array().into_iter().flatten() {
                let pod = if p["pod"].is_string() { safe(&p["pod"]) } else { "(host)".into() };
                blind.push(TRow::new(vec![
                    Cell::from(pod),
                    Cell::from(format!("{} ({})", safe(&p["process"]), p["pid"])),
                    Cell::from(Span::styled(format!("NOT READABLE: {}", safe(&p["tls"])), self.fg(Color::Red).add_modifier(Modifier::BOLD))),
                    Cell::from(safe(&p["why"])),
                    Cell::from(kshark_dissect::export::terminal_safe(worker)),
                ]));
            }
            for p in t["hooked"].as_array().into_iter().flatten() {
                let pod = if p["pod"].is_string() { safe(&p["pod"]) } else { "(host)".into() };
                let lost: u64 = ["ring_full", "missed_entries", "no_fd", "no_socket"].iter().filter_map(|k| p[*k].as_u64()).sum();
                let lost = if lost > 0 { Span::styled(format!("{lost} calls lost"), self.fg(Color::Red)) } else { Span::raw("") };
                read.push(TRow::new(vec![
                    Cell::from(pod),
                    Cell::from(format!("{} ({})", safe(&p["process"]), p["pid"])),
                    Cell::from(Span::styled(format!("read: {} {}", safe(&p["library"]), safe(&p["version"])), self.fg(Color::Green))),
                    Cell::from(lost),
                    Cell::from(kshark_dissect::export::terminal_safe(worker)),
                ]));
            }
        }
        let title = format!(" TLS  {} processes read, {} not readable ", read.len(), blind.len());
        let rows: Vec<TRow> = blind.into_iter().chain(read).collect();
        let widths = [Constraint::Fill(2), Constraint::Fill(2), Constraint::Length(24), Constraint::Fill(4), Constraint::Fill(1)];
        let header = TRow::new(["POD", "PROCESS", "TLS", "WHY / LOST", "WORKER"]).style(Style::new().add_modifier(Modifier::BOLD));
        Widget::render(Table::new(rows, widths).header(header).block(Block::default().borders(Borders::ALL).title(title)).column_spacing(1), area, buf);
    }

    fn footer(&self, area: Rect, buf: &mut Buffer) {
        let line = match self.mode {
            Mode::Filter => {
                let mut spans = vec![Span::styled("/", Style::new().add_modifier(Modifier::BOLD))];
                let safe: Vec<char> = self.input.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
                match &self.input_error {
                    Some((m, pos)) => {
                        let p = (*pos).min(safe.len());
                        spans.push(Span::raw(safe[..p].iter().collect::<String>()));
                        let at: String = safe.get(p).map_or(" ".into(), |c| c.to_string());
                        spans.push(Span::styled(at, Style::new().add_modifier(Modifier::REVERSED).patch(self.fg(Color::Red))));
                        spans.push(Span::raw(safe.get(p + 1..).map(|s| s.iter().collect::<String>()).unwrap_or_default()));
                        spans.push(Span::styled(format!("   ✗ {m} (at {pos})"), self.fg(Color::Red)));
                    }
                    None => {
                        spans.push(Span::raw(safe.iter().collect::<String>()));
                        spans.push(Span::styled("█", Style::new().add_modifier(Modifier::SLOW_BLINK)));
                        spans.push(Span::styled("   ✓ Enter applies", self.fg(Color::Green)));
                    }
                }
                Line::from(spans)
            }
            Mode::Copy => Line::from(Span::styled(" copy the entry as: [j] JSON  [c] curl  [h] HAR   (another key cancels)", self.fg(Color::Yellow))),
            _ => match &self.message {
                Some(m) => Line::from(Span::styled(format!(" {m}"), self.fg(Color::Yellow))),
                None => Line::from(Span::styled(" ? help  / filter  Enter detail  space pause  f follow  s sort  2 services  y copy  q quit", Style::new().add_modifier(Modifier::DIM))),
            },
        };
        Paragraph::new(line).render(area, buf);
    }

    fn help(&self, area: Rect, buf: &mut Buffer) {
        let w = area.width.min(90);
        let h = area.height.min(KEYS.len() as u16 + 4);
        let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
        Clear.render(r, buf);
        let lines: Vec<Line> = KEYS.iter().map(|(k, what)| Line::from(vec![Span::styled(format!(" {k:<16}"), Style::new().add_modifier(Modifier::BOLD)), Span::raw(*what)])).collect();
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Keys (any key closes) ")).render(r, buf);
    }
}

//! Where the UI's entries come from: the hub behind a trait, so that tests drive the
//! whole UI with a scripted source. [`HubSource`] is the real one: the hub's
//! `/api/stream` WebSocket for entries (stored ones first, then live), and `/api/stats`
//! and `/api/servicemap` polled every second, all on a background runtime so the UI
//! never waits on the network.

use futures_util::StreamExt;
use kshark_hub::client::{encode, HubAddr};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use kshark_hub::client::Message;

/// What a source has for the UI since it was last asked.
#[derive(Debug, Default)]
pub struct Updates {
    /// New entries' JSON, in order.
    pub entries: Vec<Arc<str>>,
    /// The hub's `/api/stats`, when it changed.
    pub stats: Option<Value>,
    /// The hub's `/api/servicemap`, when it changed.
    pub servicemap: Option<Value>,
    /// Something to tell the user (a lost connection, a hub that refused).
    pub notice: Option<String>,
    /// Entries the source had to drop because the UI fell behind.
    pub dropped: u64,
}

/// A filter the hub refused: its words and the position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub message: String,
    pub position: Option<usize>,
}

/// The hub, as the UI sees it.
pub trait Source: Send {
    /// What is new.
    fn poll(&mut self) -> Updates;
    /// Applies a filter on the hub (server-side): the stream restarts with the stored
    /// entries that match, then live ones. A filter the hub refuses changes nothing.
    fn set_filter(&mut self, filter: &str) -> Result<(), Refused>;
    /// Where it is, for the header.
    fn describe(&self) -> String;
}

/// Entries a `HubSource` holds for the UI at most (it polls 20 times a second).
const PENDING: usize = 200_000;
/// Stored entries asked for when the stream (re)starts.
const HISTORY: usize = 5_000;

#[derive(Default)]
struct Shared {
    entries: Vec<Arc<str>>,
    stats: Option<Value>,
    servicemap: Option<Value>,
    notice: Option<String>,
    dropped: u64,
}

/// The real hub, over its API.
pub struct HubSource {
    addr: HubAddr,
    rt: tokio::runtime::Runtime,
    shared: Arc<Mutex<Shared>>,
    stream: Option<tokio::task::JoinHandle<()>>,
    poller: tokio::task::JoinHandle<()>,
}

impl HubSource {
    /// Connects to the hub at `addr` with `filter` (checked by the hub first).
    pub fn connect(addr: HubAddr, filter: &str) -> Result<HubSource, Refused> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().map_err(|e| Refused { message: e.to_string(), position: None })?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let poller = rt.spawn(poll_loop(addr.clone(), shared.clone()));
        let mut s = HubSource { addr, rt, shared, stream: None, poller };
        s.set_filter(filter)?;
        Ok(s)
    }
}

impl Drop for HubSource {
    fn drop(&mut self) {
        self.poller.abort();
        if let Some(s) = self.stream.take() {
            s.abort();
        }
    }
}

impl Source for HubSource {
    fn poll(&mut self) -> Updates {
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        Updates {
            entries: std::mem::take(&mut s.entries),
            stats: s.stats.take(),
            servicemap: s.servicemap.take(),
            notice: s.notice.take(),
            dropped: std::mem::take(&mut s.dropped),
        }
    }

    fn set_filter(&mut self, filter: &str) -> Result<(), Refused> {
        // the hub checks it: a bad one is 400 with the position
        let path = format!("/api/entries?limit=0&filter={}", encode(filter));
        let (status, body) = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), self.addr.get(&path)).await }).map_err(|_| Refused { message: format!("{} did not answer", self.addr.display()), position: None })?.map_err(|e| Refused { message: e.to_string(), position: None })?;
        if status != 200 {
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            return Err(Refused {
                message: v.get("error").and_then(Value::as_str).map_or_else(|| format!("the hub answered {status}"), str::to_string),
                position: v.get("position").and_then(Value::as_u64).map(|p| p as usize),
            });
        }
        if let Some(s) = self.stream.take() {
            s.abort();
        }
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).entries.clear();
        self.stream = Some(self.rt.spawn(stream_loop(self.addr.clone(), filter.to_string(), self.shared.clone())));
        Ok(())
    }

    fn describe(&self) -> String {
        self.addr.display()
    }
}

async fn stream_loop(addr: HubAddr, filter: String, shared: Arc<Mutex<Shared>>) {
    let mut last = HISTORY;
    loop {
        let path = format!("/api/stream?filter={}&last={last}", encode(&filter));
        match addr.websocket(&path).await {
            Ok(mut ws) => {
                while let Some(msg) = ws.next().await {
                    match msg {
                        Ok(Message::Text(t)) => {
                            let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                            if s.entries.len() >= PENDING {
                                s.dropped += 1;
                            } else {
                                s.entries.push(Arc::from(t.as_str()));
                            }
                        }
                        Ok(Message::Close(Some(f))) => {
                            shared.lock().unwrap_or_else(|p| p.into_inner()).notice = Some(format!("the hub closed the stream: {}", f.reason));
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            shared.lock().unwrap_or_else(|p| p.into_inner()).notice = Some(format!("stream: {e}"));
                            break;
                        }
                    }
                }
            }
            Err(e) => shared.lock().unwrap_or_else(|p| p.into_inner()).notice = Some(e.to_string()),
        }
        // reconnect for live entries only: the ones stored meanwhile are not resent
        last = 0;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn poll_loop(addr: HubAddr, shared: Arc<Mutex<Shared>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let stats = addr.get("/api/stats").await;
        let map = addr.get("/api/servicemap?window=1m").await;
        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok((200, body)) = stats {
            s.stats = serde_json::from_str(&body).ok();
        }
        if let Ok((200, body)) = map {
            s.servicemap = serde_json::from_str(&body).ok();
        }
    }
}


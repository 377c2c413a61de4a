//! The hub's listener: its own accept loop over hyper, so that every connection has a
//! budget. At most [`ServeLimits::max_connections`] at once (beyond that a connection is
//! closed at once, and counted); request headers must arrive within
//! [`ServeLimits::header_timeout`]; a connection on which nothing was read or written for
//! [`ServeLimits::idle_timeout`] is closed (live streams send a ping every 20 s, workers
//! their counters every second, so only the dead and the hostile go idle). When the hub
//! stops, connections get a grace period, then their sockets are shut down, WebSockets
//! included: the hub stops within seconds whatever its clients do.
//!
//! Each connection's socket lives in one [`Conn`] shared by hyper (through [`Watched`])
//! and the connection's watchdog, which notes when bytes last moved and can shut the
//! socket down from outside (which wakes whoever waits on it).

use crate::hub::Hub;
use crate::Error;
use axum::Router;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a connection may take.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long connections get to finish when the hub stops.
    pub grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits { max_connections: 512, header_timeout: Duration::from_secs(10), idle_timeout: Duration::from_secs(60), grace: Duration::from_secs(2) }
    }
}

fn clock_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A connection's socket, and when bytes last moved on it.
struct Conn {
    tcp: TcpStream,
    last: AtomicU64,
    active: Arc<AtomicUsize>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Relaxed);
    }
}

impl Conn {
    fn kill(&self) {
        // SAFETY: the socket is open for as long as `self` is (this holds it); shutdown
        // only ends its traffic, and wakes the tasks waiting on it.
        unsafe { libc::shutdown(self.tcp.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// The socket as hyper reads and writes it (through `&TcpStream`, so the watchdog can
/// hold it too).
struct Watched(Arc<Conn>);

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let c = &self.0;
        loop {
            ready!(c.tcp.poll_read_ready(cx))?;
            let dst = buf.initialize_unfilled();
            match c.tcp.try_read(dst) {
                Ok(n) => {
                    if n > 0 {
                        c.last.store(clock_ms(), Relaxed);
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let c = &self.0;
        loop {
            ready!(c.tcp.poll_write_ready(cx))?;
            match c.tcp.try_write(data) {
                Ok(n) => {
                    if n > 0 {
                        c.last.store(clock_ms(), Relaxed);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // SAFETY: as in `kill`: the socket is open while `self` holds it
        unsafe { libc::shutdown(self.0.tcp.as_raw_fd(), libc::SHUT_WR) };
        Poll::Ready(Ok(()))
    }
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` resolves, then
/// gives connections [`ServeLimits::grace`] and closes what is left.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, tls: Option<tokio_rustls::TlsAcceptor>, shutdown: impl Future<Output = ()> + Send + 'static, limits: ServeLimits, hub: Hub) -> Result<(), Error> {
    let active = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    let mut said_full = false;
    loop {
        let tcp = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // out of descriptors and the like: wait rather than spin
                    eprintln!("kshark hub: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        if active.load(Relaxed) >= limits.max_connections {
            hub.inner.counters.connections_refused.fetch_add(1, Relaxed);
            if !std::mem::replace(&mut said_full, true) {
                eprintln!("kshark hub: {} connections open, the most it takes: refusing more (counted as connections_refused)", limits.max_connections);
            }
            drop(tcp);
            continue;
        }
        said_full = false;
        let _ = tcp.set_nodelay(true);
        active.fetch_add(1, Relaxed);
        let conn = Arc::new(Conn { tcp, last: AtomicU64::new(clock_ms()), active: active.clone() });
        tasks.spawn(connection(conn, router.clone(), tls.clone(), limits, hub.clone(), stop_rx.clone()));
    }
    let _ = stop_tx.send(true);
    // what is left after the grace period is cut (its watchdog shuts its socket)
    let _ = tokio::time::timeout(limits.grace + Duration::from_secs(1), async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    Ok(())
}

async fn connection(conn: Arc<Conn>, router: Router, tls: Option<tokio_rustls::TlsAcceptor>, limits: ServeLimits, hub: Hub, stop: tokio::sync::watch::Receiver<bool>) {
    let watchdog = {
        let conn = conn.clone();
        let hub = hub.clone();
        let mut stop = stop.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500).min(limits.idle_timeout));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        // only the watchdog holds it: the connection is over
                        if Arc::strong_count(&conn) == 1 {
                            return;
                        }
                        if clock_ms().saturating_sub(conn.last.load(Relaxed)) >= limits.idle_timeout.as_millis() as u64 {
                            hub.inner.counters.connections_timed_out.fetch_add(1, Relaxed);
                            conn.kill();
                            return;
                        }
                    }
                    _ = stop.changed() => {
                        tokio::time::sleep(limits.grace).await;
                        conn.kill();
                        return;
                    }
                }
            }
        }
    };
    // the watchdog outlives hyper's part when the connection becomes a WebSocket
    tokio::spawn(watchdog);
    let io = Watched(conn);
    match tls {
        None => drive(io, router, limits, &hub, stop).await,
        Some(tls) => match tokio::time::timeout(limits.header_timeout, tls.accept(io)).await {
            Ok(Ok(s)) => drive(s, router, limits, &hub, stop).await,
            Ok(Err(_)) => {}
            Err(_) => {
                hub.inner.counters.connections_timed_out.fetch_add(1, Relaxed);
            }
        },
    }
}

/// Serves HTTP on one connection's stream (plain or TLS) until it ends, or gracefully
/// when the hub stops.
async fn drive<I>(io: I, router: Router, limits: ServeLimits, hub: &Hub, mut stop: tokio::sync::watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let c = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(c);
    tokio::select! {
        r = c.as_mut() => {
            if r.as_ref().is_err_and(|e| e.to_string().contains("timeout")) {
                hub.inner.counters.connections_timed_out.fetch_add(1, Relaxed);
            }
            return;
        }
        _ = stop.changed() => c.as_mut().graceful_shutdown(),
    }
    let _ = c.await;
}

//! A capture file as a live source: at the recorded pace (timestamps moved to now, so the
//! rest of the pipeline sees it as live traffic) or as fast as it can be read.

use crate::error::Error;
use crate::file::FileSource;
use crate::source::{Plan, Poll, RawPacket, Source, SourceStats};
use kshark_dissect::Timestamp;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Packets travel from the reading thread in blocks of this many.
const BLOCK: usize = 256;

struct Block {
    packets: Vec<(Timestamp, u32, Vec<u8>)>,
}

pub struct ReplaySource {
    rx: Receiver<Result<Block, Error>>,
    packets: u64,
    paced: bool,
}

impl ReplaySource {
    /// Starts reading `src` in a thread. `speed` is how many times faster than recorded to
    /// play (1.0 = the recorded pace); `None` plays as fast as the reader goes.
    pub fn start(mut src: FileSource, speed: Option<f64>) -> Self {
        let (tx, rx) = sync_channel(64);
        std::thread::spawn(move || {
            let start = Instant::now();
            let now = crate::source::now();
            let mut first: Option<Timestamp> = None;
            let mut block = Block { packets: Vec::with_capacity(BLOCK) };
            let mut gone = false;
            let result = src.for_each_packet(|p| {
                if gone {
                    return;
                }
                let mut ts = p.ts;
                if let Some(speed) = speed {
                    let f = *first.get_or_insert(p.ts);
                    let offset = Duration::from_nanos(((p.ts.0.saturating_sub(f.0)) as f64 / speed) as u64);
                    if let Some(wait) = offset.checked_sub(start.elapsed()) {
                        if !block.packets.is_empty() {
                            let b = std::mem::replace(&mut block, Block { packets: Vec::with_capacity(BLOCK) });
                            gone |= tx.send(Ok(b)).is_err();
                        }
                        std::thread::sleep(wait);
                    }
                    ts = Timestamp(now.0 + offset.as_nanos() as u64);
                }
                block.packets.push((ts, p.linktype, p.data.to_vec()));
                if block.packets.len() >= BLOCK {
                    let b = std::mem::replace(&mut block, Block { packets: Vec::with_capacity(BLOCK) });
                    gone |= tx.send(Ok(b)).is_err();
                }
            });
            if !block.packets.is_empty() {
                let _ = tx.send(Ok(block));
            }
            if let Err(e) = result {
                let _ = tx.send(Err(e));
            }
        });
        ReplaySource { rx, packets: 0, paced: speed.is_some() }
    }
}

impl Source for ReplaySource {
    fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(RawPacket<'_>)) -> Result<Poll, Error> {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(b)) => {
                for (ts, linktype, data) in &b.packets {
                    self.packets += 1;
                    f(RawPacket { ts: *ts, linktype: *linktype, data });
                }
                Ok(Poll::More)
            }
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Ok(Poll::More),
            Err(RecvTimeoutError::Disconnected) => Ok(Poll::End),
        }
    }

    fn apply(&mut self, _plan: &Plan) -> Result<(), Error> {
        Ok(()) // a file has no interfaces to follow
    }

    fn stats(&mut self) -> SourceStats {
        SourceStats { packets: self.packets, ..Default::default() }
    }

    fn engine(&self) -> &'static str {
        "file"
    }

    fn attached(&self) -> Vec<String> {
        Vec::new()
    }

    fn live(&self) -> bool {
        self.paced
    }
}

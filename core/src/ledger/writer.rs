//! The writer: rows wait in a bounded queue (a call never waits for the
//! database; its only cost is one channel send of the row), and are stored
//! in batches of up to `batch_rows`, one transaction each, at least every
//! `flush_interval`, by a thread of its own with its own single-threaded
//! runtime (never a task on the runtime that serves calls). A batch the database refuses (full disk, lost
//! connection) is retried with backoff while new rows queue; a full queue
//! drops rows (counted). [`Ledger::close`] writes what is queued.

use super::{BlockingInsert, CallRow, LedgerMetrics, LedgerStore};
use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use vibectl_config::LedgerConfig;

/// First wait after a failed batch; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Tries of each batch at shutdown.
const CLOSE_TRIES: u32 = 3;

/// The handle calls record through.
#[derive(Debug)]
pub struct Ledger {
    tx: mpsc::Sender<CallRow>,
    failing: Arc<AtomicBool>,
    stop: CancellationToken,
    /// Fires when the writer thread has finished.
    done: Mutex<Option<oneshot::Receiver<()>>>,
    metrics: LedgerMetrics,
    /// The store, as logs name it.
    what: String,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Ledger {
    /// Starts the writer over `store`.
    pub fn start(
        store: Arc<dyn LedgerStore>,
        config: &LedgerConfig,
        metrics: LedgerMetrics,
    ) -> Arc<Ledger> {
        let (tx, rx) = mpsc::channel(config.queue_rows);
        let failing = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let what = store.describe().to_owned();
        let writer = Writer {
            store,
            rx,
            batch_rows: config.batch_rows,
            flush_interval: config.flush_interval,
            failing: failing.clone(),
            metrics: metrics.clone(),
        };
        let (done_tx, done) = oneshot::channel();
        let writer_stop = stop.clone();
        let run = move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let store = writer.store.clone();
                    let mut writer = Some(writer);
                    store.with_blocking_insert(&mut |mut blocking| {
                        if let Some(writer) = writer.take() {
                            rt.block_on(async {
                                writer.run(writer_stop.clone(), &mut blocking).await;
                                // Lets the pool take back the last connection.
                                tokio::task::yield_now().await;
                            });
                        }
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "usage ledger: no runtime for the writer; rows are not written")
                }
            }
            let _ = done_tx.send(());
        };
        if let Err(e) = std::thread::Builder::new()
            .name("vibectl-ledger".into())
            .spawn(run)
        {
            tracing::error!(error = %e, "usage ledger: cannot start the writer thread; rows are not written");
        }
        Arc::new(Ledger {
            tx,
            failing,
            stop,
            done: Mutex::new(Some(done)),
            metrics,
            what,
        })
    }

    /// Queues a row; never waits. A full queue drops it (logged, counted).
    /// The queue gauge is the writer's to set (after each batch): a call
    /// pays only for the channel send.
    pub fn record(&self, row: CallRow) {
        if let Err(e) = self.tx.try_send(row) {
            self.metrics.dropped(1);
            let row = match e {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            tracing::error!(request_id = %row.request_id, ledger = %self.what, "usage ledger queue full: row dropped");
        }
    }

    /// True while the database refuses writes.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Writes every queued row (within `timeout`) and stops the writer.
    pub async fn close(&self, timeout: Duration) {
        self.stop.cancel();
        let done = self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(done) = done
            && tokio::time::timeout(timeout, done).await.is_err()
        {
            tracing::error!(
                ?timeout,
                "usage ledger: queued rows not written before the deadline"
            );
        }
    }
}

struct Writer {
    store: Arc<dyn LedgerStore>,
    rx: mpsc::Receiver<CallRow>,
    batch_rows: usize,
    flush_interval: Duration,
    failing: Arc<AtomicBool>,
    metrics: LedgerMetrics,
}

impl Writer {
    async fn run(mut self, stop: CancellationToken, blocking: &mut Option<BlockingInsert<'_>>) {
        let mut batch = Vec::with_capacity(self.batch_rows);
        loop {
            // Wait for a first row. Unless a whole batch is queued already,
            // let more gather for flush_interval, then take what came: one
            // timer wake per batch, not a wake of this thread per row.
            tokio::select! {
                _ = stop.cancelled() => break,
                n = self.rx.recv_many(&mut batch, self.batch_rows) => if n == 0 { break },
            }
            if batch.len() < self.batch_rows {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(self.flush_interval) => {}
                }
                // What came meanwhile, in bulk (a `try_recv` per row gave
                // a permit back to the queue's semaphore, under its
                // mutex, per row); never waits: only while rows are queued.
                while batch.len() < self.batch_rows && !self.rx.is_empty() {
                    let room = self.batch_rows - batch.len();
                    if self.rx.recv_many(&mut batch, room).await == 0 {
                        break;
                    }
                }
            }
            let mut backoff = FIRST_BACKOFF;
            let mut written = self.write(blocking, &batch).await;
            while !written && !stop.is_cancelled() {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(backoff) => written = self.write(blocking, &batch).await,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            if written {
                batch.clear();
            }
            if stop.is_cancelled() {
                // An unwritten batch is retried with the rest below.
                break;
            }
        }
        // Shutdown: everything still queued, a few tries per batch.
        self.rx.close();
        while let Ok(row) = self.rx.try_recv() {
            batch.push(row);
        }
        for chunk in batch.chunks(self.batch_rows) {
            let mut written = false;
            for _ in 0..CLOSE_TRIES {
                if self.write(blocking, chunk).await {
                    written = true;
                    break;
                }
                tokio::time::sleep(FIRST_BACKOFF).await;
            }
            if !written {
                self.metrics.dropped(chunk.len());
                tracing::error!(
                    rows = chunk.len(),
                    ledger = self.store.describe(),
                    "usage ledger: rows lost at shutdown (the database refused them)"
                );
            }
        }
    }

    /// One batch; true when stored.
    async fn write(&self, blocking: &mut Option<BlockingInsert<'_>>, batch: &[CallRow]) -> bool {
        if batch.is_empty() {
            return true;
        }
        let stored = match blocking {
            Some(insert) => insert(batch),
            None => self.store.insert(batch).await,
        };
        match stored {
            Ok(()) => {
                let oldest = batch.iter().map(|r| r.ts_ms).min().unwrap_or_else(now_ms);
                self.metrics
                    .written(batch.len(), (now_ms() - oldest).max(0) as f64 / 1000.0);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(ledger = self.store.describe(), "usage ledger writes again");
                }
                self.metrics.queue(self.rx.len());
                true
            }
            Err(e) => {
                self.metrics.error();
                self.metrics.queue(self.rx.len());
                self.failing.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, ledger = self.store.describe(), rows = batch.len(), queued = self.rx.len(), "usage ledger write failed; retrying (calls go on)");
                false
            }
        }
    }
}

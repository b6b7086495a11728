//! Cancel requests (`pg_cancel_backend` from a driver, Ctrl-C in psql), and
//! `statement_timeout`, which stops a statement the same way.
//!
//! A client cancels by opening a new connection that sends only the (pid, secret key) it got
//! at startup. [`Cancels`] maps those to the connection's [`CancelToken`]. A statement notes
//! the token's epoch when it starts and stops with 57014 once the epoch moves on — both while
//! it is planned and executed and while its rows stream out, which is where DataFusion does
//! most of the work (pgwire's own handle only covers the first part, so it is not used).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::{FutureExt, Stream};
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use tokio::sync::Notify;

use crate::error::Error;
use crate::sync::Unpoisoned;

/// One connection's cancel signal.
#[derive(Debug, Default)]
pub struct CancelToken {
    epoch: AtomicU64,
    notify: Notify,
}

impl CancelToken {
    /// The current epoch: a statement started now is cancelled once the epoch passes it.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Stops the statement running now (and one starting at this instant).
    pub fn cancel(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Resolves once a cancel arrives after `start` (an [`epoch`](Self::epoch)).
    pub async fn cancelled_since(self: Arc<Self>, start: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.epoch() > start {
                return;
            }
            notified.await;
        }
    }
}

type Key = (i32, Vec<u8>);

/// Every connection's token, by the (pid, secret key) the client was given.
#[derive(Debug, Default)]
pub struct Cancels {
    tokens: Mutex<HashMap<Key, Weak<CancelToken>>>,
}

/// Removes a connection from [`Cancels`] when the connection ends (kept in its session
/// extensions).
pub struct Registration {
    key: Key,
    cancels: Weak<Cancels>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(c) = self.cancels.upgrade() {
            c.tokens.locked().remove(&self.key);
        }
    }
}

impl Cancels {
    /// Cancels what the session given `pid` and `secret` runs, if there is one.
    pub fn cancel(&self, pid: i32, secret: &[u8]) {
        let key = (pid, secret.to_vec());
        let token = self.tokens.locked().get(&key).and_then(Weak::upgrade);
        match token {
            Some(t) => {
                tracing::info!(pid, "cancel request");
                t.cancel();
            }
            None => tracing::debug!(pid, "cancel request for no known session"),
        }
    }

    /// Makes `token` reachable by a CancelRequest carrying `pid` and `secret`.
    pub fn register(self: &Arc<Self>, pid: i32, secret: Vec<u8>, token: &Arc<CancelToken>) -> Registration {
        let key = (pid, secret);
        self.tokens.locked().insert(key.clone(), Arc::downgrade(token));
        Registration { key, cancels: Arc::downgrade(self) }
    }
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.cancel(request.pid, &request.secret_key.to_bytes());
    }
}

/// Resolves at `deadline` (never without one): a statement's `statement_timeout`.
pub async fn expires(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Rows that stop with 57014 when the statement is cancelled or its `deadline` passes.
/// `gone` completes when the client disconnected: the rows stop being computed.
pub fn cancellable(
    stream: SendableRecordBatchStream,
    token: Arc<CancelToken>,
    start: u64,
    deadline: Option<tokio::time::Instant>,
    gone: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> SendableRecordBatchStream {
    Box::pin(Cancellable {
        inner: stream,
        cancelled: Some(Box::pin(token.cancelled_since(start))),
        expired: Box::pin(expires(deadline)),
        gone,
    })
}

struct Cancellable {
    inner: SendableRecordBatchStream,
    cancelled: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    expired: Pin<Box<dyn Future<Output = ()> + Send>>,
    gone: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Stream for Cancellable {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(cancelled) = self.cancelled.as_mut() else {
            return Poll::Ready(None);
        };
        let stopped = if cancelled.poll_unpin(cx).is_ready() {
            Some(Error::Canceled)
        } else if self.gone.poll_unpin(cx).is_ready() {
            tracing::info!("client disconnected; its running statement was stopped");
            Some(Error::Canceled)
        } else if self.expired.poll_unpin(cx).is_ready() {
            Some(Error::StatementTimeout)
        } else {
            None
        };
        if let Some(error) = stopped {
            self.cancelled = None;
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(error)))));
        }
        let next = self.inner.as_mut().poll_next(cx);
        if matches!(next, Poll::Ready(None)) {
            self.cancelled = None;
        }
        next
    }
}

impl RecordBatchStream for Cancellable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }
}

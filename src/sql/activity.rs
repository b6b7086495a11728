//! What every client session is doing, for `pg_stat_activity`, `pg_cancel_backend(pid)` and
//! `pg_terminate_backend(pid)`.
//!
//! The wire edge registers each logged-in connection as a [`Backend`] (its pid is the one the
//! client got in BackendKeyData, so a driver's cancel and `pg_cancel_backend` name the same
//! session) and marks each statement's start and end; the registry holds the backends weakly
//! through their [`Registration`], which removes them when the connection ends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::sync::Unpoisoned;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, TypeSignature, Volatility,
};

/// Microseconds since the epoch, now.
fn now_micros() -> i64 {
    crate::dataflow::clock::wall_micros()
}

/// What a session is doing now.
#[derive(Debug, Clone)]
pub struct Doing {
    /// `active` while a statement runs, else `idle`.
    pub state: &'static str,
    /// The statement running, or the last one.
    pub query: String,
    pub query_start: Option<i64>,
    pub state_change: i64,
}

/// One client connection.
pub struct Backend {
    pub pid: i32,
    pub user: String,
    pub application_name: String,
    pub client_addr: Option<SocketAddr>,
    /// Microseconds since the epoch.
    pub backend_start: i64,
    doing: Mutex<Doing>,
    cancel: Box<dyn Fn() + Send + Sync>,
    terminate: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("pid", &self.pid).field("user", &self.user).finish()
    }
}

impl Backend {
    /// A session of `user` from `client_addr`; `cancel` stops its running statement,
    /// `terminate` closes its connection.
    pub fn new(
        pid: i32,
        user: String,
        application_name: String,
        client_addr: Option<SocketAddr>,
        cancel: Box<dyn Fn() + Send + Sync>,
        terminate: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        let now = now_micros();
        Backend {
            pid,
            user,
            application_name,
            client_addr,
            backend_start: now,
            doing: Mutex::new(Doing { state: "idle", query: String::new(), query_start: None, state_change: now }),
            cancel,
            terminate,
        }
    }

    /// A statement starts.
    pub fn started(&self, query: String) {
        let now = now_micros();
        *self.doing.locked() = Doing { state: "active", query, query_start: Some(now), state_change: now };
    }

    /// The statement ended.
    pub fn finished(&self) {
        let mut doing = self.doing.locked();
        doing.state = "idle";
        doing.state_change = now_micros();
    }

    /// What it is doing.
    pub fn doing(&self) -> Doing {
        self.doing.locked().clone()
    }
}

/// Every logged-in session, by pid.
#[derive(Debug, Default)]
pub struct Activity {
    backends: Mutex<BTreeMap<i32, Arc<Backend>>>,
}

/// Keeps a backend listed; dropping it (the connection ended) removes it.
pub struct Registration {
    pid: i32,
    activity: std::sync::Weak<Activity>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(a) = self.activity.upgrade() {
            a.backends.locked().remove(&self.pid);
        }
    }
}

impl Activity {
    /// Lists `backend` until the registration is dropped.
    pub fn register(self: &Arc<Self>, backend: Arc<Backend>) -> Registration {
        let pid = backend.pid;
        self.backends.locked().insert(pid, backend);
        Registration { pid, activity: Arc::downgrade(self) }
    }

    /// Every session, by pid.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.backends.locked().values().cloned().collect()
    }

    /// The session with `pid`.
    pub fn get(&self, pid: i32) -> Option<Arc<Backend>> {
        self.backends.locked().get(&pid).cloned()
    }

    /// Cancels session `pid`'s running statement; false when there is no such session.
    pub fn cancel(&self, pid: i32) -> bool {
        self.get(pid).map(|b| (b.cancel)()).is_some()
    }

    /// Closes session `pid`'s connection; false when there is no such session.
    pub fn terminate(&self, pid: i32) -> bool {
        self.get(pid).map(|b| (b.terminate)()).is_some()
    }
}

/// Whether the asking session may signal sessions of the user given (Postgres: a superuser,
/// or a member of that user's role).
pub type MaySignal = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// `pg_cancel_backend(pid)` and `pg_terminate_backend(pid)` over `activity`, for one session:
/// true when the session exists (Postgres warns and returns false otherwise); 42501 for a
/// session of a user the caller may not signal.
pub fn functions(activity: &Arc<Activity>, may_signal: MaySignal) -> Vec<ScalarUDF> {
    let make = |name: &'static str, act: fn(&Activity, i32) -> bool| {
        let activity = Arc::downgrade(activity);
        let may_signal = may_signal.clone();
        // An integer literal is BIGINT here, a pid column INT: both are taken.
        let signature = Signature::one_of(
            vec![TypeSignature::Exact(vec![DataType::Int32]), TypeSignature::Exact(vec![DataType::Int64])],
            Volatility::Volatile,
        );
        ScalarUDF::from(SimpleScalarUDF::new_with_signature(
            name,
            signature,
            DataType::Boolean,
            Arc::new(move |args: &[ColumnarValue]| {
                let pids = ColumnarValue::values_to_arrays(args)?;
                let pids: ArrayRef = datafusion::arrow::compute::cast(&pids[0], &DataType::Int64)?;
                let pids = pids.as_any().downcast_ref::<Int64Array>().expect("cast to Int64");
                let Some(activity) = activity.upgrade() else {
                    return Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(vec![false; pids.len()]))));
                };
                let mut out = Vec::with_capacity(pids.len());
                for pid in pids.iter() {
                    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
                        out.push(None);
                        continue;
                    };
                    if let Some(target) = activity.get(pid) {
                        if !may_signal(&target.user) {
                            let what = if name == "pg_cancel_backend" { "cancel query" } else { "terminate process" };
                            return Err(datafusion::error::DataFusionError::External(Box::new(
                                crate::error::Error::InsufficientPrivilege {
                                    message: format!("permission denied to {what}"),
                                    hint: format!(
                                        "Only superusers and members of role \"{}\" may signal its sessions.",
                                        target.user
                                    ),
                                },
                            )));
                        }
                    }
                    out.push(Some(act(&activity, pid)));
                }
                Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
            }),
        ))
    };
    vec![make("pg_cancel_backend", Activity::cancel), make("pg_terminate_backend", Activity::terminate)]
}

/// The session's own pid (`pg_backend_pid()`), as given at login.
pub fn backend_pid(pid: Arc<std::sync::atomic::AtomicI32>) -> ScalarUDF {
    create_udf(
        "pg_backend_pid",
        vec![],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |_| {
            let pid = pid.load(std::sync::atomic::Ordering::Relaxed);
            Ok(ColumnarValue::Array(Arc::new(Int32Array::from(vec![pid]))))
        }),
    )
}

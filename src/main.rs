//! The `headwater` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use headwater::{Config, Server};

/// mimalloc rather than glibc's malloc: the commit path allocates and frees many small,
/// short-lived buffers (row keys, change batches, Arrow arrays) from a few threads, where
/// glibc spent ~20% of a view benchmark's time (`malloc_consolidate`, `_int_malloc`, bin
/// unlinking); see docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Headwater: a SQL-first streaming database that speaks the Postgres wire protocol.
///
/// `headwater serve` (or just `headwater` with the flags below) runs the server; connect with
/// `psql -h 127.0.0.1 -p 6875 -U anyone -d headwater`.
#[derive(Parser, Debug)]
#[command(name = "headwater", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server: Postgres wire protocol on --listen, state under --data-dir.
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address for Postgres clients (psql -h HOST -p PORT -d headwater).
    #[arg(long, env = "HEADWATER_LISTEN", default_value = "127.0.0.1:6875")]
    listen: String,
    /// Directory of the embedded state store (catalog and table rows); created if missing.
    #[arg(long, env = "HEADWATER_DATA_DIR", default_value = "./headwater-data")]
    data_dir: PathBuf,
    /// Time between checkpoints of the state fed by sources (`250ms`, `1s`, `5s`): the work a
    /// restart replays from the binlog. Local DML and DDL are durable when they return.
    #[arg(long, env = "HEADWATER_CHECKPOINT_INTERVAL", default_value = "1s", value_parser = headwater::parse_duration)]
    checkpoint_interval: std::time::Duration,
    /// Client authentication: `trust` (any user, no password) or `password` (SCRAM-SHA-256
    /// against the users of CREATE USER and --users-file; wrong password: 28P01).
    #[arg(long, env = "HEADWATER_AUTH", default_value = "trust")]
    auth: headwater::pgwire::AuthMode,
    /// File of `name:password` lines: users created (or their password updated) at start-up.
    #[arg(long, env = "HEADWATER_USERS_FILE")]
    users_file: Option<PathBuf>,
    /// PEM certificate (chain) for TLS; clients then may use sslmode=require. Needs --tls-key.
    #[arg(long, env = "HEADWATER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "HEADWATER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Address for Prometheus to scrape `GET /metrics` (e.g. `127.0.0.1:6876`); off by default.
    #[arg(long, env = "HEADWATER_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Most client sessions at once; one more gets 53300 "too many clients".
    #[arg(long, env = "HEADWATER_MAX_CONNECTIONS", default_value_t = 256)]
    max_connections: usize,
    /// Longest a client may take to log in (`30s`, `1m`); slower ones are disconnected.
    #[arg(long, env = "HEADWATER_AUTHENTICATION_TIMEOUT", default_value = "60s", value_parser = headwater::parse_duration)]
    authentication_timeout: std::time::Duration,
    /// The key that encrypts secrets (CREATE SECRET, connection passwords) at rest: a file
    /// holding 32 bytes in base64 or a passphrase. Default: `<data-dir>/secrets.key`, created
    /// 0600. `$HEADWATER_SECRETS_KEY` (the key itself) takes precedence.
    #[arg(long, env = "HEADWATER_SECRETS_KEY_FILE")]
    secrets_key_file: Option<PathBuf>,
    /// Operator memory (hash tables, sorts, aggregate states) one statement may hold: `4GB`,
    /// `512MB`, or a share of physical memory like `25%` (the default). Past it: 53200.
    #[arg(long, env = "HEADWATER_QUERY_MEMORY_LIMIT", default_value = "25%", value_parser = memory_size)]
    query_memory_limit: usize,
    /// Operator memory all statements together may hold (default `50%` of physical memory).
    #[arg(long, env = "HEADWATER_MEMORY_LIMIT", default_value = "50%", value_parser = memory_size)]
    memory_limit: usize,
    /// The process's memory ceiling (default `90%` of physical or cgroup memory): past it,
    /// work that makes memory grow (a view's join pairs, unnest, recursive rounds, a
    /// statement's operators) stops with 53200 instead of the server being killed.
    #[arg(long, env = "HEADWATER_PROCESS_MEMORY_LIMIT", default_value = "90%", value_parser = memory_size)]
    process_memory_limit: usize,
    /// Log filter: error, warn, info, debug, trace, or a tracing filter like `headwater=debug`.
    #[arg(long, env = "HEADWATER_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

/// A memory size flag (`4GB`, `25%` of physical memory).
fn memory_size(text: &str) -> Result<usize, String> {
    let physical = headwater::sql::memory::physical_memory().unwrap_or(8 << 30);
    headwater::sql::memory::parse_size(text, physical)
}

/// The log filter of `--log-level`, with the libraries that log statement text at debug
/// (sqlparser logs every statement it parses, passwords of CREATE USER and CREATE
/// CONNECTION included) held at info unless the filter names them.
fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    let mut filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|e| {
        eprintln!("invalid --log-level {level:?}: {e}; using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    for quiet in ["sqlparser", "datafusion_sql", "datafusion_pg_catalog", "pgwire", "mysql_async", "rdkafka"] {
        if !level.contains(quiet) {
            if let Ok(directive) = format!("{quiet}=info").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

fn main() -> std::process::ExitCode {
    headwater::alloc::tune();
    let cli = Cli::parse();
    let ServeArgs {
        listen,
        data_dir,
        checkpoint_interval,
        auth,
        users_file,
        tls_cert,
        tls_key,
        metrics_listen,
        max_connections,
        authentication_timeout,
        secrets_key_file,
        query_memory_limit,
        memory_limit,
        process_memory_limit,
        log_level,
    } = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    // Files the server creates (the store, images, the secrets key) are its own: 0600, in a
    // data directory that `state::datadir` keeps at 0700.
    // SAFETY: umask only sets the process's file-creation mask; no memory is involved.
    unsafe {
        libc::umask(0o077);
    }
    let filter = log_filter(&log_level);
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    // Deep statements (a sum of thousands of terms, thousands of UNION ALLs) are trees that
    // parsing, rewriting and planning walk recursively: threads get stacks far beyond the
    // 2 MiB default (reserved, touched only as deep as a statement goes), and the parser
    // refuses statements nested deeper than they can hold (54001, `sql::parser`).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(headwater::sql::STACK_BYTES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let tls = tls_cert.zip(tls_key);
    let config = Config {
        checkpoint_interval,
        auth,
        users_file,
        tls,
        metrics_listen,
        max_connections,
        authentication_timeout,
        secrets_key_file,
        query_memory_limit: Some(query_memory_limit),
        memory_limit: Some(memory_limit),
        process_memory_limit: Some(process_memory_limit),
        ..Config::new(listen, data_dir)
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("headwater: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> headwater::Result<()> {
    let mut server = Server::start(&config).await?;
    tokio::select! {
        _ = wait_for_signal() => {}
        e = server.failed() => return Err(headwater::Error::Storage(e)),
    }
    tracing::info!("shutting down");
    server.shutdown().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

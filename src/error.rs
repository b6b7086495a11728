//! The one error type of Headwater.
//!
//! Every layer returns [`Error`]; the pgwire edge turns it into an `ErrorResponse` with the
//! SQLSTATE from [`Error::sqlstate`] and the hint from [`Error::hint`]. Variants are grouped by
//! who has to act: the user (bad input, retry pointless), or the operator (storage trouble).

use crate::sync::Unpoisoned;
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while serving a statement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL text does not parse (42601). Fix the statement; retrying is pointless.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A table, view or other relation named in the statement does not exist (42P01).
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    /// A column named in the statement does not exist (42703).
    #[error("{0}")]
    UndefinedColumn(String),
    /// A non-relation catalog object (connection, setting, ...) does not exist (42704; a
    /// prepared statement 26000, a cursor 34000).
    #[error("{kind} \"{name}\" does not exist")]
    UndefinedObject { kind: &'static str, name: String },
    /// CREATE of a name that is already taken (42P07 for relations, 42P05 for a prepared
    /// statement, 42P03 for a cursor, 42710 otherwise).
    #[error("{kind} \"{name}\" already exists")]
    DuplicateObject { kind: &'static str, name: String },
    /// A write would create a second row with the same primary key (23505).
    #[error("duplicate key value violates unique constraint \"{table}_pkey\"")]
    UniqueViolation { table: String, key: String },
    /// A write was computed from rows another commit changed since they were read (40001):
    /// nothing was written; running the statement or transaction again succeeds.
    #[error("{0}")]
    SerializationFailure(String),
    /// A statement inside a transaction block after one of its statements failed (25P02).
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,
    /// A NULL was written into a NOT NULL (or primary key) column (23502).
    #[error("null value in column \"{column}\" of relation \"{table}\" violates not-null constraint")]
    NotNullViolation { table: String, column: String },
    /// An expression has a type that cannot be used where it is written (42804).
    #[error("{0}")]
    DatatypeMismatch(String),
    /// No function or operator takes these argument types (42883): `json = json`.
    #[error("{0}")]
    UndefinedFunction(String),
    /// Class 22, data exception: a value cannot be computed or converted (22P02, 22003,
    /// 22012 ...).
    #[error("{message}")]
    DataException { sqlstate: &'static str, message: String },
    /// Class 08, connection exception: the upstream server cannot be reached (08001) or
    /// the link to it failed (08000, 08006).
    #[error("{message}")]
    ConnectionException { sqlstate: &'static str, message: String },
    /// 21000 (class 21, cardinality violation): e.g. ON CONFLICT DO UPDATE meeting one row
    /// twice.
    #[error("{0}")]
    CardinalityViolation(String),
    /// 23502 found by DataFusion's own NOT NULL check, which names the column only (the
    /// DML layer turns it into [`Error::NotNullViolation`] with the table).
    #[error("null value in column \"{column}\" violates not-null constraint")]
    NullInColumn { column: String },
    /// 25P01 (class 25, invalid transaction state): SAVEPOINT and the like outside a block.
    #[error("{0}")]
    NoActiveTransaction(String),
    /// 3B001 (class 3B, savepoint exception): no savepoint of that name.
    #[error("{0}")]
    InvalidSavepoint(String),
    /// 0LP01 (class 0L, invalid grantor): a grant that cannot be made (circular role
    /// membership, an unknown privilege).
    #[error("{0}")]
    InvalidGrantOperation(String),
    /// 42P10 (class 42): a column list that names no unique key (ON CONFLICT, a sink's KEY).
    #[error("{0}")]
    InvalidColumnReference(String),
    /// 42701 (class 42): a column named twice.
    #[error("{0}")]
    DuplicateColumn(String),
    /// 53200 (class 53, insufficient resources): work stopped because the process reached its
    /// memory ceiling (`--process-memory-limit`, [`crate::alloc`]).
    #[error("{0}")]
    OutOfMemory(String),
    /// 54000 (class 54, program limit exceeded): a value past a size limit.
    #[error("{0}")]
    ProgramLimitExceeded(String),
    /// 55006 (class 55, object not in prerequisite state): the object is in use.
    #[error("{0}")]
    ObjectInUse(String),
    /// 57014 (class 57, operator intervention): a wait was given up (`real_time_recency`).
    #[error("{0}")]
    OperatorIntervention(String),
    /// DROP of an object that other objects still depend on, without CASCADE (2BP01).
    #[error("cannot drop {kind} {name} because other objects depend on it")]
    DependentObjects { kind: &'static str, name: String, dependents: Vec<String> },
    /// An object exists but has the wrong kind for the statement, e.g. DROP VIEW on a table (42809).
    #[error("\"{name}\" is not a {expected}")]
    WrongObjectType { name: String, expected: &'static str },
    /// Valid SQL that Headwater does not (yet) support (0A000).
    #[error("{0} is not supported")]
    FeatureNotSupported(String),
    /// An option or setting has an invalid value (22023).
    #[error("{0}")]
    InvalidParameterValue(String),
    /// Any other error raised by the DataFusion planner or executor, mapped by its cause.
    #[error("{}", root_message(.0))]
    Query(DataFusionError),
    /// The embedded state store failed (58030). The operator must look at the data dir.
    #[error("state store error: {0}")]
    Storage(String),
    /// A source cannot go on from where it is: the upstream server no longer has the binlog
    /// at its stored position (purged). Retrying cannot help; the user must re-snapshot
    /// (55000).
    #[error("{0}")]
    SourceLost(String),
    /// The client cancelled the statement (a cancel request, Ctrl-C in psql) (57014).
    #[error("canceling statement due to user request")]
    Canceled,
    /// The statement ran longer than the session's `statement_timeout` (57014).
    #[error("canceling statement due to statement timeout")]
    StatementTimeout,
    /// A statement nests deeper than the server walks (54001): thousands of chained operators,
    /// parentheses or set operations. Split it, or build the list with `IN (...)`/`VALUES`.
    #[error("{0}")]
    TooComplex(String),
    /// The session's role lacks a privilege the statement needs (42501): "permission denied
    /// for table t", "must be owner of ...". The hint names the grant that would allow it.
    #[error("{message}")]
    InsufficientPrivilege { message: String, hint: String },
    /// A bug: an invariant of Headwater itself does not hold (XX000).
    #[error("internal error: {0}")]
    Internal(String),
    /// Maintaining a materialized view failed (creating it, or computing it again); the
    /// SQLSTATE and hint are the cause's.
    #[error("materialized view \"{view}\": {cause}")]
    InView { view: String, cause: Box<Error> },
    /// A read of a materialized view whose query fails on some rows of its inputs (a view's
    /// errors are data: `dataflow::errors`); the SQLSTATE is the first error's (22012 for a
    /// division by zero, ...).
    #[error("{}", view_errors_message(.0))]
    ViewErrored(std::sync::Arc<ViewErrors>),
}

/// A runtime error of a materialized view's query on one row of its input, kept as data
/// until the row goes away (`dataflow::errors`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct RowError {
    /// The SQLSTATE of the error.
    pub sqlstate: String,
    /// The error's message, as a query would report it ("division by zero").
    pub message: String,
    /// Where: the expression and the row it failed on.
    pub context: String,
}

/// What a read of an errored view (or of a view reading one) reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewErrors {
    /// The view that holds the errors (the one read, or a view it reads).
    pub view: String,
    /// How many rows fail.
    pub count: i64,
    /// The first of them.
    pub first: RowError,
}

fn view_errors_message(e: &ViewErrors) -> String {
    let more = match e.count {
        1 => String::new(),
        n => format!("; {} more row(s) fail too", n - 1),
    };
    format!("{} (materialized view \"{}\", {}{})", e.first.message, e.view, e.first.context, more)
}

/// `code` as a `&'static str`: the SQLSTATEs of errors read back from the store are interned
/// (there are a few hundred codes at most; anything that is not a code is XX000).
pub fn intern_sqlstate(code: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static CODES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        return "XX000";
    }
    let mut codes = CODES.get_or_init(Default::default).locked();
    if let Some(c) = codes.get(code) {
        return c;
    }
    let leaked: &'static str = Box::leak(code.to_string().into_boxed_str());
    codes.insert(leaked);
    leaked
}

impl Error {
    /// The Postgres SQLSTATE that clients see for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Syntax(_) => "42601",
            Error::UndefinedTable(_) => "42P01",
            Error::UndefinedColumn(_) => "42703",
            Error::UndefinedObject { kind, .. } => match *kind {
                "prepared statement" => "26000",
                "cursor" => "34000",
                _ => "42704",
            },
            Error::DuplicateObject { kind, .. } => match *kind {
                "table" | "view" | "relation" | "materialized view" => "42P07",
                "prepared statement" => "42P05",
                "cursor" => "42P03",
                _ => "42710",
            },
            Error::UniqueViolation { .. } => "23505",
            Error::NotNullViolation { .. } => "23502",
            Error::SerializationFailure(_) => "40001",
            Error::InFailedTransaction => "25P02",
            Error::DatatypeMismatch(_) => "42804",
            Error::UndefinedFunction(_) => "42883",
            Error::DataException { sqlstate, .. } | Error::ConnectionException { sqlstate, .. } => sqlstate,
            Error::CardinalityViolation(_) => "21000",
            Error::NullInColumn { .. } => "23502",
            Error::NoActiveTransaction(_) => "25P01",
            Error::InvalidSavepoint(_) => "3B001",
            Error::InvalidGrantOperation(_) => "0LP01",
            Error::InvalidColumnReference(_) => "42P10",
            Error::DuplicateColumn(_) => "42701",
            Error::OutOfMemory(_) => "53200",
            Error::ProgramLimitExceeded(_) => "54000",
            Error::ObjectInUse(_) => "55006",
            Error::OperatorIntervention(_) => "57014",
            Error::DependentObjects { .. } => "2BP01",
            Error::WrongObjectType { .. } => "42809",
            Error::FeatureNotSupported(_) => "0A000",
            Error::InvalidParameterValue(_) => "22023",
            Error::Query(e) => datafusion_sqlstate(e),
            Error::Storage(_) => "58030",
            Error::SourceLost(_) => "55000",
            Error::Canceled | Error::StatementTimeout => "57014",
            Error::TooComplex(_) => "54001",
            Error::InsufficientPrivilege { .. } => "42501",
            Error::Internal(_) => "XX000",
            Error::InView { cause, .. } => cause.sqlstate(),
            Error::ViewErrored(e) => intern_sqlstate(&e.first.sqlstate),
        }
    }

    /// A sentence that tells the user what to do next, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::UndefinedTable(_) => Some("Run SHOW TABLES to list the tables and views.".into()),
            Error::DuplicateObject { kind: "prepared statement", name } => {
                Some(format!("DEALLOCATE \"{name}\" first, or PREPARE under another name."))
            }
            Error::DuplicateObject { kind: "cursor", name } => {
                Some(format!("CLOSE \"{name}\" first, or DECLARE another name."))
            }
            Error::DuplicateObject { .. } => Some("Use CREATE ... IF NOT EXISTS to ignore an existing object.".into()),
            Error::UniqueViolation { key, .. } => Some(format!("Key {key} already exists.")),
            Error::SerializationFailure(_) => Some("Nothing was written; run the statement or transaction again.".into()),
            Error::InFailedTransaction => {
                Some("Run ROLLBACK (or ROLLBACK TO SAVEPOINT) to end the failed transaction.".into())
            }
            Error::DependentObjects { kind: "role", dependents, .. } => Some(format!(
                "{}; give them another owner (ALTER ... OWNER TO) or drop them first.",
                dependents.join(", ")
            )),
            Error::DependentObjects { dependents, .. } => {
                Some(format!("{} depend(s) on it; use DROP ... CASCADE to drop them too.", dependents.join(", ")))
            }
            Error::Storage(_) => Some("Check the data directory (--data-dir): disk space and permissions.".into()),
            Error::TooComplex(_) => Some(
                "Split the statement, or write long lists as IN (...) or VALUES rather than chains of operators.".into(),
            ),
            Error::InsufficientPrivilege { hint, .. } => Some(hint.clone()),
            Error::Query(e) if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) => Some(
                "The statement needed more memory than --query-memory-limit allows (or than --memory-limit has left \
                 beside the other statements); narrow it, or raise the limit."
                    .into(),
            ),
            Error::OutOfMemory(_) => Some(
                "A result this large does not fit in the server's memory: narrow the query (a join condition, a \
                 filter), or raise --process-memory-limit."
                    .into(),
            ),
            Error::Internal(_) => Some("This is a bug in Headwater; please report it with the statement.".into()),
            Error::Query(_) if self.sqlstate() == "42883" => Some(
                "No function or operator matches the given name and argument types; you might need to add explicit \
                 type casts."
                    .into(),
            ),
            Error::StatementTimeout => Some(
                "The session's statement_timeout stopped it; SET statement_timeout = 0 (or a longer one) to let it \
                 run longer."
                    .into(),
            ),
            Error::InView { view, cause } => Some(cause.hint().unwrap_or_else(|| {
                format!("The write was refused so that the view stays correct; fix the row or DROP MATERIALIZED VIEW {view}.")
            })),
            Error::ViewErrored(e) if e.first.sqlstate == "53200" => Some(format!(
                "The view's result did not fit under the server's memory ceiling; it is computed again when its \
                 inputs change. DROP MATERIALIZED VIEW {} if it cannot fit, or raise --process-memory-limit.",
                e.view
            )),
            Error::ViewErrored(e) => Some(format!(
                "The view's query fails on rows of its inputs; the error goes away by itself when they are deleted or \
                 updated. SELECT * FROM hw_catalog.views shows it; to ignore such rows, change the query (NULLIF, CASE) \
                 and create the view again (DROP MATERIALIZED VIEW {})."
                , e.view
            )),
            _ => None,
        }
    }

    /// Shorthand for [`Error::DuplicateObject`].
    pub fn duplicate(kind: &'static str, name: impl Into<String>) -> Self {
        Error::DuplicateObject { kind, name: name.into() }
    }

    /// `cause`, raised while maintaining materialized view `view`.
    pub fn view_failed(view: &str, cause: Error) -> Self {
        match cause {
            already @ Error::InView { .. } => already,
            cause => Error::InView { view: view.to_string(), cause: Box::new(cause) },
        }
    }

    /// Shorthand for [`Error::UndefinedObject`].
    pub fn undefined(kind: &'static str, name: impl Into<String>) -> Self {
        Error::UndefinedObject { kind, name: name.into() }
    }
}

impl From<ParserError> for Error {
    fn from(e: ParserError) -> Self {
        let msg = match e {
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
            ParserError::RecursionLimitExceeded => "statement nests too deeply".to_string(),
        };
        Error::Syntax(msg)
    }
}

impl From<DataFusionError> for Error {
    /// Recognises the DataFusion errors that have a Postgres twin and words them like
    /// Postgres; the rest keep DataFusion's message (without its wrapper prefixes).
    fn from(e: DataFusionError) -> Self {
        let root = e.find_root();
        let text = root.to_string();
        if let Some(rest) = text.split("Column '").nth(1).filter(|_| text.contains("non-nullable")) {
            // DataFusion checks NOT NULL itself when a plan's schema says so.
            let column = rest.split('\'').next().unwrap_or_default();
            return Error::NullInColumn { column: column.to_string() };
        }
        // `FROM t, unnest(t.xs)` / `CROSS JOIN LATERAL unnest(...)`: DataFusion plans neither.
        if text.contains("OuterReferenceColumn") || text.contains("table function 'unnest' not found") {
            return Error::FeatureNotSupported(
                "unnest(...) in FROM reading another FROM item's columns (a LATERAL call: write it in the select \
                 list, SELECT t.id, unnest(t.xs) AS x FROM t)"
                    .into(),
            );
        }
        match root {
            DataFusionError::Plan(msg) if msg.contains("not found") && msg.starts_with("table '") => {
                let quoted = msg.split('\'').nth(1).unwrap_or_default();
                Error::UndefinedTable(quoted.rsplit('.').next().unwrap_or(quoted).to_string())
            }
            DataFusionError::SchemaError(se, _) => {
                if let datafusion::common::SchemaError::FieldNotFound { field, .. } = se.as_ref() {
                    return Error::UndefinedColumn(format!("column \"{}\" does not exist", field.name()));
                }
                Error::Query(e)
            }
            DataFusionError::ArrowError(ae, _) => match ae.as_ref() {
                ArrowError::DivideByZero => {
                    Error::DataException { sqlstate: "22012", message: "division by zero".into() }
                }
                // Checked integer arithmetic (`sql::overflow`): Postgres's words.
                ArrowError::ArithmeticOverflow(_) => {
                    Error::DataException { sqlstate: "22003", message: "integer out of range".into() }
                }
                _ => Error::Query(e),
            },
            DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
                Some(Error::Storage(m)) => Error::Storage(m.clone()),
                Some(Error::Internal(m)) => Error::Internal(m.clone()),
                Some(Error::Canceled) => Error::Canceled,
                Some(Error::StatementTimeout) => Error::StatementTimeout,
                Some(Error::ViewErrored(v)) => Error::ViewErrored(v.clone()),
                Some(Error::FeatureNotSupported(m)) => Error::FeatureNotSupported(m.clone()),
                Some(Error::DataException { sqlstate, message }) => {
                    Error::DataException { sqlstate, message: message.clone() }
                }
                Some(Error::ProgramLimitExceeded(m)) => Error::ProgramLimitExceeded(m.clone()),
                Some(Error::UndefinedFunction(m)) => Error::UndefinedFunction(m.clone()),
                Some(Error::InsufficientPrivilege { message, hint }) => {
                    Error::InsufficientPrivilege { message: message.clone(), hint: hint.clone() }
                }
                _ => Error::Query(e),
            },
            _ => Error::Query(e),
        }
    }
}

/// DataFusion's message for the root cause, without "Error during planning: " and friends.
fn root_message(e: &DataFusionError) -> String {
    let mut msg = e.find_root().to_string();
    for prefix in [
        "Error during planning: ",
        "Execution error: ",
        "Arrow error: ",
        "Cast error: ",
        "Compute error: ",
        "Parser error: ",
        "Schema error: ",
        "Invalid argument error: ",
        "This feature is not implemented: ",
        "SQL error: ",
        "Internal error: ",
    ] {
        while let Some(rest) = msg.strip_prefix(prefix) {
            msg = rest.to_string();
        }
    }
    msg.lines().next().unwrap_or_default().to_string()
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<ArrowError> for Error {
    fn from(e: ArrowError) -> Self {
        Error::from(DataFusionError::ArrowError(Box::new(e), None))
    }
}

/// Maps a DataFusion error to the SQLSTATE a Postgres user expects for the same mistake.
fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::SQL(_, _) => "42601",
        DataFusionError::SchemaError(se, _) => {
            use datafusion::common::SchemaError;
            match se.as_ref() {
                SchemaError::FieldNotFound { .. } => "42703",
                SchemaError::AmbiguousReference { .. } => "42702",
                SchemaError::DuplicateQualifiedField { .. } | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
            }
        }
        DataFusionError::Plan(msg) => plan_sqlstate(msg),
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ArrowError(ae, _) => match ae.as_ref() {
            ArrowError::DivideByZero => "22012",
            ArrowError::ArithmeticOverflow(_) => "22003",
            ArrowError::CastError(m) if m.contains("overflow") || m.contains("too large") => "22003",
            ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
            ArrowError::ComputeError(m) if m.contains("verflow") => "22003",
            // A NUMERIC(p,s) value past its precision (Postgres: "numeric field overflow").
            ArrowError::InvalidArgumentError(m)
                if m.contains("too large to store") || m.contains("too small to store") =>
            {
                "22003"
            }
            // A plan shape DataFusion builds an empty batch for (a window partitioned by a
            // constant subquery): refused, not a crash (found by tests/integration/sql_fuzz.rs).
            ArrowError::InvalidArgumentError(m) if m.contains("must either specify a row count") => "0A000",
            // A function's own error raised inside an Arrow kernel.
            ArrowError::ExternalError(inner) => match inner.downcast_ref::<DataFusionError>() {
                Some(e) => datafusion_sqlstate(e),
                None => typing_sqlstate(&inner.to_string()).unwrap_or("XX000"),
            },
            other => typing_sqlstate(&other.to_string()).unwrap_or("XX000"),
        },
        DataFusionError::Execution(msg) => {
            if msg.contains("Divide by zero") || msg.contains("division by zero") {
                "22012"
            } else if msg.contains("verflow") {
                "22003"
            } else if msg.contains("Cannot cast") || msg.contains("Error parsing") {
                "22P02"
            } else if msg.contains("too large to store") || msg.contains("too small to store") {
                "22003"
            } else if msg.contains("factorial of a negative number") {
                "2201E"
            } else if msg.contains("start position must be") {
                "22011"
            } else if msg.contains("no valid cast exists") {
                // A VALUES row whose type fits no column (Postgres: "column ... is of type ...
                // but expression is of type ...").
                "42804"
            } else if msg.contains("NTILE requires a positive integer") {
                // Postgres: "argument of ntile must be greater than zero".
                "22014"
            } else {
                // Execution errors are raised by functions and operators about the values
                // they were given (DataFusion's own bugs are `Internal`): a value the
                // statement supplied is wrong, Postgres's 22023.
                typing_sqlstate(msg).unwrap_or("22023")
            }
        }
        // DataFusion reports some type errors of what a user wrote as internal ones (found
        // by tests/integration/sql_fuzz.rs); the rest stay XX000: they are bugs.
        DataFusionError::Internal(msg) => typing_sqlstate(msg).unwrap_or("XX000"),
        DataFusionError::External(inner) => typing_sqlstate(&inner.to_string()).unwrap_or("XX000"),
        DataFusionError::Configuration(_) => "22023",
        DataFusionError::ResourcesExhausted(_) => "53200",
        _ => "XX000",
    }
}

/// The SQLSTATE of a type error in what the user wrote, recognised by DataFusion's words:
/// arguments no function or operator accepts (Postgres: 42883 "function ... does not exist",
/// "operator does not exist"), or a window frame over a type DataFusion cannot range over.
fn typing_sqlstate(msg: &str) -> Option<&'static str> {
    const NO_SUCH_SIGNATURE: [&str; 9] = [
        "Failed to coerce types",
        "coercion failed",
        "failed to match any signature",
        "unsupported data type",
        "Unsupported data type",
        "does not support",
        "Invalid arithmetic operation",
        "Expected a signed integer literal",
        "Invalid string/binary operation",
    ];
    if NO_SUCH_SIGNATURE.iter().any(|words| msg.contains(words)) {
        Some("42883")
    } else if msg.contains("Cannot run range queries on datatype") {
        Some("0A000")
    } else if msg.contains("non UTF-8 data") || msg.contains("invalid utf-8") {
        // bytea read as text (Postgres: "invalid byte sequence for encoding").
        Some("22021")
    } else if msg.contains("regex parse error") {
        Some("2201B")
    } else if msg.contains("square root of a negative number") {
        Some("2201F")
    } else if msg.contains("Expected an integer value") {
        Some("22023")
    } else if msg.contains("invalid Unicode scalar value") {
        // chr() of a negative or too large code point (Postgres: 54000).
        Some("54000")
    } else {
        None
    }
}

fn plan_sqlstate(msg: &str) -> &'static str {
    let m = msg.to_ascii_lowercase();
    if m.contains("table") && m.contains("not found") {
        "42P01"
    } else if m.contains("invalid function") || m.contains("no function matches") {
        "42883"
    } else if m.contains("coerce")
        || m.contains("coercion")
        || m.contains("common type")
        || m.contains("type mismatch")
        || m.contains("cannot infer")
        || m.contains("does not support")
        || m.contains("unsupported")
    {
        "42804"
    } else if m.contains("cannot cast") {
        "42846"
    } else if m.contains("unique expression names") {
        // A view (or a nested select) naming two columns alike: Postgres's duplicate_column.
        "42701"
    } else {
        "42601"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_errors_have_postgres_sqlstates() {
        assert_eq!(Error::UndefinedTable("t".into()).sqlstate(), "42P01");
        assert_eq!(Error::duplicate("table", "t").sqlstate(), "42P07");
        assert_eq!(Error::duplicate("connection", "c").sqlstate(), "42710");
        let e = Error::UniqueViolation { table: "t".into(), key: "id=1".into() };
        assert_eq!(e.sqlstate(), "23505");
        assert!(e.hint().unwrap().contains("id=1"));
    }

    #[test]
    fn datafusion_errors_are_mapped_by_cause() {
        let e = Error::from(DataFusionError::Plan("table 'headwater.public.x' not found".into()));
        assert_eq!(e.sqlstate(), "42P01");
        assert_eq!(e.to_string(), "relation \"x\" does not exist");
        let e = Error::from(ArrowError::DivideByZero);
        assert_eq!(e.sqlstate(), "22012");
        let e = Error::Query(DataFusionError::Plan("Cannot infer common argument type".into()));
        assert_eq!(e.sqlstate(), "42804");
    }
}

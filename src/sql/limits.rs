//! Limits on what one statement may hold, so that no statement can exhaust a thread's stack
//! (issue 30: a 4 KB `1+1+...+1` aborted the process): the stack each query thread gets, and
//! the nesting a statement may reach (54001 past it).

use datafusion::sql::sqlparser::ast::{Expr, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{Error, Result};

/// Stack reserved for each thread that parses and plans statements (set on the server's
/// runtime): syntax trees are walked recursively (cloned, rewritten, converted to plans,
/// dropped), about 1 KiB per level in a release build and a few in a debug one; the limits
/// below keep a statement within it.
pub const STACK_BYTES: usize = 64 << 20;

/// The deepest expression a statement may hold (`1 + 1 + ... + 1` chains one level per
/// operator). Postgres refuses deep statements with 54001 too (its limit is its stack,
/// `max_stack_depth`); here the planner's work also grows with the square of the depth, so
/// the limit bounds planning time as well as the stack.
pub const MAX_NESTING: usize = 1_000;

/// Tokens that may add a level to the syntax tree, counted over a whole statement text before
/// it is parsed, so that no tree deeper than the stack holds is ever built.
const MAX_DEEPENING_TOKENS: usize = 20_000;

fn too_complex(what: &str) -> Error {
    Error::TooComplex(format!("statement too complex: {what}"))
}

/// Refuses `sql` when it holds more than [`MAX_DEEPENING_TOKENS`] operators, parentheses and
/// set operations (54001). A text shorter than that cannot, so the usual statement costs one
/// comparison; longer ones are tokenized and counted.
pub(super) fn check_tokens(sql: &str) -> Result<()> {
    if sql.len() <= MAX_DEEPENING_TOKENS {
        return Ok(());
    }
    let tokens = datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| Error::Syntax(e.to_string()))?;
    let deepening = tokens
        .iter()
        .filter(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => matches!(
                w.keyword,
                Keyword::AND
                    | Keyword::OR
                    | Keyword::NOT
                    | Keyword::CASE
                    | Keyword::UNION
                    | Keyword::EXCEPT
                    | Keyword::INTERSECT
                    | Keyword::SELECT
            ),
            Token::Word(_) | Token::Number(..) | Token::SingleQuotedString(_) | Token::Comma => false,
            Token::Whitespace(_) | Token::SemiColon | Token::RParen | Token::RBracket | Token::Period => false,
            // Operators, opening parentheses and brackets, casts.
            _ => true,
        })
        .count();
    if deepening > MAX_DEEPENING_TOKENS {
        return Err(too_complex(&format!(
            "{deepening} operators, parentheses and set operations (at most {MAX_DEEPENING_TOKENS})"
        )));
    }
    Ok(())
}

/// Refuses a statement whose expressions nest deeper than [`MAX_NESTING`] (54001).
pub(super) fn check_depth(stmt: &Statement) -> Result<()> {
    use datafusion::sql::sqlparser::ast::{Visit, Visitor};
    use std::ops::ControlFlow;
    struct Depth(usize);
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.0 += 1;
            if self.0 > MAX_NESTING {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.0 -= 1;
            ControlFlow::Continue(())
        }
    }
    match stmt.visit(&mut Depth(0)) {
        ControlFlow::Break(()) => Err(too_complex(&format!("expressions nest more than {MAX_NESTING} levels deep"))),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The largest value a function may build: Postgres's 1 GB (`MaxAllocSize`), past which
/// `repeat`, `lpad`, `rpad` fail with 54000 "requested length too large" (issue 30:
/// `repeat('x', 2000000000)` drove the server past 6 GB).
pub const MAX_VALUE_BYTES: u64 = (1 << 30) - 1;

/// DataFusion's `repeat`, `lpad` or `rpad`, refusing before it allocates a value larger than
/// [`MAX_VALUE_BYTES`].
#[derive(Debug)]
pub struct SizeChecked {
    inner: std::sync::Arc<datafusion::logical_expr::ScalarUDF>,
    /// `lpad`/`rpad` (the length argument is in characters, up to 4 bytes each) rather than
    /// `repeat` (the count multiplies the string's bytes).
    pad: bool,
}

impl PartialEq for SizeChecked {
    fn eq(&self, other: &Self) -> bool {
        self.inner.name() == other.inner.name()
    }
}

impl Eq for SizeChecked {}

impl std::hash::Hash for SizeChecked {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state)
    }
}

impl SizeChecked {
    /// The three functions, checked.
    pub fn functions() -> Vec<datafusion::logical_expr::ScalarUDF> {
        use datafusion::functions::{string, unicode};
        [(string::repeat(), false), (unicode::lpad(), true), (unicode::rpad(), true)]
            .into_iter()
            .map(|(inner, pad)| datafusion::logical_expr::ScalarUDF::new_from_impl(SizeChecked { inner, pad }))
            .collect()
    }

    fn check(&self, args: &[datafusion::logical_expr::ColumnarValue]) -> datafusion::error::Result<()> {
        use datafusion::arrow::array::{Array, Int64Array};
        use datafusion::arrow::datatypes::DataType;
        let (Some(text), Some(n)) = (args.first(), args.get(1)) else { return Ok(()) };
        let arrays = datafusion::logical_expr::ColumnarValue::values_to_arrays(&[text.clone(), n.clone()])?;
        let lengths = datafusion::arrow::compute::cast(&arrays[1], &DataType::Int64)?;
        let Some(lengths) = lengths.as_any().downcast_ref::<Int64Array>() else { return Ok(()) };
        let texts = datafusion::arrow::compute::cast(&arrays[0], &DataType::LargeUtf8)?;
        let texts = texts.as_any().downcast_ref::<datafusion::arrow::array::LargeStringArray>();
        for i in 0..lengths.len() {
            if lengths.is_null(i) || lengths.value(i) <= 0 {
                continue;
            }
            let n = lengths.value(i) as u64;
            let bytes = if self.pad {
                n.saturating_mul(4)
            } else {
                let len = texts.filter(|t| !t.is_null(i)).map_or(0, |t| t.value(i).len() as u64);
                n.saturating_mul(len)
            };
            if bytes > MAX_VALUE_BYTES {
                return Err(datafusion::error::DataFusionError::External(Box::new(Error::ProgramLimitExceeded(
                    "requested length too large".into(),
                ))));
            }
        }
        Ok(())
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for SizeChecked {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        self.inner.signature()
    }

    fn return_type(
        &self,
        arg_types: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(
        &self,
        arg_types: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::error::Result<Vec<datafusion::arrow::datatypes::DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        self.check(&args.args)?;
        self.inner.invoke_with_args(args)
    }
}

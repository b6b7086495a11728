//! `jsonb_agg`/`json_agg` (every value, NULL as JSON null, in input order) and
//! `jsonb_object_agg`/`json_object_agg` (key/value pairs). No rows: NULL, as in Postgres.
//! The partial state is the JSON text built so far, merged by concatenation.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};
use datafusion::scalar::ScalarValue;

use super::functions::to_json_value;
use super::text_of;
use crate::error::Error;
use crate::types::json::Json;
use crate::types::PgText;

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonAgg {
    name: &'static str,
    output: PgText,
    /// `*_object_agg`: (key, value) pairs.
    object: bool,
    signature: Signature,
}

fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl AggregateUDFImpl for JsonAgg {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field(&self, _args: &[FieldRef]) -> datafusion::error::Result<FieldRef> {
        Ok(Arc::new(Field::new(self.name, DataType::Utf8, true).with_metadata(self.output.metadata())))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> datafusion::error::Result<Box<dyn Accumulator>> {
        let arity = if self.object { 2 } else { 1 };
        if args.exprs.len() != arity {
            return Err(external(Error::UndefinedFunction(format!(
                "function {} takes {arity} argument{}",
                self.name,
                if arity == 1 { "" } else { "s" }
            ))));
        }
        Ok(Box::new(JsonAccumulator {
            fields: args.expr_fields.to_vec(),
            object: self.object,
            jsonb: self.output == PgText::Jsonb,
            items: Vec::new(),
            entries: Vec::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> datafusion::error::Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(format!("{}_state", args.name), DataType::Utf8, true))])
    }
}

#[derive(Debug)]
struct JsonAccumulator {
    fields: Vec<FieldRef>,
    object: bool,
    jsonb: bool,
    items: Vec<Json>,
    entries: Vec<(String, Json)>,
}

impl JsonAccumulator {
    fn value(&self) -> Option<Json> {
        if self.object {
            (!self.entries.is_empty()).then(|| Json::Object(self.entries.clone()))
        } else {
            (!self.items.is_empty()).then(|| Json::Array(self.items.clone()))
        }
    }
}

impl Accumulator for JsonAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        // The arguments come first; an `ORDER BY`'s keys may follow them.
        let at = usize::from(self.object);
        for i in 0..rows {
            let value = ScalarValue::try_from_array(&values[at], i)?;
            let mut json = to_json_value(&value, self.fields.get(at)).map_err(external)?.unwrap_or(Json::Null);
            if self.jsonb {
                json.normalize();
            }
            if self.object {
                let key = ScalarValue::try_from_array(&values[0], i)?;
                let key = text_of(&key).ok_or_else(|| {
                    external(Error::DataException { sqlstate: "22004", message: "field name must not be null".into() })
                })?;
                self.entries.push((key, json));
            } else {
                self.items.push(json);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        let Some(mut v) = self.value() else { return Ok(ScalarValue::Utf8(None)) };
        if self.jsonb {
            v.normalize();
        }
        Ok(ScalarValue::Utf8(Some(v.to_text())))
    }

    fn size(&self) -> usize {
        // A rough figure: the texts dominate.
        std::mem::size_of_val(self) + (self.items.len() + self.entries.len()) * 64
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Utf8(self.value().map(|v| v.to_text()))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        for i in 0..states[0].len() {
            let Some(text) = text_of(&ScalarValue::try_from_array(&states[0], i)?) else { continue };
            match Json::parse(&text) {
                Ok(Json::Array(items)) => self.items.extend(items),
                Ok(Json::Object(entries)) => self.entries.extend(entries),
                _ => return Err(DataFusionError::Internal(format!("{}: bad partial state", "json_agg"))),
            }
        }
        Ok(())
    }
}

/// The aggregates.
pub fn all() -> Vec<AggregateUDF> {
    let agg = |name: &'static str, output: PgText, object: bool| {
        AggregateUDF::new_from_impl(JsonAgg {
            name,
            output,
            object,
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    };
    vec![
        agg("jsonb_agg", PgText::Jsonb, false),
        agg("json_agg", PgText::Json, false),
        agg("jsonb_object_agg", PgText::Jsonb, true),
        agg("json_object_agg", PgText::Json, true),
    ]
}

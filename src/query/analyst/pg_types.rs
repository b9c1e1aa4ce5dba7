//! Results in the types Postgres clients read.
//!
//! A column's Arrow type and the Postgres type announced for it in `RowDescription` must
//! agree on the wire: a client that asked for binary results reads exactly the bytes the
//! announced type has. Some Arrow types have no Postgres type of their own — `Int8` (one
//! byte) is announced as `int2`, which is two bytes in binary — so before a result is
//! described or sent, its plan gets a last projection that casts each such column to the
//! Arrow type of what is announced ([`shape`]). `csat_score` is the lake's one `Int8`
//! column; expressions produce the others.
//!
//! Rows are then encoded by arrow-pg, one value at a time, with nulls written here first:
//! arrow-pg reads some types (intervals) without looking at their null mask.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Column, DFSchema};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast};
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::encoder::{Encoder, encode_value};
use datafusion_postgres::pgwire;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyEncoder, DataRowEncoder, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

/// The Arrow type a column of type `t` is sent as, when it is not `t` itself.
pub fn wire_type(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Int8 | DataType::UInt8 => Some(DataType::Int16),
        DataType::UInt16 => Some(DataType::Int32),
        DataType::UInt32 => Some(DataType::Int64),
        DataType::UInt64 => Some(DataType::Decimal128(20, 0)),
        DataType::Float16 => Some(DataType::Float32),
        // An untyped NULL is `text` in Postgres (`SELECT NULL` describes as text).
        DataType::Null => Some(DataType::Utf8),
        DataType::Dictionary(_, value) => Some(wire_type(value).unwrap_or(*value.clone())),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            let element = wire_type(item.data_type())?;
            Some(DataType::List(Arc::new(Field::new(
                item.name(),
                element,
                true,
            ))))
        }
        _ => None,
    }
}

/// `plan` with a last projection casting every column whose type is sent as another
/// ([`wire_type`]); unchanged when none is.
pub fn shape(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    let schema: &DFSchema = plan.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| wire_type(f.data_type()).is_some())
    {
        return Ok(plan);
    }
    let exprs: Vec<Expr> = schema
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::from((qualifier, field)));
            match wire_type(field.data_type()) {
                Some(t) => cast(column, t).alias(field.name()),
                None => column,
            }
        })
        .collect();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

/// The `RowDescription` fields of a (shaped) result, in the formats the client asked for.
pub fn fields(
    schema: &Schema,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<Vec<FieldInfo>> {
    arrow_schema_to_pg_fields(schema, format, Some(options))
}

/// One value into any of pgwire's encoders (a data row or a COPY line), nulls first.
fn put<E: Encoder>(
    encoder: &mut E,
    column: &Arc<dyn Array>,
    row: usize,
    arrow_field: &Field,
    pg_field: &FieldInfo,
) -> PgWireResult<()> {
    if column.is_null(row) {
        encoder.encode_field(&None::<i16>, pg_field)
    } else {
        encode_value(encoder, column, row, arrow_field, pg_field)
    }
}

/// The data rows of one batch.
pub fn data_rows(fields: &Arc<Vec<FieldInfo>>, batch: &RecordBatch) -> Vec<PgWireResult<DataRow>> {
    let mut encoder = DataRowEncoder::new(Arc::clone(fields));
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|row| {
            for (i, column) in batch.columns().iter().enumerate() {
                put(&mut encoder, column, row, schema.field(i), &fields[i])?;
            }
            Ok(encoder.take_row())
        })
        .collect()
}

/// The COPY lines of one batch.
pub fn copy_lines(
    encoder: &mut CopyEncoder,
    fields: &[FieldInfo],
    batch: &RecordBatch,
) -> PgWireResult<Vec<CopyData>> {
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|row| {
            for (i, column) in batch.columns().iter().enumerate() {
                put(encoder, column, row, schema.field(i), &fields[i])?;
            }
            Ok(encoder.take_copy())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int8Array, IntervalMonthDayNanoArray};
    use arrow::datatypes::IntervalMonthDayNano;
    use datafusion::prelude::SessionContext;
    use pgwire::api::results::FieldFormat;

    #[tokio::test]
    async fn int8_is_sent_as_two_byte_int2() {
        let ctx = SessionContext::new();
        let batch = RecordBatch::try_from_iter([(
            "csat_score",
            Arc::new(Int8Array::from(vec![Some(5), None, Some(-3)])) as Arc<dyn Array>,
        )])
        .unwrap();
        ctx.register_batch("t", batch).unwrap();
        let plan = ctx
            .sql("SELECT csat_score FROM t")
            .await
            .unwrap()
            .into_unoptimized_plan();
        let shaped = shape(plan).unwrap();
        assert_eq!(
            shaped.schema().field(0).data_type(),
            &DataType::Int16,
            "{shaped}"
        );
        assert_eq!(shaped.schema().field(0).name(), "csat_score");
        let batches = ctx
            .execute_logical_plan(shaped)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let schema = batches[0].schema();
        let f = Arc::new(
            fields(
                &schema,
                &Format::UnifiedBinary,
                Arc::new(FormatOptions::default()),
            )
            .unwrap(),
        );
        assert_eq!(f[0].datatype(), &pgwire::api::Type::INT2);
        assert_eq!(f[0].format(), FieldFormat::Binary);
        let rows: Vec<DataRow> = data_rows(&f, &batches[0])
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        // length-prefixed values: 2 bytes, then -1 for NULL, then 2 bytes.
        assert_eq!(&rows[0].data[..], &[0, 0, 0, 2, 0, 5]);
        assert_eq!(&rows[1].data[..], &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(&rows[2].data[..], &[0, 0, 0, 2, 0xff, 0xfd]);
    }

    #[test]
    fn a_null_interval_is_null() {
        let array: Arc<dyn Array> = Arc::new(IntervalMonthDayNanoArray::from(vec![
            None,
            Some(IntervalMonthDayNano::new(0, 1, 0)),
        ]));
        let batch = RecordBatch::try_from_iter([("i", array)]).unwrap();
        let f = Arc::new(
            fields(
                &batch.schema(),
                &Format::UnifiedText,
                Arc::new(FormatOptions::default()),
            )
            .unwrap(),
        );
        let rows: Vec<DataRow> = data_rows(&f, &batch)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(&rows[0].data[..], &[0xff, 0xff, 0xff, 0xff]);
        assert_ne!(&rows[1].data[..], &[0xff, 0xff, 0xff, 0xff]);
    }
}

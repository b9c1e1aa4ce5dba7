//! The catalog Postgres clients read, beyond what datafusion-postgres's `pg_catalog` has.
//!
//! - `information_schema` as PostgreSQL has it: type names as Postgres spells them
//!   (`timestamp with time zone`, `udt_name = 'timestamptz'`), so Grafana finds time
//!   columns and Metabase maps every field; and the constraint tables Metabase and DBeaver
//!   read, empty because the lake has no keys. (DataFusion's own `information_schema`
//!   names Arrow types; the HTTP path keeps it.)
//! - functions clients call while connecting and browsing: `version()` shaped as
//!   PostgreSQL's, `format()`, `col_description()`/`obj_description()` (the lake keeps no
//!   comments: NULL), `current_setting()`, and what psql's `\df` asks of functions.
//!
//! Everything here describes the session's own tables; nothing reads a file.

use std::sync::{Arc, Weak};

use arrow::array::{Array, ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{CatalogProvider, MemTable, SchemaProvider, TableProvider};
use datafusion::common::{Column, Result, ScalarValue, exec_err};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion_postgres::arrow_pg::datatypes::{
    PG_CHAR_KEY, PG_OID_ALIAS_KEY, into_pg_type, pg_type_for_alias_kind,
};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::oid_field;
use datafusion_postgres::pgwire::api::Type;

use super::pg_session;
use super::pg_types::wire_type;

/// The catalog (database) the session's schemas live in.
const CATALOG: &str = "supportlake";

/// Installs the functions and `information_schema` into a Postgres session.
pub fn install(ctx: &SessionContext) {
    let text = |v: Option<String>| ScalarValue::Utf8(v);
    let fixed: [(&str, &[usize], ScalarValue); 17] = [
        ("version", &[0], text(Some(pg_session::version_text()))),
        // The lake keeps no comments.
        ("col_description", &[2], text(None)),
        ("obj_description", &[1, 2], text(None)),
        ("shobj_description", &[2], text(None)),
        // Nor indexes, views defined in SQL, triggers, rules, sequences or functions of
        // its own (`pg_proc` lists the built-in ones for their names only).
        ("pg_get_indexdef", &[1, 3], text(None)),
        ("pg_get_viewdef", &[1, 2], text(None)),
        ("pg_get_triggerdef", &[1, 2], text(None)),
        ("pg_get_ruledef", &[1, 2], text(None)),
        ("pg_get_serial_sequence", &[2], text(None)),
        ("pg_get_function_arguments", &[1], text(Some(String::new()))),
        (
            "pg_get_function_identity_arguments",
            &[1],
            text(Some(String::new())),
        ),
        ("pg_get_function_result", &[1], text(None)),
        (
            "pg_function_is_visible",
            &[1],
            ScalarValue::Boolean(Some(true)),
        ),
        ("pg_type_is_visible", &[1], ScalarValue::Boolean(Some(true))),
        (
            "pg_collation_is_visible",
            &[1],
            ScalarValue::Boolean(Some(true)),
        ),
        ("pg_is_in_recovery", &[0], ScalarValue::Boolean(Some(false))),
        // asyncpg's pool calls it when it hands a connection back; there are no locks.
        ("pg_advisory_unlock_all", &[0], text(None)),
    ];
    for (name, arities, value) in fixed {
        ctx.register_udf(ScalarUDF::new_from_impl(Fixed::new(name, arities, value)));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(CurrentSetting {
        signature: Signature::one_of(
            vec![TypeSignature::Any(1), TypeSignature::Any(2)],
            Volatility::Stable,
        ),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(Helper {
        name: "set_config",
        signature: Signature::any(3, Volatility::Volatile),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(Helper {
        name: "to_regtype",
        signature: Signature::any(1, Volatility::Stable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(Helper {
        name: "prefix_elements",
        signature: Signature::any(2, Volatility::Immutable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(Helper {
        name: "_pg_expandarray",
        signature: Signature::any(1, Volatility::Immutable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(Helper {
        name: "array_subscripts",
        signature: Signature::one_of(
            vec![TypeSignature::Any(2), TypeSignature::Any(3)],
            Volatility::Immutable,
        ),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(Helper {
        name: "json_build_object",
        signature: Signature::variadic_any(Volatility::Stable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(Format {
        signature: Signature::variadic_any(Volatility::Stable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(RegclassOid {
        signature: Signature::any(2, Volatility::Stable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(InList {
        signature: Signature::user_defined(Volatility::Immutable),
    }));
    for (name, arities) in [
        ("has_table_privilege", &[2, 3][..]),
        ("has_any_column_privilege", &[2, 3]),
        ("has_column_privilege", &[3, 4]),
        ("has_schema_privilege", &[2, 3]),
        ("has_database_privilege", &[2, 3]),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(HasPrivilege::new(name, arities)));
    }
    if let Some(catalog) = ctx.catalog(CATALOG) {
        if let Some(inner) = catalog.schema("pg_catalog") {
            let _ = catalog.register_schema("pg_catalog", Arc::new(PgCatalog { inner }));
        }
        let schema = Arc::new(InformationSchema {
            catalog: Arc::downgrade(&catalog),
        });
        let _ = catalog.register_schema("information_schema", schema);
    }
}

/// A function whose value does not depend on its arguments: what the lake does not have
/// (comments, definitions) or always is.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Fixed {
    name: String,
    signature: Signature,
    value: ScalarValue,
}

impl Fixed {
    fn new(name: &str, arities: &[usize], value: ScalarValue) -> Fixed {
        let forms = arities
            .iter()
            .map(|&n| {
                if n == 0 {
                    TypeSignature::Nullary
                } else {
                    TypeSignature::Any(n)
                }
            })
            .collect();
        Fixed {
            name: name.to_owned(),
            signature: Signature::one_of(forms, Volatility::Stable),
            value,
        }
    }
}

impl ScalarUDFImpl for Fixed {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

/// `current_setting(name [, missing_ok])`: the value a new connection has (the function
/// cannot see one connection's `SET`s).
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let names = args.args[0].to_array(n)?;
        let names = arrow::compute::cast(&names, &DataType::Utf8)?;
        let names = names
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("text".into()))?;
        let missing_ok = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(Some(b)))) => *b,
            _ => false,
        };
        let mut out = Vec::with_capacity(n);
        for name in names.iter() {
            match name.map(|n| pg_session::default_setting(&n.to_lowercase())) {
                None => out.push(None),
                Some(Some(v)) => out.push(Some(v)),
                Some(None) if missing_ok => out.push(None),
                Some(None) => {
                    return exec_err!(
                        "unrecognized configuration parameter \"{}\"",
                        name.unwrap_or_default()
                    );
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

/// Small functions clients call while connecting:
/// - `set_config(name, value, is_local)` (asyncpg turns `jit` off before it introspects
///   types): nothing to set; returns the value, as Postgres does;
/// - `to_regtype(name)` (psycopg's `TypeInfo.fetch`, which SQLAlchemy uses to look for
///   `hstore`): the oid of a built-in type by name, NULL for any other;
/// - `json_build_object(k, v, …)` (SQLAlchemy's column reflection): a JSON object as text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Helper {
    name: &'static str,
    signature: Signature,
}

/// The oid of a built-in type by its name (`int4`, `_int4`, `timestamptz`).
fn type_oid(name: &str) -> Option<i32> {
    static BY_NAME: std::sync::LazyLock<std::collections::HashMap<String, u32>> =
        std::sync::LazyLock::new(|| {
            (0..20_000u32)
                .filter_map(Type::from_oid)
                .map(|t| (t.name().to_owned(), t.oid()))
                .collect()
        });
    let name = name.trim().trim_start_matches("pg_catalog.");
    let name = match name {
        "integer" | "int" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "timestamp with time zone" => "timestamptz",
        "timestamp without time zone" | "timestamp" => "timestamp",
        other => other,
    };
    BY_NAME.get(name).and_then(|o| i32::try_from(*o).ok())
}

/// A value as JSON: numbers and booleans as themselves, the rest as strings.
fn json_value(a: &ArrayRef, text: &StringArray, row: usize) -> serde_json::Value {
    if a.is_null(row) {
        return serde_json::Value::Null;
    }
    let t = text.value(row);
    match a.data_type() {
        DataType::Boolean => serde_json::Value::Bool(t == "true"),
        d if d.is_numeric() => serde_json::from_str(t).unwrap_or_else(|_| t.into()),
        _ => t.into(),
    }
}

impl ScalarUDFImpl for Helper {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(match self.name {
            "to_regtype" => DataType::Int32,
            "_pg_expandarray" => expanded_type(),
            "prefix_elements" => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            "array_subscripts" => {
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true)))
            }
            _ => DataType::Utf8,
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(n))
            .collect::<Result<Vec<_>>>()?;
        if self.name == "_pg_expandarray" {
            return Ok(ColumnarValue::Array(expand(&arrays[0])?));
        }
        if self.name == "array_subscripts" {
            return Ok(ColumnarValue::Array(subscripts(&arrays)?));
        }
        if self.name == "prefix_elements" {
            return Ok(ColumnarValue::Array(prefix_elements(
                &arrays[0], &arrays[1],
            )?));
        }
        let texts = arrays
            .iter()
            .map(|a| Ok(arrow::compute::cast(a, &DataType::Utf8)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let texts: Vec<&StringArray> = texts
            .iter()
            .filter_map(|a| a.as_any().downcast_ref::<StringArray>())
            .collect();
        let out: ArrayRef = match self.name {
            "set_config" => match texts.get(1) {
                Some(v) => Arc::new((*v).clone()),
                None => return exec_err!("set_config(name, value, is_local)"),
            },
            "to_regtype" => Arc::new(Int32Array::from_iter((0..n).map(|r| {
                texts
                    .first()
                    .and_then(|t| (!t.is_null(r)).then(|| t.value(r)))
                    .and_then(type_oid)
            }))),
            _ => {
                if arrays.len() % 2 != 0 {
                    return exec_err!("argument list must have even number of elements");
                }
                Arc::new(StringArray::from_iter_values((0..n).map(|r| {
                    let mut o = serde_json::Map::new();
                    for pair in (0..arrays.len()).step_by(2) {
                        let key = if texts[pair].is_null(r) {
                            String::new()
                        } else {
                            texts[pair].value(r).to_owned()
                        };
                        o.insert(key, json_value(&arrays[pair + 1], texts[pair + 1], r));
                    }
                    serde_json::Value::Object(o).to_string()
                })))
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// `prefix_elements(prefix, list)`: every element of the list with the prefix before it
/// (what psql builds with `array(SELECT 'toast.' || x FROM unnest(list) x)`).
fn prefix_elements(prefix: &ArrayRef, list: &ArrayRef) -> Result<ArrayRef> {
    let item = Arc::new(Field::new("item", DataType::Utf8, true));
    let prefix = arrow::compute::cast(prefix, &DataType::Utf8)?;
    let prefix = prefix
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("text".into()))?;
    let list = match list.data_type() {
        DataType::Null => {
            return Ok(arrow::array::new_null_array(
                &DataType::List(item),
                list.len(),
            ));
        }
        DataType::List(_) => list
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("list".into()))?,
        other => return exec_err!("prefix_elements expects an array, got {other}"),
    };
    let mut builder = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
    for row in 0..list.len() {
        if list.is_null(row) {
            builder.append_null();
            continue;
        }
        let values = arrow::compute::cast(&list.value(row), &DataType::Utf8)?;
        let values = values
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("text".into()))?;
        let p = if prefix.is_null(row) {
            None
        } else {
            Some(prefix.value(row))
        };
        for v in values.iter() {
            builder
                .values()
                .append_option(p.zip(v).map(|(p, v)| format!("{p}{v}")));
        }
        builder.append(true);
    }
    Ok(Arc::new(builder.finish()))
}

/// `array_subscripts(list, dim [, reverse])`: the subscripts of a list's elements, 1 to
/// its length (backwards when `reverse`), as a list; none for a dimension other than 1
/// (the lists here have one), NULL for a NULL list. Under `unnest` it is Postgres's
/// `generate_subscripts`, whose rows SQLAlchemy pairs with `unnest(indkey)` to keep the
/// order of an index's columns. (Postgres's `int2vector` columns count from 0; the lists
/// here count from 1, as their subscripts `indkey[1]` do.)
fn subscripts(args: &[ArrayRef]) -> Result<ArrayRef> {
    let [list, dim, rest @ ..] = args else {
        return exec_err!("generate_subscripts(array, dim [, reverse])");
    };
    let lengths: Vec<Option<usize>> = match list.data_type() {
        DataType::Null => vec![None; list.len()],
        DataType::List(_) => {
            let l = list
                .as_any()
                .downcast_ref::<arrow::array::ListArray>()
                .ok_or_else(|| datafusion::error::DataFusionError::Internal("list".into()))?;
            (0..l.len())
                .map(|r| (!l.is_null(r)).then(|| l.value_length(r) as usize))
                .collect()
        }
        other => return exec_err!("generate_subscripts expects an array, got {other}"),
    };
    let dim = arrow::compute::cast(dim, &DataType::Int64)?;
    let dim = dim
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("dim".into()))?;
    let reverse = match rest.first() {
        Some(r) => Some(arrow::compute::cast(r, &DataType::Boolean)?),
        None => None,
    };
    let reverse = reverse
        .as_ref()
        .and_then(|r| r.as_any().downcast_ref::<arrow::array::BooleanArray>());
    let mut builder = arrow::array::ListBuilder::new(arrow::array::Int32Builder::new());
    for (row, len) in lengths.into_iter().enumerate() {
        let (Some(len), false) = (len, dim.is_null(row)) else {
            builder.append_null();
            continue;
        };
        if dim.value(row) == 1 {
            let backwards = reverse.is_some_and(|r| !r.is_null(row) && r.value(row));
            let len = i32::try_from(len).unwrap_or(i32::MAX);
            if backwards {
                builder
                    .values()
                    .append_slice(&(1..=len).rev().collect::<Vec<_>>());
            } else {
                builder
                    .values()
                    .append_slice(&(1..=len).collect::<Vec<_>>());
            }
        }
        builder.append(true);
    }
    Ok(Arc::new(builder.finish()))
}

/// `_pg_expandarray`'s result: each element `x` of a list with its position `n`.
fn expanded_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(
            vec![
                Field::new("x", DataType::Int32, true),
                Field::new("n", DataType::Int32, true),
            ]
            .into(),
        ),
        true,
    )))
}

fn expand(list: &ArrayRef) -> Result<ArrayRef> {
    let DataType::List(_) = list.data_type() else {
        return exec_err!("_pg_expandarray expects an array, got {}", list.data_type());
    };
    let list = list
        .as_any()
        .downcast_ref::<arrow::array::ListArray>()
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("list".into()))?;
    let values = arrow::compute::cast(list.values(), &DataType::Int32)?;
    let offsets = list.value_offsets();
    let mut positions = vec![0i32; values.len()];
    for i in 0..list.len() {
        for k in offsets[i]..offsets[i + 1] {
            if let Some(p) = usize::try_from(k).ok().and_then(|k| positions.get_mut(k)) {
                *p = k - offsets[i] + 1;
            }
        }
    }
    let positions = Int32Array::from(positions);
    let DataType::List(item) = expanded_type() else {
        return exec_err!("_pg_expandarray type");
    };
    let DataType::Struct(fields) = item.data_type().clone() else {
        return exec_err!("_pg_expandarray type");
    };
    let structs = arrow::array::StructArray::try_new(
        fields,
        vec![values, Arc::new(positions) as ArrayRef],
        None,
    )?;
    Ok(Arc::new(arrow::array::ListArray::try_new(
        item,
        list.offsets().clone(),
        Arc::new(structs),
        list.nulls().cloned(),
    )?))
}

/// datafusion-postgres's `pg_catalog`, with `pg_settings` listing what clients look up in
/// it (PgJDBC reads `max_index_keys` before it asks for foreign keys).
#[derive(Debug)]
struct PgCatalog {
    inner: Arc<dyn SchemaProvider>,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }
    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case("pg_settings") {
            return SETTINGS
                .table(
                    pg_session::settings()
                        .into_iter()
                        .map(|(name, value)| {
                            let mut row = vec![V::S(Some(name)), V::S(Some(value.clone()))];
                            row.extend([
                                NULL,
                                s("Client Connection Defaults"),
                                NULL,
                                NULL,
                                s("user"),
                                s("string"),
                                s("default"),
                                NULL,
                                NULL,
                                NULL,
                            ]);
                            row.extend([
                                V::S(Some(value.clone())),
                                V::S(Some(value)),
                                NULL,
                                V::I(None),
                                s("f"),
                            ]);
                            row
                        })
                        .collect(),
                )
                .map(Some);
        }
        if name.eq_ignore_ascii_case("pg_aggregate")
            && let (Some(aggregates), Some(functions)) = (
                self.inner.table("pg_aggregate").await?,
                self.inner.table("pg_proc").await?,
            )
        {
            return aggregates_by_oid(aggregates, functions).await.map(Some);
        }
        let lists = ARRAY_COLUMNS
            .iter()
            .find(|(t, _)| name.eq_ignore_ascii_case(t))
            .map(|(_, c)| *c);
        let table = match (lists, self.inner.table(name).await?) {
            (Some(columns), Some(table)) => Some(with_lists(table, columns).await?),
            (_, table) => table,
        };
        match (table, null_columns(name)) {
            (Some(table), nulls) if !nulls.is_empty() => with_nulls(name, table, nulls).map(Some),
            (table, _) => Ok(table),
        }
    }
}

/// Every row of a built-in catalog table (they are `MemTable`s), as one batch.
async fn all_rows(table: &Arc<dyn TableProvider>) -> Result<Option<RecordBatch>> {
    let Some(mem) = table.downcast_ref::<MemTable>() else {
        return Ok(None);
    };
    let mut batches = Vec::new();
    for partition in &mem.batches {
        batches.extend(partition.read().await.iter().cloned());
    }
    Ok(Some(arrow::compute::concat_batches(
        &table.schema(),
        &batches,
    )?))
}

/// A text column of a batch, by name.
fn text_column(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    let Some(c) = batch.column_by_name(name) else {
        return exec_err!("the catalog table has no column {name}");
    };
    let c = arrow::compute::cast(c, &DataType::Utf8)?;
    c.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("text".into()))
}

/// A function's name as a `regproc` column shows it (`pg_catalog.avg`), without schema.
fn function_name(shown: &str) -> String {
    name_parts(shown)
        .ok()
        .and_then(|mut p| p.pop())
        .unwrap_or_else(|| shown.to_owned())
}

/// A function of `pg_proc`: (oid, argument types, kind).
type Function<'a> = (i32, Vec<String>, &'a str);

/// `pg_aggregate` with `aggfnoid` the oid of the aggregate's function in `pg_proc`, as
/// PostgreSQL's `regproc` column holds it, so that it joins with `pg_proc.oid` (Grafana
/// lists the aggregates of a type so). datafusion-postgres's copy shows the function's
/// name instead, which overloads share (there are seven `avg`s). Each row is given one of
/// the aggregates of its name: the one whose arguments are what its transition function
/// takes after the state, when that singles one out; the others in order of oid.
async fn aggregates_by_oid(
    aggregates: Arc<dyn TableProvider>,
    functions: Arc<dyn TableProvider>,
) -> Result<Arc<dyn TableProvider>> {
    let (Some(aggs), Some(procs)) = (all_rows(&aggregates).await?, all_rows(&functions).await?)
    else {
        return Ok(aggregates);
    };
    let Some(oids) = procs.column_by_name("oid") else {
        return Ok(aggregates);
    };
    let oids = arrow::compute::cast(oids, &DataType::Int32)?;
    let oids = oids
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("oid".into()))?;
    let (names, kinds, arguments) = (
        text_column(&procs, "proname")?,
        text_column(&procs, "prokind")?,
        text_column(&procs, "proargtypes")?,
    );
    // name -> (oid, argument types, kind), in order of oid
    let mut by_name: std::collections::HashMap<&str, Vec<Function>> =
        std::collections::HashMap::new();
    for i in 0..procs.num_rows() {
        if oids.is_null(i) || names.is_null(i) {
            continue;
        }
        by_name.entry(names.value(i)).or_default().push((
            oids.value(i),
            elements(arguments.value(i)),
            kinds.value(i),
        ));
    }
    for list in by_name.values_mut() {
        list.sort_by_key(|(oid, _, _)| *oid);
    }
    let (functions_of, transitions) = (
        text_column(&aggs, "aggfnoid")?,
        text_column(&aggs, "aggtransfn")?,
    );
    let mut rows_of: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for row in 0..aggs.num_rows() {
        if !functions_of.is_null(row) {
            rows_of
                .entry(function_name(functions_of.value(row)))
                .or_default()
                .push(row);
        }
    }
    let mut found: Vec<Option<i32>> = vec![None; aggs.num_rows()];
    for (name, rows) in &rows_of {
        let candidates: Vec<&Function> = by_name
            .get(name.as_str())
            .map(|l| l.iter().filter(|(_, _, k)| *k == "a").collect())
            .unwrap_or_default();
        let mut taken = vec![false; candidates.len()];
        for &row in rows {
            // The transition function, when its name is not overloaded.
            let transition = (!transitions.is_null(row))
                .then(|| by_name.get(function_name(transitions.value(row)).as_str()))
                .flatten()
                .filter(|l| l.len() == 1)
                .map(|l| &l[0].1);
            let Some(args) = transition.and_then(|t| t.get(1..)) else {
                continue;
            };
            let matching: Vec<usize> = (0..candidates.len())
                .filter(|&i| !taken[i] && candidates[i].1.as_slice() == args)
                .collect();
            if let [i] = matching.as_slice() {
                taken[*i] = true;
                found[row] = Some(candidates[*i].0);
            }
        }
        let mut rest = (0..candidates.len()).filter(|&i| !taken[i]);
        for &row in rows {
            if found[row].is_none() {
                found[row] = rest.next().map(|i| candidates[i].0);
            }
        }
    }
    let schema = aggs.schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.name() == "aggfnoid" {
                oid_field::oid_field("aggfnoid", oid_field::kind::REGPROC, true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let columns: Vec<ArrayRef> = aggs
        .schema()
        .fields()
        .iter()
        .zip(aggs.columns())
        .map(|(f, c)| {
            if f.name() == "aggfnoid" {
                Arc::new(Int32Array::from(found.clone())) as ArrayRef
            } else {
                Arc::clone(c)
            }
        })
        .collect();
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// Columns of Postgres's catalog tables that datafusion-postgres's lack and clients read,
/// NULL in every row as they are for a table without them set: `pg_class.reloptions`
/// (storage options; psql's `\d+` lists them) and `pg_class.relacl` (privileges granted
/// on the table itself).
fn null_columns(table: &str) -> Vec<Field> {
    let text_list = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    if table.eq_ignore_ascii_case("pg_class") {
        vec![
            Field::new("relacl", text_list(), true),
            Field::new("reloptions", text_list(), true),
        ]
    } else {
        Vec::new()
    }
}

/// A catalog table with the NULL columns it lacks after its own, as a view over it (the
/// built-in tables are computed when read, so they are not copied).
fn with_nulls(
    name: &str,
    table: Arc<dyn TableProvider>,
    nulls: Vec<Field>,
) -> Result<Arc<dyn TableProvider>> {
    let own = table.schema();
    let mut columns: Vec<datafusion::prelude::Expr> = own
        .fields()
        .iter()
        .map(|f| datafusion::prelude::col(Column::new(Some(name), f.name())))
        .collect();
    for n in &nulls {
        if own.field_with_name(n.name()).is_err() {
            columns.push(
                datafusion::prelude::lit(ScalarValue::try_from(n.data_type())?).alias(n.name()),
            );
        }
    }
    let plan = LogicalPlanBuilder::scan(name, provider_as_source(table), None)?
        .project(columns)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// Array columns of the built-in catalog tables that datafusion-postgres keeps as text
/// (`"1 2"` for an `int2vector`, `"[1, 2]"` for an array), by table: (column, element
/// type). Clients index them (`conkey[1]`) and unnest them, so here they are lists.
const ARRAY_COLUMNS: &[(&str, &[(&str, DataType)])] = &[
    (
        "pg_index",
        &[
            ("indkey", DataType::Int16),
            ("indcollation", DataType::Int32),
            ("indclass", DataType::Int32),
            ("indoption", DataType::Int16),
        ],
    ),
    (
        "pg_constraint",
        &[
            ("conkey", DataType::Int16),
            ("confkey", DataType::Int16),
            ("conpfeqop", DataType::Int32),
            ("conppeqop", DataType::Int32),
            ("conffeqop", DataType::Int32),
            ("conexclop", DataType::Int32),
            ("confdelsetcols", DataType::Int16),
        ],
    ),
    (
        "pg_proc",
        &[
            ("proargtypes", DataType::Int32),
            ("proallargtypes", DataType::Int32),
            ("proargmodes", DataType::Utf8),
            ("proargnames", DataType::Utf8),
        ],
    ),
];

/// The elements of an array kept as text: `"1 2"`, `"[1, 2]"`, `"['i', 'o']"`, `"{a,b}"`.
fn elements(text: &str) -> Vec<String> {
    let inner = text
        .trim()
        .trim_start_matches(['[', '{'])
        .trim_end_matches([']', '}']);
    let parts: Vec<&str> = if inner.contains(',') {
        inner.split(',').collect()
    } else {
        inner.split_whitespace().collect()
    };
    parts
        .into_iter()
        .map(|p| p.trim().trim_matches(['\'', '"']).to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// A list column from a text column of arrays.
fn list_column(text: &StringArray, element: &DataType) -> Result<ArrayRef> {
    let values: Vec<Option<Vec<String>>> = text
        .iter()
        .map(|v| v.filter(|v| !v.trim().is_empty()).map(elements))
        .collect();
    let strings = StringArray::from_iter(
        values
            .iter()
            .flat_map(|v| v.iter().flatten().map(|e| Some(e.as_str()))),
    );
    let items = arrow::compute::cast(&strings, element)?;
    let offsets = arrow::buffer::OffsetBuffer::from_lengths(
        values.iter().map(|v| v.as_ref().map_or(0, Vec::len)),
    );
    let nulls = arrow::buffer::NullBuffer::from_iter(values.iter().map(Option::is_some));
    Ok(Arc::new(arrow::array::ListArray::try_new(
        Arc::new(Field::new("item", element.clone(), true)),
        offsets,
        items,
        Some(nulls),
    )?))
}

/// A built-in catalog table with its array columns as lists.
async fn with_lists(
    table: Arc<dyn TableProvider>,
    columns: &[(&str, DataType)],
) -> Result<Arc<dyn TableProvider>> {
    let Some(mem) = table.downcast_ref::<MemTable>() else {
        return Ok(table);
    };
    let schema = table.schema();
    let converted = |field: &Field| {
        columns
            .iter()
            .find(|(c, _)| c == field.name())
            .filter(|_| field.data_type() == &DataType::Utf8)
            .map(|(_, t)| t.clone())
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match converted(f) {
            Some(t) => Field::new(
                f.name(),
                DataType::List(Arc::new(Field::new("item", t, true))),
                true,
            ),
            None => f.as_ref().clone(),
        })
        .collect();
    let new_schema = Arc::new(Schema::new(fields));
    let mut partitions = Vec::new();
    for partition in &mem.batches {
        let mut batches = Vec::new();
        for batch in partition.read().await.iter() {
            let arrays = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(
                    |(a, f)| match (converted(f), a.as_any().downcast_ref::<StringArray>()) {
                        (Some(t), Some(text)) => list_column(text, &t),
                        _ => Ok(Arc::clone(a)),
                    },
                )
                .collect::<Result<Vec<_>>>()?;
            batches.push(RecordBatch::try_new(Arc::clone(&new_schema), arrays)?);
        }
        partitions.push(batches);
    }
    Ok(Arc::new(MemTable::try_new(new_schema, partitions)?))
}

const SETTINGS: Spec = Spec {
    columns: &[
        "name",
        "setting",
        "unit",
        "category",
        "short_desc",
        "extra_desc",
        "context",
        "vartype",
        "source",
        "min_val",
        "max_val",
        "enumvals",
        "boot_val",
        "reset_val",
        "sourcefile",
        "sourceline",
        "pending_restart",
    ],
    integers: &["sourceline"],
};

/// `format(template, args…)` as Postgres has it: `%s` (the value as text, NULL as
/// nothing), `%I` (an identifier, quoted when it needs to be), `%L` (a literal, NULL as
/// `NULL`), `%%`, and argument positions (`%2$s`). Widths are not supported.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

fn quote_ident(s: &str) -> String {
    let bare = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        s.to_owned()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

fn quote_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// One row of `format`: the template and the arguments as text.
fn format_row(template: &str, args: &[Option<&str>]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        let kind = loop {
            match chars.next() {
                Some(k @ ('s' | 'I' | 'L' | '%')) => break k,
                Some(d) if d.is_ascii_digit() || d == '$' => spec.push(d),
                Some(other) => {
                    return exec_err!("unrecognized format() type specifier \"{other}\"");
                }
                None => return exec_err!("unterminated format() type specifier"),
            }
        };
        if kind == '%' && spec.is_empty() {
            out.push('%');
            continue;
        }
        let index = match spec.strip_suffix('$') {
            Some(n) => match n.parse::<usize>() {
                Ok(n) if n >= 1 => n - 1,
                _ => {
                    return exec_err!(
                        "format specifies argument 0, but arguments are numbered from 1"
                    );
                }
            },
            None if spec.is_empty() => next,
            None => return exec_err!("format() widths are not supported"),
        };
        next = index + 1;
        let Some(value) = args.get(index) else {
            return exec_err!("too few arguments for format()");
        };
        match (kind, value) {
            ('s', v) => out.push_str(v.unwrap_or("")),
            ('I', Some(v)) => out.push_str(&quote_ident(v)),
            ('I', None) => {
                return exec_err!("null values cannot be formatted as an SQL identifier");
            }
            ('L', Some(v)) => out.push_str(&quote_literal(v)),
            ('L', None) => out.push_str("NULL"),
            _ => return exec_err!("unrecognized format() type specifier"),
        }
    }
    Ok(out)
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let texts = args
            .args
            .iter()
            .map(|a| -> Result<ArrayRef> {
                let a = a.to_array(n)?;
                Ok(arrow::compute::cast(&a, &DataType::Utf8)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let texts: Vec<&StringArray> = texts
            .iter()
            .filter_map(|a| a.as_any().downcast_ref::<StringArray>())
            .collect();
        let Some((template, rest)) = texts.split_first() else {
            return exec_err!("format() needs a template");
        };
        let mut out = Vec::with_capacity(n);
        for row in 0..n {
            if template.is_null(row) {
                out.push(None);
                continue;
            }
            let values: Vec<Option<&str>> = rest
                .iter()
                .map(|a| (!a.is_null(row)).then(|| a.value(row)))
                .collect();
            out.push(Some(format_row(template.value(row), &values)?));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

/// `has_table_privilege`, `has_any_column_privilege`, `has_column_privilege`,
/// `has_schema_privilege` and `has_database_privilege`, answered for a read-only session:
/// what reading needs is held (`SELECT` on tables, views and columns, `USAGE` on schemas,
/// `CONNECT` on the database), nothing that writes or creates is, and no privilege may
/// be granted on (`WITH GRANT OPTION`). The privilege is the last argument, read as
/// PostgreSQL reads it: case-insensitive, several separated by commas (true when any is
/// held), an unknown one an error. The user and the object are not looked at: every
/// user reads every relation alike here.
#[derive(Debug, PartialEq, Eq, Hash)]
struct HasPrivilege {
    name: &'static str,
    signature: Signature,
}

impl HasPrivilege {
    fn new(name: &'static str, arities: &[usize]) -> HasPrivilege {
        HasPrivilege {
            name,
            signature: Signature::one_of(
                arities.iter().map(|&n| TypeSignature::Any(n)).collect(),
                Volatility::Stable,
            ),
        }
    }

    /// (the privileges held, every privilege this kind of object has).
    fn kinds(&self) -> (&'static [&'static str], &'static [&'static str]) {
        match self.name {
            "has_table_privilege" => (
                &["SELECT"],
                &[
                    "SELECT",
                    "INSERT",
                    "UPDATE",
                    "DELETE",
                    "TRUNCATE",
                    "REFERENCES",
                    "TRIGGER",
                    "MAINTAIN",
                ],
            ),
            "has_any_column_privilege" | "has_column_privilege" => {
                (&["SELECT"], &["SELECT", "INSERT", "UPDATE", "REFERENCES"])
            }
            "has_schema_privilege" => (&["USAGE"], &["USAGE", "CREATE"]),
            _ => (&["CONNECT"], &["CONNECT", "CREATE", "TEMPORARY", "TEMP"]),
        }
    }

    /// Whether the session holds any of the privileges `text` names.
    fn holds(&self, text: &str) -> Result<bool> {
        let (held, known) = self.kinds();
        let mut any = false;
        for item in text.split(',') {
            let upper = item.trim().to_uppercase();
            let (name, grant) = match upper.strip_suffix(" WITH GRANT OPTION") {
                Some(n) => (n.trim_end(), true),
                None => (upper.as_str(), false),
            };
            if !known.contains(&name) {
                return exec_err!("unrecognized privilege type: \"{}\"", item.trim());
            }
            any |= !grant && held.contains(&name);
        }
        Ok(any)
    }
}

impl ScalarUDFImpl for HasPrivilege {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let Some(last) = args.args.last() else {
            return exec_err!("{} needs a privilege", self.name);
        };
        let privileges = arrow::compute::cast(&last.to_array(n)?, &DataType::Utf8)?;
        let privileges = privileges
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("text".into()))?;
        let out = privileges
            .iter()
            .map(|p| p.map(|p| self.holds(p)).transpose())
            .collect::<Result<arrow::array::BooleanArray>>()?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// A relation's name as PostgreSQL reads a `regclass` input: parts separated by dots,
/// a double-quoted part as written (`""` a quote), any other folded to lower case.
fn name_parts(text: &str) -> Result<Vec<String>> {
    let invalid = || exec_err!("invalid name syntax: \"{text}\"");
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut part = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('"') if chars.next_if_eq(&'"').is_some() => part.push('"'),
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return invalid(),
                }
            }
            if part.is_empty() {
                return invalid();
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != '.' && !c.is_whitespace()) {
                part.push(c.to_ascii_lowercase());
            }
            if part.is_empty() {
                return invalid();
            }
        }
        parts.push(part);
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            None => return Ok(parts),
            Some('.') => {}
            Some(_) => return invalid(),
        }
    }
}

/// The schemas an unqualified relation name is looked for in, in order: `pg_catalog`,
/// then those of the search path a connection starts with (`"$user"` names no schema
/// here).
fn search_path() -> Vec<String> {
    let path = pg_session::default_setting("search_path").unwrap_or_default();
    let mut schemas = vec!["pg_catalog".to_owned()];
    for part in path.split(',') {
        let part = part.trim();
        if part.is_empty() || part == "\"$user\"" {
            continue;
        }
        if let Ok(mut p) = name_parts(part)
            && p.len() == 1
            && let Some(s) = p.pop()
            && !schemas.contains(&s)
        {
            schemas.push(s);
        }
    }
    schemas
}

/// `regclass_oid(name_or_oid, relations)`: `x::regclass` for an `x` that is not a
/// literal (Metabase's `format('%I.%I', schema, table)::regclass`), which the rewrite
/// ([`pg_rewrite`](super::pg_rewrite)) turns into this call with `relations`, the
/// `(schema, name, oid)` of every relation of `pg_class`. An integer already is an oid.
/// A text is a name ([`name_parts`]; digits alone are an oid): qualified, it names its
/// schema's relation; unqualified, the first found along [`search_path`]. A name of no
/// relation is an error, as in PostgreSQL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegclassOid {
    signature: Signature,
}

/// The relations of one row of `regclass_oid`'s second argument.
struct Relations {
    schemas: ArrayRef,
    names: ArrayRef,
    oids: ArrayRef,
}

impl Relations {
    fn of(list: &arrow::array::ListArray, row: usize) -> Result<Option<Relations>> {
        if list.is_null(row) {
            return Ok(None);
        }
        let value = list.value(row);
        let Some(rows) = value.as_any().downcast_ref::<arrow::array::StructArray>() else {
            return exec_err!("regclass_oid expects (schema, name, oid) rows");
        };
        if rows.num_columns() != 3 {
            return exec_err!("regclass_oid expects (schema, name, oid) rows");
        }
        Ok(Some(Relations {
            schemas: arrow::compute::cast(rows.column(0), &DataType::Utf8)?,
            names: arrow::compute::cast(rows.column(1), &DataType::Utf8)?,
            oids: arrow::compute::cast(rows.column(2), &DataType::Int32)?,
        }))
    }

    fn find(&self, schema: &str, name: &str) -> Option<i32> {
        let schemas = self.schemas.as_any().downcast_ref::<StringArray>()?;
        let names = self.names.as_any().downcast_ref::<StringArray>()?;
        let oids = self.oids.as_any().downcast_ref::<Int32Array>()?;
        (0..oids.len()).find_map(|i| {
            (!oids.is_null(i)
                && !schemas.is_null(i)
                && !names.is_null(i)
                && schemas.value(i) == schema
                && names.value(i) == name)
                .then(|| oids.value(i))
        })
    }
}

fn regclass_of(text: &str, relations: Option<&Relations>) -> Result<i32> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u32>()
            .map(|o| o as i32)
            .or_else(|_| exec_err!("OID out of range: \"{text}\""));
    }
    let mut parts = name_parts(text)?;
    if parts.len() == 3 {
        if parts[0] != CATALOG {
            return exec_err!("cross-database references are not implemented: \"{text}\"");
        }
        parts.remove(0);
    }
    let found = match parts.as_slice() {
        [schema, name] => relations.and_then(|r| r.find(schema, name)),
        [name] => relations.and_then(|r| search_path().iter().find_map(|s| r.find(s, name))),
        _ => return exec_err!("improper relation name (too many dotted names): {text}"),
    };
    match found {
        Some(oid) => Ok(oid),
        None => exec_err!("relation \"{}\" does not exist", parts.join(".")),
    }
}

impl ScalarUDFImpl for RegclassOid {
    fn name(&self) -> &str {
        "regclass_oid"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let [value, relations] = args.args.as_slice() else {
            return exec_err!("regclass_oid(name_or_oid, relations)");
        };
        let value = value.to_array(n)?;
        if value.data_type().is_integer() || value.data_type() == &DataType::Null {
            return Ok(ColumnarValue::Array(arrow::compute::cast(
                &value,
                &DataType::Int32,
            )?));
        }
        let texts = arrow::compute::cast(&value, &DataType::Utf8)?;
        let texts = texts
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("text".into()))?;
        let relations = relations.to_array(n)?;
        let list = match relations.data_type() {
            DataType::Null => None,
            DataType::List(_) => relations.as_any().downcast_ref::<arrow::array::ListArray>(),
            other => return exec_err!("regclass_oid expects a list of relations, got {other}"),
        };
        let mut out = Vec::with_capacity(n);
        for row in 0..n {
            if texts.is_null(row) {
                out.push(None);
                continue;
            }
            let rows = match list {
                Some(l) => Relations::of(l, row)?,
                None => None,
            };
            out.push(Some(regclass_of(texts.value(row), rows.as_ref())?));
        }
        Ok(ColumnarValue::Array(Arc::new(Int32Array::from(out))))
    }
}

/// `pg_in_list(x, list)`: `x IN (SELECT …)` where DataFusion plans no subquery of that
/// kind (in a select list, an ORDER BY, a CASE), the subquery's rows gathered into a list
/// by the rewrite ([`pg_rewrite`](super::pg_rewrite)). As three-valued as IN: false when
/// there are no rows (the list is NULL, as `array_agg` of none is), else true when one
/// equals `x`, else NULL when `x` or one of them is NULL, else false.
#[derive(Debug, PartialEq, Eq, Hash)]
struct InList {
    signature: Signature,
}

impl ScalarUDFImpl for InList {
    fn name(&self) -> &str {
        "pg_in_list"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
        let [value, list] = types else {
            return exec_err!("pg_in_list(value, list)");
        };
        let item = match list {
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                f.data_type().clone()
            }
            DataType::Null => return Ok(vec![value.clone(), DataType::Null]),
            other => return exec_err!("pg_in_list expects a list, got {other}"),
        };
        let Some(common) = comparison_coercion(value, &item) else {
            return exec_err!("cannot compare {value} with the subquery's {item}");
        };
        Ok(vec![
            common.clone(),
            DataType::List(Arc::new(Field::new("item", common, true))),
        ])
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let [value, list] = args.args.as_slice() else {
            return exec_err!("pg_in_list(value, list)");
        };
        let value = value.to_array(n)?;
        let list = list.to_array(n)?;
        let list = match list.data_type() {
            DataType::Null => None,
            _ => Some(
                list.as_any()
                    .downcast_ref::<arrow::array::ListArray>()
                    .ok_or_else(|| datafusion::error::DataFusionError::Internal("list".into()))?,
            ),
        };
        let mut out = arrow::array::BooleanBuilder::with_capacity(n);
        for row in 0..n {
            let Some(items) = list.filter(|l| !l.is_null(row)).map(|l| l.value(row)) else {
                out.append_value(false);
                continue;
            };
            if items.is_empty() {
                out.append_value(false);
            } else if value.is_null(row) {
                out.append_null();
            } else {
                let x = arrow::array::Scalar::new(value.slice(row, 1));
                let equal = arrow::compute::kernels::cmp::eq(&items, &x)?;
                if equal.true_count() > 0 {
                    out.append_value(true);
                } else if items.null_count() > 0 {
                    out.append_null();
                } else {
                    out.append_value(false);
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// How a column is described in `information_schema`: its Postgres type by the SQL
/// standard's name and by Postgres's own (`udt_name`), and the sizes that go with it.
struct ColumnType {
    data_type: String,
    udt_name: String,
    numeric_precision: Option<i32>,
    numeric_precision_radix: Option<i32>,
    numeric_scale: Option<i32>,
    datetime_precision: Option<i32>,
}

/// The Postgres type a column of the session is sent as.
pub fn pg_type_of(field: &Field) -> Type {
    if field.metadata().contains_key(PG_CHAR_KEY) {
        return Type::CHAR;
    }
    if let Some(t) = field
        .metadata()
        .get(PG_OID_ALIAS_KEY)
        .and_then(|k| pg_type_for_alias_kind(k))
    {
        return t;
    }
    let t = wire_type(field.data_type()).unwrap_or_else(|| field.data_type().clone());
    into_pg_type(&t).unwrap_or(Type::TEXT)
}

fn column_type(field: &Field) -> ColumnType {
    let t = pg_type_of(field);
    let (precision, radix, scale) = match t {
        Type::INT2 => (Some(16), Some(2), Some(0)),
        Type::INT4 => (Some(32), Some(2), Some(0)),
        Type::INT8 => (Some(64), Some(2), Some(0)),
        Type::FLOAT4 => (Some(24), Some(2), None),
        Type::FLOAT8 => (Some(53), Some(2), None),
        Type::NUMERIC => {
            match wire_type(field.data_type()).unwrap_or_else(|| field.data_type().clone()) {
                DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
                    (Some(i32::from(p)), Some(10), Some(i32::from(s)))
                }
                _ => (None, Some(10), None),
            }
        }
        _ => (None, None, None),
    };
    let datetime_precision = match t {
        Type::DATE => Some(0),
        Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::TIME | Type::TIMETZ | Type::INTERVAL => Some(6),
        _ => None,
    };
    let data_type = match t {
        Type::BOOL => "boolean",
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::NUMERIC => "numeric",
        Type::TEXT => "text",
        Type::VARCHAR => "character varying",
        Type::BPCHAR => "character",
        Type::CHAR => "\"char\"",
        Type::NAME => "name",
        Type::BYTEA => "bytea",
        Type::DATE => "date",
        Type::TIME => "time without time zone",
        Type::TIMETZ => "time with time zone",
        Type::TIMESTAMP => "timestamp without time zone",
        Type::TIMESTAMPTZ => "timestamp with time zone",
        Type::INTERVAL => "interval",
        Type::OID => "oid",
        Type::JSON => "json",
        Type::JSONB => "jsonb",
        Type::UUID => "uuid",
        ref other if other.name().starts_with('_') => "ARRAY",
        Type::REGCLASS | Type::REGTYPE | Type::REGPROC | Type::REGNAMESPACE | Type::REGROLE => {
            t.name()
        }
        _ => "USER-DEFINED",
    };
    ColumnType {
        data_type: data_type.to_owned(),
        udt_name: t.name().to_owned(),
        numeric_precision: precision,
        numeric_precision_radix: radix,
        numeric_scale: scale,
        datetime_precision,
    }
}

/// A value of an `information_schema` row.
enum V {
    S(Option<String>),
    I(Option<i32>),
}

fn s(v: &str) -> V {
    V::S(Some(v.to_owned()))
}

const NULL: V = V::S(None);

/// The columns of an `information_schema` table: text, or integers where named here.
struct Spec {
    columns: &'static [&'static str],
    integers: &'static [&'static str],
}

const TABLES: Spec = Spec {
    columns: &[
        "table_catalog",
        "table_schema",
        "table_name",
        "table_type",
        "self_referencing_column_name",
        "reference_generation",
        "user_defined_type_catalog",
        "user_defined_type_schema",
        "user_defined_type_name",
        "is_insertable_into",
        "is_typed",
        "commit_action",
    ],
    integers: &[],
};

const COLUMNS: Spec = Spec {
    columns: &[
        "table_catalog",
        "table_schema",
        "table_name",
        "column_name",
        "ordinal_position",
        "column_default",
        "is_nullable",
        "data_type",
        "character_maximum_length",
        "character_octet_length",
        "numeric_precision",
        "numeric_precision_radix",
        "numeric_scale",
        "datetime_precision",
        "interval_type",
        "interval_precision",
        "character_set_catalog",
        "character_set_schema",
        "character_set_name",
        "collation_catalog",
        "collation_schema",
        "collation_name",
        "domain_catalog",
        "domain_schema",
        "domain_name",
        "udt_catalog",
        "udt_schema",
        "udt_name",
        "scope_catalog",
        "scope_schema",
        "scope_name",
        "maximum_cardinality",
        "dtd_identifier",
        "is_self_referencing",
        "is_identity",
        "identity_generation",
        "identity_start",
        "identity_increment",
        "identity_maximum",
        "identity_minimum",
        "identity_cycle",
        "is_generated",
        "generation_expression",
        "is_updatable",
    ],
    integers: &[
        "ordinal_position",
        "character_maximum_length",
        "character_octet_length",
        "numeric_precision",
        "numeric_precision_radix",
        "numeric_scale",
        "datetime_precision",
        "interval_precision",
        "maximum_cardinality",
    ],
};

const SCHEMATA: Spec = Spec {
    columns: &[
        "catalog_name",
        "schema_name",
        "schema_owner",
        "default_character_set_catalog",
        "default_character_set_schema",
        "default_character_set_name",
        "sql_path",
    ],
    integers: &[],
};

const VIEWS: Spec = Spec {
    columns: &[
        "table_catalog",
        "table_schema",
        "table_name",
        "view_definition",
        "check_option",
        "is_updatable",
        "is_insertable_into",
        "is_trigger_updatable",
        "is_trigger_deletable",
        "is_trigger_insertable_into",
    ],
    integers: &[],
};

/// Tables that describe keys, constraints and routines: the lake has none.
const EMPTY: &[(&str, Spec)] = &[
    (
        "table_constraints",
        Spec {
            columns: &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "constraint_type",
                "is_deferrable",
                "initially_deferred",
                "enforced",
                "nulls_distinct",
            ],
            integers: &[],
        },
    ),
    (
        "key_column_usage",
        Spec {
            columns: &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "ordinal_position",
                "position_in_unique_constraint",
            ],
            integers: &["ordinal_position", "position_in_unique_constraint"],
        },
    ),
    (
        "referential_constraints",
        Spec {
            columns: &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "unique_constraint_catalog",
                "unique_constraint_schema",
                "unique_constraint_name",
                "match_option",
                "update_rule",
                "delete_rule",
            ],
            integers: &[],
        },
    ),
    (
        "constraint_column_usage",
        Spec {
            columns: &[
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
            ],
            integers: &[],
        },
    ),
    (
        "check_constraints",
        Spec {
            columns: &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "check_clause",
            ],
            integers: &[],
        },
    ),
    (
        "routines",
        Spec {
            columns: &[
                "specific_catalog",
                "specific_schema",
                "specific_name",
                "routine_catalog",
                "routine_schema",
                "routine_name",
                "routine_type",
                "data_type",
                "type_udt_name",
                "routine_body",
                "routine_definition",
                "external_language",
            ],
            integers: &[],
        },
    ),
    (
        "parameters",
        Spec {
            columns: &[
                "specific_catalog",
                "specific_schema",
                "specific_name",
                "ordinal_position",
                "parameter_mode",
                "parameter_name",
                "data_type",
                "udt_name",
            ],
            integers: &["ordinal_position"],
        },
    ),
];

const OWN: [&str; 4] = ["tables", "columns", "schemata", "views"];

impl Spec {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| {
                    let t = if self.integers.contains(c) {
                        DataType::Int32
                    } else {
                        DataType::Utf8
                    };
                    Field::new(*c, t, true)
                })
                .collect::<Vec<_>>(),
        ))
    }

    fn table(&self, rows: Vec<Vec<V>>) -> Result<Arc<dyn TableProvider>> {
        let schema = self.schema();
        let columns: Vec<ArrayRef> = (0..self.columns.len())
            .map(|i| -> ArrayRef {
                if self.integers.contains(&self.columns[i]) {
                    Arc::new(Int32Array::from_iter(rows.iter().map(|r| match &r[i] {
                        V::I(v) => *v,
                        V::S(_) => None,
                    })))
                } else {
                    Arc::new(StringArray::from_iter(rows.iter().map(|r| match &r[i] {
                        V::S(v) => v.clone(),
                        V::I(v) => v.map(|v| v.to_string()),
                    })))
                }
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

/// `information_schema`, built from the session's catalog when a query reads it.
#[derive(Debug)]
struct InformationSchema {
    /// Weak: the catalog holds this schema.
    catalog: Weak<dyn CatalogProvider>,
}

/// (schema, table, provider) of every table of the catalog, in name order; this
/// schema's own tables are described by their specs.
type Relation = (String, String, Option<Arc<dyn TableProvider>>);

impl InformationSchema {
    async fn relations(&self) -> Result<Vec<Relation>> {
        let Some(catalog) = self.catalog.upgrade() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut schemas = catalog.schema_names();
        schemas.sort();
        for schema_name in schemas {
            if schema_name == "information_schema" {
                let mut names: Vec<&str> = OWN
                    .iter()
                    .copied()
                    .chain(EMPTY.iter().map(|(n, _)| *n))
                    .collect();
                names.sort();
                out.extend(
                    names
                        .into_iter()
                        .map(|n| (schema_name.clone(), n.to_owned(), None)),
                );
                continue;
            }
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            for name in names {
                if let Some(t) = schema.table(&name).await? {
                    out.push((schema_name.clone(), name, Some(t)));
                }
            }
        }
        Ok(out)
    }

    fn own_schema(name: &str) -> Option<SchemaRef> {
        match name {
            "tables" => Some(TABLES.schema()),
            "columns" => Some(COLUMNS.schema()),
            "schemata" => Some(SCHEMATA.schema()),
            "views" => Some(VIEWS.schema()),
            _ => EMPTY
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| s.schema()),
        }
    }
}

fn table_type(schema: &str, provider: &Option<Arc<dyn TableProvider>>) -> &'static str {
    use datafusion::datasource::TableType;
    match provider.as_ref().map(|p| p.table_type()) {
        _ if schema == "information_schema" => "VIEW",
        Some(TableType::View) => "VIEW",
        Some(TableType::Temporary) => "LOCAL TEMPORARY",
        _ => "BASE TABLE",
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        OWN.iter()
            .copied()
            .chain(EMPTY.iter().map(|(n, _)| *n))
            .map(str::to_owned)
            .collect()
    }

    fn table_exist(&self, name: &str) -> bool {
        Self::own_schema(name).is_some()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let rows: Vec<Vec<V>> = match name {
            "tables" => self
                .relations()
                .await?
                .iter()
                .map(|(schema, table, provider)| {
                    vec![
                        s(CATALOG),
                        s(schema),
                        s(table),
                        s(table_type(schema, provider)),
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        s("NO"),
                        s("NO"),
                        NULL,
                    ]
                })
                .collect(),
            "views" => self
                .relations()
                .await?
                .iter()
                .filter(|(schema, _, provider)| table_type(schema, provider) == "VIEW")
                .map(|(schema, table, _)| {
                    vec![
                        s(CATALOG),
                        s(schema),
                        s(table),
                        NULL,
                        s("NONE"),
                        s("NO"),
                        s("NO"),
                        s("NO"),
                        s("NO"),
                        s("NO"),
                    ]
                })
                .collect(),
            "schemata" => {
                let mut names = self
                    .catalog
                    .upgrade()
                    .map(|c| c.schema_names())
                    .unwrap_or_default();
                names.sort();
                names
                    .iter()
                    .map(|n| vec![s(CATALOG), s(n), s("postgres"), NULL, NULL, NULL, NULL])
                    .collect()
            }
            "columns" => {
                let mut rows = Vec::new();
                for (schema, table, provider) in self.relations().await? {
                    let fields = match &provider {
                        Some(p) => p.schema(),
                        None => match Self::own_schema(&table) {
                            Some(s) => s,
                            None => continue,
                        },
                    };
                    for (i, field) in fields.fields().iter().enumerate() {
                        let t = column_type(field);
                        let position = i32::try_from(i + 1).unwrap_or(i32::MAX);
                        let mut row = vec![
                            s(CATALOG),
                            s(&schema),
                            s(&table),
                            s(field.name()),
                            V::I(Some(position)),
                            NULL,
                            s(if field.is_nullable() { "YES" } else { "NO" }),
                            V::S(Some(t.data_type)),
                            V::I(None),
                            V::I(None),
                            V::I(t.numeric_precision),
                            V::I(t.numeric_precision_radix),
                            V::I(t.numeric_scale),
                            V::I(t.datetime_precision),
                            NULL,
                            V::I(None),
                        ];
                        // character set, collation and domain: none
                        row.extend((0..9).map(|_| NULL));
                        row.extend([s(CATALOG), s("pg_catalog"), V::S(Some(t.udt_name))]);
                        // scope
                        row.extend((0..3).map(|_| NULL));
                        row.push(V::I(None));
                        row.push(V::S(Some(position.to_string())));
                        row.extend([s("NO"), s("NO")]);
                        row.extend((0..6).map(|_| NULL));
                        row.extend([s("NEVER"), NULL, s("NO")]);
                        rows.push(row);
                    }
                }
                rows
            }
            other => match EMPTY.iter().find(|(n, _)| *n == other) {
                Some((_, spec)) => return spec.table(Vec::new()).map(Some),
                None => return Ok(None),
            },
        };
        let spec = match name {
            "tables" => &TABLES,
            "views" => &VIEWS,
            "schemata" => &SCHEMATA,
            _ => &COLUMNS,
        };
        spec.table(rows).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_kept_as_text_become_lists() {
        assert_eq!(elements("1 2"), ["1", "2"]);
        assert_eq!(elements("[2, 20, 3]"), ["2", "20", "3"]);
        assert_eq!(elements("['i', 'o']"), ["i", "o"]);
        assert_eq!(elements("{a,b}"), ["a", "b"]);
        let text = StringArray::from(vec![Some("1 2"), None, Some("[3]")]);
        let list = list_column(&text, &DataType::Int16).unwrap();
        let list = list
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .unwrap();
        assert!(list.is_null(1));
        assert_eq!(list.value(0).len(), 2);
        assert_eq!(list.value(2).len(), 1);
    }

    #[test]
    fn format_as_postgres() {
        let f = |t: &str, a: &[Option<&str>]| format_row(t, a).unwrap();
        assert_eq!(f("%s-%s", &[Some("a"), None]), "a-");
        assert_eq!(
            f("%I.%I", &[Some("public"), Some("Events")]),
            "public.\"Events\""
        );
        assert_eq!(f("%L and %L", &[Some("it's"), None]), "'it''s' and NULL");
        assert_eq!(f("%2$s %1$s %s", &[Some("a"), Some("b")]), "b a b");
        assert_eq!(f("100%%", &[]), "100%");
        assert!(format_row("%s %s", &[Some("one")]).is_err());
        assert!(format_row("%I", &[None]).is_err());
        assert!(format_row("%x", &[]).is_err());
    }

    #[test]
    fn privileges_by_kind() {
        let table = HasPrivilege::new("has_table_privilege", &[2, 3]);
        assert!(table.holds("select").unwrap());
        assert!(table.holds("INSERT, Select").unwrap());
        for p in [
            "insert",
            "UPDATE",
            "delete",
            "truncate",
            "references",
            "trigger",
        ] {
            assert!(!table.holds(p).unwrap(), "{p}");
        }
        assert!(!table.holds("SELECT WITH GRANT OPTION").unwrap());
        assert!(table.holds("usage").is_err());
        let columns = HasPrivilege::new("has_any_column_privilege", &[2, 3]);
        assert!(columns.holds("select").unwrap() && !columns.holds("update").unwrap());
        let schema = HasPrivilege::new("has_schema_privilege", &[2, 3]);
        assert!(schema.holds("usage").unwrap() && !schema.holds("create").unwrap());
        let database = HasPrivilege::new("has_database_privilege", &[2, 3]);
        assert!(database.holds("connect").unwrap());
        assert!(!database.holds("create").unwrap() && !database.holds("temp").unwrap());
    }

    #[test]
    fn regclass_names_read_as_postgres_reads_them() {
        assert_eq!(name_parts("public.Events").unwrap(), ["public", "events"]);
        assert_eq!(
            name_parts(" \"Public\" . \"a\"\"b\" ").unwrap(),
            ["Public", "a\"b"]
        );
        for bad in ["", "a.", ".a", "\"a", "a b", "\"\""] {
            assert!(name_parts(bad).is_err(), "{bad}");
        }
        let relations = Relations {
            schemas: Arc::new(StringArray::from(vec!["pg_catalog", "public", "public"])),
            names: Arc::new(StringArray::from(vec!["pg_class", "events", "pg_class"])),
            oids: Arc::new(Int32Array::from(vec![1259, 16469, 16500])),
        };
        let r = Some(&relations);
        assert_eq!(regclass_of("events", r).unwrap(), 16469);
        assert_eq!(regclass_of("\"public\".\"events\"", r).unwrap(), 16469);
        assert_eq!(regclass_of("supportlake.public.events", r).unwrap(), 16469);
        // pg_catalog is searched first, as in PostgreSQL.
        assert_eq!(regclass_of("pg_class", r).unwrap(), 1259);
        assert_eq!(regclass_of("public.pg_class", r).unwrap(), 16500);
        assert_eq!(regclass_of("16469", r).unwrap(), 16469);
        for missing in ["Events2", "\"Events\"", "other.public.events", "a.b.c.d"] {
            assert!(regclass_of(missing, r).is_err(), "{missing}");
        }
    }

    #[test]
    fn types_have_postgres_names() {
        let ts = Field::new(
            "ts",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
            false,
        );
        let t = column_type(&ts);
        assert_eq!(
            (t.data_type.as_str(), t.udt_name.as_str()),
            ("timestamp with time zone", "timestamptz")
        );
        let csat = column_type(&Field::new("csat_score", DataType::Int8, true));
        assert_eq!(
            (csat.data_type.as_str(), csat.udt_name.as_str()),
            ("smallint", "int2")
        );
        let id = column_type(&Field::new("event_id", DataType::Utf8View, false));
        assert_eq!(
            (id.data_type.as_str(), id.udt_name.as_str()),
            ("text", "text")
        );
        for c in EMPTY
            .iter()
            .map(|(_, s)| s)
            .chain([&TABLES, &COLUMNS, &SCHEMATA, &VIEWS])
        {
            for i in c.integers {
                assert!(c.columns.contains(i), "{i}");
            }
        }
    }
}

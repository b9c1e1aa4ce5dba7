//! The query layer: the only module that touches DataFusion.
//!
//! An [`Engine`] is a DataFusion session over one lake, with the `events` table registered
//! as a Hive-partitioned listing table (the `date` directory level is the partition column,
//! typed `DATE`, so `WHERE date >= ...` skips whole directories).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::event;
use crate::lake::LakePaths;
use crate::lake::paths::EVENTS;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("the lake path {0} cannot be used as a table location: {1}")]
    Location(String, String),
}

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

/// The name of the partition column of every table.
pub const DATE_COLUMN: &str = "date";

/// The schema of the `events` table as queried: the stored columns plus `date`.
pub fn events_table_schema() -> SchemaRef {
    let mut fields: Vec<Field> = event::schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(DATE_COLUMN, DataType::Date32, false));
    Arc::new(Schema::new(fields))
}

/// A DataFusion session over one lake.
pub struct Engine {
    ctx: SessionContext,
}

impl Engine {
    /// Opens a session with the lake's tables registered.
    pub async fn open(paths: &LakePaths) -> Result<Self> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("supportlake", "public");
        let ctx = SessionContext::new_with_config(config);
        register_events(&ctx, paths).await?;
        Ok(Engine { ctx })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one SQL statement and collects the result.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let df = self.ctx.sql(sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok((schema, batches))
    }
}

async fn register_events(ctx: &SessionContext, paths: &LakePaths) -> Result<()> {
    let dir = paths.events();
    if !dir.is_dir() {
        // An empty lake still has an (empty) events table with the full schema.
        let schema = events_table_schema();
        let table = MemTable::try_new(schema, vec![vec![]])?;
        ctx.register_table(EVENTS, Arc::new(table))?;
        return Ok(());
    }
    let abs = std::path::absolute(&dir)
        .map_err(|e| QueryError::Location(dir.display().to_string(), e.to_string()))?;
    let url = ListingTableUrl::parse(format!("{}/", abs.display()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![(DATE_COLUMN.to_owned(), DataType::Date32)]);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(event::schema());
    let table = ListingTable::try_new(config)?;
    ctx.register_table(EVENTS, Arc::new(table))?;
    Ok(())
}

//! The answer formats of `POST /api/v1/sql`: JSON, CSV, Arrow IPC stream and Parquet.

use std::sync::Arc;

use arrow::array::RecordBatch;

use super::QueryOutput;

/// A result format, chosen by `?format=` or the `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// `{"columns":[{"name","type"}…],"rows":[{…}…],"row_count":n}`.
    Json,
    /// CSV with a header row.
    Csv,
    /// The Arrow IPC stream format.
    Arrow,
    /// One Parquet file (ZSTD).
    Parquet,
}

impl ResultFormat {
    /// From a `format=` value.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(ResultFormat::Json),
            "csv" => Some(ResultFormat::Csv),
            "arrow" | "ipc" | "arrows" => Some(ResultFormat::Arrow),
            "parquet" => Some(ResultFormat::Parquet),
            _ => None,
        }
    }

    /// From an `Accept` header: the first media type we know, JSON when none is given.
    pub fn from_accept(accept: Option<&str>) -> Option<Self> {
        let Some(accept) = accept else {
            return Some(ResultFormat::Json);
        };
        for item in accept.split(',') {
            let media = item
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let f = match media.as_str() {
                "application/json" | "*/*" | "application/*" => ResultFormat::Json,
                "text/csv" => ResultFormat::Csv,
                "application/vnd.apache.arrow.stream" => ResultFormat::Arrow,
                "application/vnd.apache.parquet" | "application/x-parquet" => ResultFormat::Parquet,
                _ => continue,
            };
            return Some(f);
        }
        None
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ResultFormat::Json => "application/json",
            ResultFormat::Csv => "text/csv; charset=utf-8",
            ResultFormat::Arrow => "application/vnd.apache.arrow.stream",
            ResultFormat::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// Encodes a result.
pub fn encode(out: &QueryOutput, format: ResultFormat) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let batches: &[RecordBatch] = &out.batches;
    match format {
        ResultFormat::Json => {
            let mut rows = Vec::new();
            {
                let mut w = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::JsonArray>(&mut rows);
                for b in batches {
                    w.write(b).map_err(|e| e.to_string())?;
                }
                w.finish().map_err(|e| e.to_string())?;
            }
            if rows.is_empty() {
                rows.extend_from_slice(b"[]");
            }
            let columns: Vec<serde_json::Value> = out
                .schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect();
            buf.extend_from_slice(b"{\"columns\":");
            serde_json::to_writer(&mut buf, &columns).map_err(|e| e.to_string())?;
            buf.extend_from_slice(b",\"rows\":");
            buf.extend_from_slice(&rows);
            buf.extend_from_slice(format!(",\"row_count\":{}}}", out.rows).as_bytes());
        }
        ResultFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut buf);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(Arc::clone(&out.schema)))
                    .map_err(|e| e.to_string())?;
            }
            for b in batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
        }
        ResultFormat::Arrow => {
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &out.schema)
                .map_err(|e| e.to_string())?;
            for b in batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
            w.finish().map_err(|e| e.to_string())?;
        }
        ResultFormat::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .build();
            let mut w = parquet::arrow::ArrowWriter::try_new(
                &mut buf,
                Arc::clone(&out.schema),
                Some(props),
            )
            .map_err(|e| e.to_string())?;
            for b in batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
            w.close().map_err(|e| e.to_string())?;
        }
    }
    Ok(buf)
}

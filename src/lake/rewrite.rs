//! Replacing a file in place, crash-safely, under the same name.
//!
//! ```text
//! new content ─► <dir>/.<name>.tmp ─► fsync ─► (Parquet: re-read footer, check rows) ─► rename over <name> ─► fsync <dir>
//! ```
//!
//! A crash at any instant leaves, under `<name>`, either the old content or the new one —
//! never a mix, never a torn or empty file. The temp name starts with a dot and does not end
//! in the file's extension, so no reader lists it; a temp file left by a crash is removed by
//! the next erasure (see [`super::erase`]) or writer.
//!
//! Names never change: a compacted file hides the files its sequence range covers by their
//! names, so a rewritten file must keep its name, and a file that loses all its rows is
//! replaced by an empty file of the same schema rather than deleted.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnPath;

use super::writer::{file_name, sync_dir};
use super::{LakeError, Result};
use crate::event::col;

/// The hidden name a replacement is written under: `.<name>.tmp`, in the same directory (a
/// rename is atomic only within one file system).
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new(""));
    dir.join(format!(".{}.tmp", file_name(path)))
}

/// Whether a file name is a replacement or data file still being written (a leftover once no
/// writer runs).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Replaces `path` with `content`.
pub fn replace_bytes(path: &Path, content: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let mut f = File::create(&tmp).map_err(|e| LakeError::io(&tmp, e))?;
    f.write_all(content)
        .and_then(|()| f.sync_all())
        .map_err(|e| LakeError::io(&tmp, e))?;
    drop(f);
    commit(&tmp, path)
}

/// Settings for rewritten Parquet files: those of the lake writer (ZSTD, page statistics,
/// no dictionary for the per-row-unique id columns).
pub fn parquet_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_column_dictionary_enabled(ColumnPath::from(col::EVENT_ID), false)
        .set_column_dictionary_enabled(ColumnPath::from(col::MESSAGE_ID), false)
        .set_created_by(format!("supportlake {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// What a Parquet replacement wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    pub rows: u64,
    pub bytes: u64,
}

/// Replaces the Parquet file at `path` with the batches `next` hands out (all of `schema`;
/// none at all gives an empty file of that schema). The row count in the new footer is
/// checked before the rename.
pub fn replace_parquet(
    path: &Path,
    schema: SchemaRef,
    mut next: impl FnMut() -> Result<Option<RecordBatch>>,
) -> Result<Replaced> {
    let tmp = temp_path(path);
    let file = File::create(&tmp).map_err(|e| LakeError::io(&tmp, e))?;
    let mut writer = ArrowWriter::try_new(
        BufWriter::with_capacity(1 << 20, file),
        schema,
        Some(parquet_properties()),
    )
    .map_err(|e| LakeError::parquet(&tmp, e))?;
    let mut rows = 0u64;
    while let Some(batch) = next()? {
        rows += batch.num_rows() as u64;
        writer
            .write(&batch)
            .map_err(|e| LakeError::parquet(&tmp, e))?;
    }
    let file = writer
        .into_inner()
        .map_err(|e| LakeError::parquet(&tmp, e))?
        .into_inner()
        .map_err(|e| LakeError::io(&tmp, e.into_error()))?;
    file.sync_all().map_err(|e| LakeError::io(&tmp, e))?;
    let bytes = file.metadata().map_err(|e| LakeError::io(&tmp, e))?.len();
    drop(file);
    let found = SerializedFileReader::new(File::open(&tmp).map_err(|e| LakeError::io(&tmp, e))?)
        .map_err(|e| LakeError::parquet(&tmp, e))?
        .metadata()
        .file_metadata()
        .num_rows();
    if found < 0 || found as u64 != rows {
        let _ = fs::remove_file(&tmp);
        return Err(LakeError::Verify {
            path: tmp,
            expected: rows,
            found,
        });
    }
    commit(&tmp, path)?;
    Ok(Replaced { rows, bytes })
}

/// Removes a file durably (the directory entry is fsynced).
pub fn remove_durably(path: &Path) -> Result<()> {
    fs::remove_file(path).map_err(|e| LakeError::io(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new("")))
}

fn commit(tmp: &Path, path: &Path) -> Result<()> {
    fs::rename(tmp, path).map_err(|e| LakeError::io(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new("")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    #[test]
    fn temp_names_are_hidden_and_not_listed_as_data() {
        let t = temp_path(Path::new("/l/events/date=2026-11-02/1-2.parquet"));
        assert_eq!(t, Path::new("/l/events/date=2026-11-02/.1-2.parquet.tmp"));
        assert!(is_temp_name(&file_name(&t)));
        assert!(!is_temp_name("1-2.parquet"));
    }

    #[test]
    fn a_parquet_file_emptied_keeps_its_name_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("conv", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["x", "y"]))],
        )
        .unwrap();
        let mut once = Some(batch);
        let r = replace_parquet(&path, schema.clone(), || Ok(once.take())).unwrap();
        assert_eq!(r.rows, 2);
        let r = replace_parquet(&path, schema.clone(), || Ok(None)).unwrap();
        assert_eq!(r.rows, 0);
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        assert_eq!(b.schema().fields(), schema.fields());
        assert_eq!(b.metadata().file_metadata().num_rows(), 0);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["a.parquet"]);
    }
}

//! The object store the query engine reads the lake through: the local file system, with
//! the files that compaction has replaced left out of every listing.
//!
//! Compaction (`crate::lake::compact`) commits a merged file by renaming it into the
//! partition and deletes its inputs only after a grace period. In between, both are on
//! disk; a listing through this store shows the merged file and hides the *covered* inputs
//! (files whose sequence range lies inside another file's), so a query sees every event
//! exactly once whichever side of the rename its listing fell on.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::lake::paths::{DataFileName, live_and_covered};

/// A read view of the local file system that hides covered data files.
#[derive(Debug)]
pub struct LakeStore {
    inner: Arc<dyn ObjectStore>,
}

impl LakeStore {
    pub fn new() -> Self {
        LakeStore {
            inner: Arc::new(LocalFileSystem::new()),
        }
    }
}

impl Default for LakeStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for LakeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LakeStore({})", self.inner)
    }
}

/// Makes `runtime` read `file://` through a [`LakeStore`].
pub fn install(runtime: &datafusion::execution::runtime_env::RuntimeEnv) {
    let url = datafusion::execution::object_store::ObjectStoreUrl::local_filesystem();
    runtime.register_object_store(url.as_ref(), Arc::new(LakeStore::new()));
}

/// Drops the covered data files from a listing (grouped by directory).
fn hide_covered(objects: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    let mut by_dir: BTreeMap<String, Vec<DataFileName>> = BTreeMap::new();
    for o in &objects {
        if let (Some(name), Some(dir)) = (o.location.filename(), parent(&o.location))
            && let Some(n) = DataFileName::parse(name)
        {
            by_dir.entry(dir).or_default().push(n);
        }
    }
    let mut hidden: BTreeMap<String, Vec<DataFileName>> = BTreeMap::new();
    for (dir, names) in by_dir {
        let (_, covered) = live_and_covered(&names);
        if !covered.is_empty() {
            hidden.insert(dir, covered);
        }
    }
    if hidden.is_empty() {
        return objects;
    }
    objects
        .into_iter()
        .filter(|o| {
            let Some(name) = o.location.filename().and_then(DataFileName::parse) else {
                return true;
            };
            let Some(dir) = parent(&o.location) else {
                return true;
            };
            !hidden.get(&dir).is_some_and(|c| c.contains(&name))
        })
        .collect()
}

fn parent(p: &Path) -> Option<String> {
    let s = p.as_ref();
    s.rfind('/').map(|i| s[..i].to_owned())
}

#[async_trait]
impl ObjectStore for LakeStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        // Covering is decided within a directory, so the whole listing is read first.
        let inner = self.inner.list(prefix);
        futures::stream::once(async move {
            let all: Vec<Result<ObjectMeta>> = inner.collect().await;
            match all.into_iter().collect::<Result<Vec<_>>>() {
                Ok(objects) => {
                    futures::stream::iter(hide_covered(objects).into_iter().map(Ok)).boxed()
                }
                Err(e) => futures::stream::iter([Err(e)]).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut r = self.inner.list_with_delimiter(prefix).await?;
        r.objects = hide_covered(r.objects);
        Ok(r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_files_are_hidden_per_directory() {
        let meta = |p: &str| ObjectMeta {
            location: Path::from(p),
            last_modified: chrono::Utc::now(),
            size: 1,
            e_tag: None,
            version: None,
        };
        let n = |a: u64, b: u64| format!("{a:020}-{b:020}.parquet");
        let objects = vec![
            meta(&format!("lake/events/date=2026-11-01/{}", n(1, 5))),
            meta(&format!("lake/events/date=2026-11-01/{}", n(6, 9))),
            meta(&format!("lake/events/date=2026-11-01/{}", n(1, 9))),
            // Same range in another partition: not covered there.
            meta(&format!("lake/events/date=2026-11-02/{}", n(1, 5))),
            meta("lake/events/date=2026-11-01/notes.txt"),
        ];
        let kept: Vec<String> = hide_covered(objects)
            .into_iter()
            .map(|o| o.location.to_string())
            .collect();
        assert_eq!(
            kept,
            vec![
                format!("lake/events/date=2026-11-01/{}", n(1, 9)),
                format!("lake/events/date=2026-11-02/{}", n(1, 5)),
                "lake/events/date=2026-11-01/notes.txt".to_owned(),
            ]
        );
    }
}

//! The manifest `UNLOAD ... MANIFEST VERBOSE` writes beside its part files:
//!
//! ```json
//! {"entries": [{"url": "s3://bucket/prefix/0000_part_00.parquet",
//!               "meta": {"content_length": 5242880, "record_count": 81920}}, ...],
//!  "schema": {"elements": [{"name": "c0", "type": {"base": "bigint"}}, ...]},
//!  "meta": {"content_length": 10485760, "record_count": 163840},
//!  "author": {"name": "Amazon Redshift", "version": "1.0.0"}}
//! ```
//!
//! Only the entries are read: each file's URL and how many rows it holds, which the reader
//! checks against the rows it decoded.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Entry {
    pub url: String,
    pub meta: EntryMeta,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EntryMeta {
    pub content_length: u64,
    pub record_count: u64,
}

impl Manifest {
    pub fn parse(json: &[u8]) -> Result<Manifest, String> {
        serde_json::from_slice(json).map_err(|err| format!("the manifest is not UNLOAD's: {err}"))
    }

    /// Rows in all the files.
    pub fn rows(&self) -> u64 {
        self.entries.iter().map(|e| e.meta.record_count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verbose_manifest_parses_and_counts_its_rows() {
        let manifest = Manifest::parse(
            br#"{"entries": [
                  {"url": "s3://b/p/0000_part_00.parquet", "meta": {"content_length": 10, "record_count": 3}},
                  {"url": "s3://b/p/0001_part_00.parquet", "meta": {"content_length": 12, "record_count": 4}}],
                 "schema": {"elements": [{"name": "c0", "type": {"base": "integer"}}]},
                 "meta": {"content_length": 22, "record_count": 7},
                 "author": {"name": "Amazon Redshift", "version": "1.0.0"}}"#,
        )
        .unwrap();
        assert_eq!(manifest.entries.len(), 2);
        assert_eq!(manifest.rows(), 7);
        assert!(Manifest::parse(br#"{"entries": [{"url": "s3://b/x"}]}"#).is_err());
    }
}

//! Tables as Parquet files, and the checks the decoder does not make.

use super::schema::check_schema;
use super::{Dataset, CHUNK};
use crate::{Error, Result};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

impl Dataset {
    pub(super) fn write_parquet(&self, table: &str, path: &Path) -> Result<()> {
        let (schema, batches) = self.batches(table)?;
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let perr = |e: parquet::errors::ParquetError| {
            Error::io(path, std::io::Error::other(e.to_string()))
        };
        let mut w =
            ArrowWriter::try_new(BufWriter::new(file), schema, Some(props)).map_err(perr)?;
        for b in &batches {
            w.write(b).map_err(perr)?;
        }
        w.close().map_err(perr)?;
        Ok(())
    }

    /// Decode one table's Parquet file, check its schema and append its columns to `self`.
    pub(super) fn absorb_parquet(
        &mut self,
        table: &str,
        bytes: bytes::Bytes,
        loc: &str,
    ) -> Result<()> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::parse(loc, format!("not a readable Parquet file ({e})"))
        };
        let file_len = bytes.len() as u64;
        let bytes_for_pages = bytes.clone();
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(&e))?;
        check_parquet_chunks(builder.metadata(), file_len, loc)?;
        check_parquet_pages(bytes_for_pages, loc)?;
        let schema = builder.schema().clone();
        // Check the columns before decoding a single page.
        check_schema(table, &schema, loc)?;
        let reader = builder
            .with_batch_size(CHUNK)
            .build()
            .map_err(|e| bad(&e))?;
        let mut batches = Vec::new();
        for b in reader {
            let b = b.map_err(|e| bad(&e))?;
            if b.schema().fields() != schema.fields() {
                return Err(Error::parse(
                    loc,
                    "a record batch does not match the file's schema",
                ));
            }
            batches.push(b);
        }
        self.absorb(table, &schema, &batches, loc)
    }
}

/// Check that every column chunk the footer describes lies inside the file (found by fuzzing:
/// parquet panics on a negative offset or size instead of returning an error).
pub(crate) fn check_parquet_chunks(
    meta: &parquet::file::metadata::ParquetMetaData,
    file_len: u64,
    loc: &str,
) -> Result<()> {
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let len = c.compressed_size();
            let end = start.checked_add(len);
            if start < 0 || len < 0 || end.is_none_or(|e| e as u64 > file_len) {
                return Err(Error::parse(
                    loc,
                    format!(
                        "not a readable Parquet file (row group {g}, column {}: chunk at byte \
                         {start} of {len} bytes lies outside the {file_len}-byte file)",
                        c.column_path()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Walk every page header of every column chunk before the arrow reader decodes them: a data
/// page in dictionary encoding must follow a dictionary page (found by fuzzing: parquet panics
/// with "Decoder for dict should have been set" otherwise).
pub(crate) fn check_parquet_pages<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
    loc: &str,
) -> Result<()> {
    use parquet::basic::Encoding;
    use parquet::column::page::Page;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let bad =
        |e: &dyn std::fmt::Display| Error::parse(loc, format!("not a readable Parquet file ({e})"));
    let file = SerializedFileReader::new(reader).map_err(|e| bad(&e))?;
    for g in 0..file.num_row_groups() {
        let rg = file.get_row_group(g).map_err(|e| bad(&e))?;
        for c in 0..rg.num_columns() {
            let mut pages = rg.get_column_page_reader(c).map_err(|e| bad(&e))?;
            let mut dictionary = false;
            while let Some(page) = pages.get_next_page().map_err(|e| bad(&e))? {
                let encoding = match page {
                    Page::DictionaryPage { .. } => {
                        dictionary = true;
                        continue;
                    }
                    Page::DataPage { encoding, .. } | Page::DataPageV2 { encoding, .. } => encoding,
                };
                let needs_dict = matches!(
                    encoding,
                    Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY
                );
                if needs_dict && !dictionary {
                    return Err(bad(&format!(
                        "row group {g}, column {c}: a dictionary-encoded page without a \
                         dictionary page"
                    )));
                }
            }
        }
    }
    Ok(())
}

//! What `ncf-negsample` writes: the verified test negatives of a dataset, and the training
//! samples of any epoch (the very samples `ncf-train` draws) as Arrow IPC, Parquet or TSV.

use crate::data::dataset::{Col, Dataset, SCAN_BLOCK};
use crate::sampling::rng::Rng;
use crate::sampling::sampler::EpochSamples;
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

/// `per_user` test negatives for every test row of `data` (row-major, test order): distinct
/// items the user has neither in train nor in test, from [`crate::sampling::sampler::test_negatives`].
/// A count no test user can have, or more than memory holds, is refused before anything is drawn.
/// (ncf-negsample writing a dataset directory in place draws them block by block instead:
/// [`check_test_negatives`], then [`sample_test_negatives_rows`].)
pub fn sample_test_negatives(data: &Dataset, per_user: usize, seed: u64) -> Result<Vec<u32>> {
    check_test_negatives(data, per_user)?;
    let total = check_memory(data, per_user)?;
    let mut out = Vec::with_capacity(total);
    sample_test_negatives_rows(data, per_user, seed, 0..data.test_users.len(), &mut out)?;
    Ok(out)
}

/// Each user's train items: a slice of the train items column by per-user offsets.
struct TrainOf<'a> {
    offsets: std::borrow::Cow<'a, [u64]>,
    items: &'a Col<u32>,
}

impl<'a> TrainOf<'a> {
    fn new(data: &'a Dataset) -> Result<Self> {
        let offsets = data
            .train_users
            .offsets(data.n_users)
            .ok_or_else(|| Error::invalid("train rows are not sorted by user"))?;
        Ok(TrainOf {
            offsets,
            items: &data.train_items,
        })
    }

    fn span(&self, u: u32) -> std::ops::Range<usize> {
        self.offsets[u as usize] as usize..self.offsets[u as usize + 1] as usize
    }

    /// User `u`'s train items and `test_item`, sorted and each once, into `out`.
    fn exclude(&self, u: u32, test_item: u32, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.items[self.span(u)]);
        out.push(test_item);
        out.sort_unstable();
        out.dedup();
    }
}

/// The negatives of test rows `rows` of `data` only, appended to `out` (the same as those rows
/// of [`sample_test_negatives`]: each user's draws depend on the user alone). The train items
/// walked are released from the resident set after the block.
pub fn sample_test_negatives_rows(
    data: &Dataset,
    per_user: usize,
    seed: u64,
    rows: std::ops::Range<usize>,
    out: &mut Vec<u32>,
) -> Result<()> {
    let rng = Rng::new(seed);
    let train = TrainOf::new(data)?;
    let mut exclude = Vec::new();
    for r in rows.clone() {
        let u = data.test_users[r];
        train.exclude(u, data.test_items[r], &mut exclude);
        crate::sampling::sampler::test_negatives(&rng, u, per_user, data.n_items, &exclude, out)?;
    }
    if let (Some(&first), Some(&last)) = (
        data.test_users.get(rows.start),
        rows.end.checked_sub(1).and_then(|r| data.test_users.get(r)),
    ) {
        train
            .items
            .release(train.span(first).start..train.span(last).end);
    }
    Ok(())
}

/// An error unless every test user of `data` has `per_user` items left to be its test
/// negatives: names the user with the fewest (by raw id), with the way out. One pass over the
/// train items, block by block.
pub fn check_test_negatives(data: &Dataset, per_user: usize) -> Result<()> {
    let train = TrainOf::new(data)?;
    // The test user with the fewest items left to draw from (first such user in test order).
    let mut fewest: Option<(u32, usize)> = None;
    let mut exclude = Vec::new();
    let mut released = 0;
    for (r, &u) in data.test_users.iter().enumerate() {
        train.exclude(u, data.test_items[r], &mut exclude);
        let positives = exclude.len();
        if fewest.is_none_or(|(_, p)| positives > p) {
            fewest = Some((u, positives));
        }
        let end = train.span(u).end;
        if end - released >= SCAN_BLOCK {
            train.items.release(released..end);
            released = end;
        }
    }
    train.items.release(released..train.items.len());
    let n_items = data.n_items as usize;
    if let Some((u, positives)) = fewest {
        let left = n_items.saturating_sub(positives);
        if per_user > left {
            let user = crate::data::ids::show_dense(&data.user_raw, u);
            let why = match per_user > n_items {
                true => format!(
                    "the dataset has only {n_items} items, and user {user} has {positives} of them"
                ),
                false => format!("user {user} has {positives} of the {n_items} items"),
            };
            let way_out = match left {
                0 => format!(
                    "none is left to be its test negatives: leave user {user} out of the ratings \
                     before ncf-prep, or rank every unseen item with ncf-eval --full (no test \
                     negatives needed)"
                ),
                _ => format!(
                    "only {left} can be test negatives (distinct items a user has neither in \
                     train nor in test): give --test-negatives {left} or fewer, or leave user \
                     {user} out of the ratings before ncf-prep"
                ),
            };
            return Err(Error::usage(format!(
                "--test-negatives {per_user}: {why} in train and test, so {way_out}"
            )));
        }
    }
    Ok(())
}

/// The number of test negatives `per_user` for each test user of `data` makes, or an error
/// when they would not fit in memory (the negatives, their Arrow column and the encoded table).
fn check_memory(data: &Dataset, per_user: usize) -> Result<usize> {
    let (users, bytes_each) = (data.test_users.len() as u64, 4 * 3);
    let bytes = (per_user as u64)
        .checked_mul(users)
        .and_then(|n| n.checked_mul(bytes_each))
        .unwrap_or(u64::MAX);
    crate::memory::require(
        bytes,
        &format!(
            "{per_user} test negatives for each of the {} test users",
            data.test_users.len()
        ),
        "give fewer --test-negatives (NVIDIA's protocol uses 100)",
    )?;
    Ok(per_user * data.test_users.len())
}

/// How [`write_epoch_samples`] encodes the samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleFormat {
    /// Arrow IPC stream (the format of pipes).
    Ipc,
    /// Parquet (needs a file).
    Parquet,
    /// `user\titem\tlabel` lines, dense ids.
    Tsv,
}

impl SampleFormat {
    /// Parquet for `.parquet`, TSV for `.tsv`, an Arrow IPC stream otherwise (and for `-`).
    pub fn for_path(path: &Path) -> SampleFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => SampleFormat::Parquet,
            Some("tsv") => SampleFormat::Tsv,
            _ => SampleFormat::Ipc,
        }
    }
}

/// An epoch's samples file as an output: `--force` replaces only one ncf wrote
/// ([`written_by_ncf`]).
pub const OUTPUT: crate::io::Output = crate::io::Output {
    what: "samples file",
    example: "epoch0.parquet",
    dir: false,
    reused: false,
    ours: written_by_ncf,
};

/// `Ok` when `path` holds epoch samples as ncf writes them in the format its name gives:
/// Parquet or an Arrow IPC stream whose schema is tagged `ncf.table = samples`, or TSV whose
/// lines (those in the first 64 KiB) are all `user<TAB>item<TAB>label` with integer ids and
/// label 0 or 1; else why not.
pub fn written_by_ncf(path: &Path) -> std::result::Result<(), String> {
    use std::io::Read;
    let tagged = |s: &crate::arrow::datatypes::Schema| {
        s.metadata.get("ncf.table").map(String::as_str) == Some("samples")
    };
    let file = std::fs::File::open(path).map_err(|e| format!("cannot be read ({e})"))?;
    let ours = match SampleFormat::for_path(path) {
        SampleFormat::Parquet => {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .is_ok_and(|b| tagged(b.schema()))
        }
        SampleFormat::Ipc => {
            crate::arrow::ipc::reader::StreamReader::try_new(std::io::BufReader::new(file), None)
                .is_ok_and(|r| tagged(&r.schema()))
        }
        SampleFormat::Tsv => {
            let mut head = Vec::new();
            let _ = file.take(64 << 10).read_to_end(&mut head);
            let lines: Vec<&[u8]> = head.split(|&b| b == b'\n').collect();
            // The last piece may be a line cut at 64 KiB (or empty after the last newline).
            let whole = &lines[..lines.len().saturating_sub(1)];
            let id = |f: &[u8]| !f.is_empty() && f.iter().all(u8::is_ascii_digit);
            !whole.is_empty()
                && whole.iter().all(|l| {
                    let f: Vec<&[u8]> = l.split(|&b| b == b'\t').collect();
                    f.len() == 3 && id(f[0]) && id(f[1]) && matches!(f[2], b"0" | b"1")
                })
        }
    };
    match ours {
        true => Ok(()),
        false => Err("not an ncf samples file (as ncf-negsample --epoch writes them)".into()),
    }
}

fn sample_schema() -> crate::arrow::datatypes::SchemaRef {
    use crate::arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("user", DataType::UInt32, false),
            Field::new("item", DataType::UInt32, false),
            Field::new("label", DataType::Float32, false),
        ],
        std::collections::HashMap::from([("ncf.table".to_string(), "samples".to_string())]),
    ))
}

/// Write the samples of `samples` in shuffled order (position 0 first) as (user, item, label)
/// with dense ids, in `format`, to `w`.
pub fn write_epoch_samples<W: Write + Send>(
    samples: &EpochSamples,
    format: SampleFormat,
    w: &mut W,
    what: &str,
) -> Result<()> {
    use crate::arrow::array::{Float32Array, RecordBatch, UInt32Array};
    const CHUNK: u64 = 1 << 20;
    let arrow_err = |e: crate::arrow::error::ArrowError| match e {
        crate::arrow::error::ArrowError::IoError(_, e) => Error::io(what, e),
        e => Error::io(what, std::io::Error::other(e.to_string())),
    };
    let pq_err =
        |e: parquet::errors::ParquetError| Error::io(what, std::io::Error::other(e.to_string()));
    let schema = sample_schema();
    let (mut u, mut i, mut l) = (Vec::new(), Vec::new(), Vec::new());
    let batches = (0..samples.len()).step_by(CHUNK as usize).map(|start| {
        let end = (start + CHUNK).min(samples.len());
        samples.fill(start..end, &mut u, &mut i, &mut l)?;
        RecordBatch::try_new(
            schema.clone(),
            vec![
                std::sync::Arc::new(UInt32Array::from(std::mem::take(&mut u))),
                std::sync::Arc::new(UInt32Array::from(std::mem::take(&mut i))),
                std::sync::Arc::new(Float32Array::from(std::mem::take(&mut l))),
            ],
        )
        .map_err(arrow_err)
    });
    match format {
        SampleFormat::Ipc => {
            let mut sw = crate::arrow::ipc::writer::StreamWriter::try_new(&mut *w, &schema)
                .map_err(arrow_err)?;
            for b in batches {
                sw.write(&b?).map_err(arrow_err)?;
            }
            sw.finish().map_err(arrow_err)?;
        }
        SampleFormat::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .build();
            let mut pw = parquet::arrow::ArrowWriter::try_new(&mut *w, schema.clone(), Some(props))
                .map_err(pq_err)?;
            for b in batches {
                pw.write(&b?).map_err(pq_err)?;
            }
            pw.close().map_err(pq_err)?;
        }
        SampleFormat::Tsv => {
            for b in batches {
                let b = b?;
                let col = |k: usize| b.column(k).clone();
                let (bu, bi, bl) = (col(0), col(1), col(2));
                let bu = bu
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .expect("built above");
                let bi = bi
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .expect("built above");
                let bl = bl
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .expect("built above");
                for k in 0..b.num_rows() {
                    writeln!(w, "{}\t{}\t{}", bu.value(k), bi.value(k), bl.value(k))
                        .map_err(|e| Error::io(what, e))?;
                }
            }
        }
    }
    w.flush().map_err(|e| Error::io(what, e))
}

/// Read samples written by [`write_epoch_samples`] as an Arrow IPC stream.
pub fn read_epoch_samples_ipc<R: std::io::Read>(r: R, what: &str) -> Result<Vec<(u32, u32, f32)>> {
    use crate::arrow::array::{Float32Array, UInt32Array};
    let bad = |e: &dyn std::fmt::Display| Error::parse(what, format!("not a samples stream: {e}"));
    let reader = crate::arrow::ipc::reader::StreamReader::try_new(r, None).map_err(|e| bad(&e))?;
    if reader.schema().fields() != sample_schema().fields() {
        return Err(bad(&"columns are not (user: u32, item: u32, label: f32)"));
    }
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(|e| bad(&e))?;
        let u = b
            .column(0)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .expect("schema checked");
        let i = b
            .column(1)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .expect("schema checked");
        let l = b
            .column(2)
            .as_any()
            .downcast_ref::<Float32Array>()
            .expect("schema checked");
        for k in 0..b.num_rows() {
            out.push((u.value(k), i.value(k), l.value(k)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::four_users as data;
    use crate::sampling::sampler::NegativeMode;

    #[test]
    fn epoch_samples_round_trip_through_ipc_and_tsv() {
        let d = data();
        let s = EpochSamples::over(
            Rng::new(3),
            2,
            4,
            d.n_items,
            NegativeMode::Approximate,
            d.train_users.view(),
            &d.train_items,
            None,
        );
        let want: Vec<_> = (0..s.len()).map(|p| s.at(p).unwrap()).collect();
        let mut buf = Vec::new();
        write_epoch_samples(&s, SampleFormat::Ipc, &mut buf, "x").unwrap();
        assert_eq!(read_epoch_samples_ipc(&buf[..], "x").unwrap(), want);
        let mut tsv = Vec::new();
        write_epoch_samples(&s, SampleFormat::Tsv, &mut tsv, "x").unwrap();
        let text = String::from_utf8(tsv).unwrap();
        assert_eq!(text.lines().count(), want.len());
        let (u, i, l) = want[7];
        assert_eq!(text.lines().nth(7).unwrap(), format!("{u}\t{i}\t{l}"));
        let mut pq = Vec::new();
        write_epoch_samples(&s, SampleFormat::Parquet, &mut pq, "x").unwrap();
        assert_eq!(&pq[..4], b"PAR1");
        assert_eq!(
            SampleFormat::for_path(Path::new("a.parquet")),
            SampleFormat::Parquet
        );
        assert_eq!(SampleFormat::for_path(Path::new("-")), SampleFormat::Ipc);
    }

    #[test]
    fn test_negatives_avoid_every_positive() {
        let d = data();
        let negs = sample_test_negatives(&d, 10, 4).unwrap();
        assert_eq!(negs.len(), 40);
        let pos =
            crate::sampling::sampler::UserItems::new(4, &d.train_users.rows(), &d.train_items);
        for (r, row) in negs.chunks(10).enumerate() {
            let u = d.test_users[r];
            let mut sorted = row.to_vec();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 10);
            assert!(row
                .iter()
                .all(|&i| !pos.contains(u, i) && i != d.test_items[r]));
        }
        assert_eq!(negs, sample_test_negatives(&d, 10, 4).unwrap());
        assert!(sample_test_negatives(&d, 17, 4).is_err());
    }
}

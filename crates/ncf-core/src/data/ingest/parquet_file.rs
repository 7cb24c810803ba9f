//! Parquet interactions: user and item columns (integer or text ids), optional timestamps.

use super::*;

/// Read the interactions of a Parquet file (and the titles of `opts.movies`, if given).
pub(super) fn read_parquet(path: &Path, opts: &ReadOptions) -> Result<Loaded> {
    use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let name = path.display().to_string();
    let sha = sha256_hex(&open_bytes(path, false)?);
    let bad = |e: &dyn std::fmt::Display| {
        Error::parse(&name, format!("not a readable Parquet file ({e})"))
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?;
    crate::data::dataset::check_parquet_chunks(builder.metadata(), file_len, &name)?;
    let again = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    crate::data::dataset::check_parquet_pages(again, &name)?;
    let schema = builder.schema().clone();
    let cols: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let pc = resolve_columns(&cols, opts, &name)?;
    let is_text = |c: usize| super::columns::is_text(schema.field(c).data_type());
    let text_ids = opts.text_ids || is_text(pc.user) || is_text(pc.item);
    let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let columns = budget::Columns {
        time: pc.time.is_some(),
        rating: opts.need_rating,
    };
    budget::require(
        &name,
        budget::parquet(rows, text_ids, columns),
        0,
        rows,
        file_len,
    )?;
    let reader = builder.build().map_err(|e| bad(&e))?;
    let read = read_batches(reader, &cols, &pc, text_ids, opts.need_rating, &name)?;
    let rows = interactions(read, text_ids, pc.time.is_some(), opts.need_rating, &name)?;
    let mut files = vec![json!({"path": name, "sha256": sha})];
    let mut titles = None;
    if let Some(m) = &opts.movies {
        let (t, f) = read_movies_file(m)?;
        titles = Some(t);
        files.push(f);
    }
    Ok(Loaded {
        input: Input::Rows { rows, titles },
        source: json!({"path": name, "format": "parquet", "files": files}),
    })
}

/// The columns of a Parquet file that [`read_parquet`] reads.
struct ParquetCols {
    user: usize,
    item: usize,
    time: Option<usize>,
    rating: Option<usize>,
}

/// Find the user, item, timestamp and rating columns among `cols` (the schema's names);
/// user and item are required, and a rating when `opts.need_rating`.
fn resolve_columns(cols: &[String], opts: &ReadOptions, name: &str) -> Result<ParquetCols> {
    let n = cols.len();
    let user = resolve_col(
        Some(cols),
        opts.user_col.as_deref(),
        &USER_NAMES,
        n,
        "user",
        name,
    )?;
    let item = resolve_col(
        Some(cols),
        opts.item_col.as_deref(),
        &ITEM_NAMES,
        n,
        "item",
        name,
    )?;
    let time = resolve_col(
        Some(cols),
        opts.time_col.as_deref(),
        &TIME_NAMES,
        n,
        "timestamp",
        name,
    )?;
    let rating = resolve_col(
        Some(cols),
        opts.rating_col.as_deref(),
        &RATING_NAMES,
        n,
        "rating",
        name,
    )?;
    let missing = |what: &str, flag: &str| {
        Error::parse(
            name,
            format!(
                "columns [{}] include no {what} column (name it with {flag})",
                cols.join(", ")
            ),
        )
    };
    let user = user.ok_or_else(|| missing("user", "--user-col"))?;
    let item = item.ok_or_else(|| missing("item", "--item-col"))?;
    if opts.need_rating && rating.is_none() {
        return Err(missing("rating", "--rating-col"));
    }
    Ok(ParquetCols {
        user,
        item,
        time,
        rating,
    })
}

/// The columns read from every record batch, before the ids are interned.
struct ReadColumns {
    u_int: Vec<u64>,
    i_int: Vec<u64>,
    texts: [Vec<String>; 2],
    times: Vec<i64>,
    ratings: Vec<f32>,
}

/// Read the id (integers, or text with `text_ids`), timestamp and (with `need_rating`) rating
/// columns of every batch of `reader`, refusing nulls, negative integer ids and ratings that are
/// no number (NaN, infinite), naming the row as the text reader names the line.
fn read_batches(
    reader: ::parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    cols: &[String],
    pc: &ParquetCols,
    text_ids: bool,
    need_rating: bool,
    name: &str,
) -> Result<ReadColumns> {
    use super::columns::{as_f32, as_ids, as_seconds, as_strings};
    use crate::arrow::array::Array;
    let bad = |e: &dyn std::fmt::Display| {
        Error::parse(name, format!("not a readable Parquet file ({e})"))
    };
    let (user, item, time, rating) = (pc.user, pc.item, pc.time, pc.rating);
    let mut u_int = Vec::new();
    let mut i_int = Vec::new();
    let mut texts: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut times = Vec::new();
    let mut ratings = Vec::new();
    let unreadable = |col: usize, what: &'static str| {
        let col = &cols[col];
        move |e: String| {
            Error::parse(
                name,
                format!("column `{col}` cannot be read as {what}: {e}"),
            )
        }
    };
    // Rows before the batch: messages name rows 1-based, as lines are.
    let mut before = 0usize;
    for b in reader {
        let b = b.map_err(|e| bad(&e))?;
        let at = |row: usize| format!("{name}: row {}", before + row + 1);
        let null = |col: usize, what: &str| {
            let a = b.column(col);
            match (0..a.len()).find(|&k| a.is_null(k)) {
                Some(k) => Err(Error::parse(
                    at(k),
                    format!("expected {what} in column `{}`, found null", cols[col]),
                )),
                None => Ok(a),
            }
        };
        for (k, (col, out)) in [(user, &mut u_int), (item, &mut i_int)]
            .into_iter()
            .enumerate()
        {
            let what = ["a user id", "an item id"][k];
            let a = null(col, what)?;
            if text_ids {
                texts[k].extend(as_strings(a).map_err(unreadable(col, "text ids"))?);
            } else {
                out.extend(as_ids(a).map_err(unreadable(col, "integer ids"))?);
            }
        }
        if let Some(t) = time {
            let a = null(t, "a timestamp")?;
            times.extend(as_seconds(a).map_err(unreadable(t, "timestamps"))?);
        }
        if need_rating {
            let r = rating.expect("checked");
            let a = null(r, "a number (rating)")?;
            let values = as_f32(a).map_err(unreadable(r, "ratings"))?;
            if let Some(k) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::parse(
                    at(k),
                    format!(
                        "expected a number (rating) in column `{}`, found {}",
                        cols[r], values[k]
                    ),
                ));
            }
            ratings.extend(values);
        }
        before += b.num_rows();
    }
    Ok(ReadColumns {
        u_int,
        i_int,
        texts,
        times,
        ratings,
    })
}

/// Intern the ids read into codes and build the interactions (an error when there are no rows).
fn interactions(
    read: ReadColumns,
    text_ids: bool,
    has_time: bool,
    need_rating: bool,
    name: &str,
) -> Result<Interactions> {
    let ReadColumns {
        u_int,
        i_int,
        texts,
        times,
        ratings,
    } = read;
    let rows_n = if text_ids {
        texts[0].len()
    } else {
        u_int.len()
    };
    if rows_n == 0 {
        return Err(Error::parse(name, "no rating rows"));
    }
    let (users, user_ids, items, item_ids) = if text_ids {
        let [tu, ti] = texts;
        let (u, un) = intern_strings(&tu);
        let (i, inames) = intern_strings(&ti);
        (u, RawIds::Text(un), i, RawIds::Text(inames))
    } else {
        let (u, un) = merge_int(vec![u_int]);
        let (i, inames) = merge_int(vec![i_int]);
        (u, RawIds::Int(un), i, RawIds::Int(inames))
    };
    Ok(Interactions {
        users,
        items,
        user_ids,
        item_ids,
        timestamps: has_time.then_some(times),
        ratings: need_rating.then_some(ratings),
    })
}

pub(super) fn intern_strings(v: &[String]) -> (Vec<u32>, Vec<String>) {
    let mut keys: Vec<&[u8]> = v.iter().map(|s| s.as_bytes()).collect();
    text_order(&mut keys);
    keys.dedup();
    let index: HashMap<&[u8], u32> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, i as u32))
        .collect();
    let codes = v.iter().map(|s| index[s.as_bytes()]).collect();
    (
        codes,
        keys.iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect(),
    )
}

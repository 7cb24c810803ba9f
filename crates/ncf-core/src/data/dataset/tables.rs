//! A table's columns as Arrow record batches and back: shared by the Parquet directory and
//! the IPC stream.

use super::schema::{check_schema, table_schema};
use super::{Dataset, TrainUsers, CHUNK, ITEMS, TEST, TRAIN, USERS};
use crate::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use crate::arrow::datatypes::SchemaRef;
use crate::{Error, Result};
use std::sync::Arc;

impl Dataset {
    /// One table as record batches of at most [`CHUNK`] rows.
    pub(super) fn batches(&self, table: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let with_time = match table {
            TRAIN => self.train_timestamps.is_some(),
            TEST => self.test_timestamps.is_some(),
            _ => false,
        };
        let schema = table_schema(table, with_time);
        let n = match table {
            TRAIN => self.train_users.len(),
            TEST => self.test_users.len(),
            USERS => self.n_users as usize,
            ITEMS => self.n_items as usize,
            _ => self.test_negatives.len(),
        };
        let train_users = match table {
            TRAIN => self.train_users.rows(),
            _ => std::borrow::Cow::Borrowed(&[][..]),
        };
        let mut out = Vec::new();
        let mut start = 0;
        while start < n || (n == 0 && out.is_empty()) {
            let end = (start + CHUNK).min(n);
            let r = start..end;
            let u32s = |v: &[u32]| Arc::new(UInt32Array::from(v[r.clone()].to_vec())) as ArrayRef;
            let cols: Vec<ArrayRef> = match table {
                TRAIN | TEST => {
                    let (u, i, t): (&[u32], &[u32], _) = if table == TRAIN {
                        (&train_users, &self.train_items, &self.train_timestamps)
                    } else {
                        (&self.test_users, &self.test_items, &self.test_timestamps)
                    };
                    let mut c = vec![u32s(u), u32s(i)];
                    if let Some(t) = t {
                        c.push(Arc::new(Int64Array::from(t[r.clone()].to_vec())));
                    }
                    c
                }
                USERS => vec![
                    Arc::new(UInt32Array::from_iter_values(r.clone().map(|x| x as u32))),
                    Arc::new(StringArray::from_iter_values(
                        self.user_raw[r.clone()].iter(),
                    )),
                ],
                ITEMS => {
                    let titles: StringArray = match &self.item_titles {
                        Some(t) => t[r.clone()].iter().map(|s| s.as_deref()).collect(),
                        None => r.clone().map(|_| None::<&str>).collect(),
                    };
                    vec![
                        Arc::new(UInt32Array::from_iter_values(r.clone().map(|x| x as u32))),
                        Arc::new(StringArray::from_iter_values(
                            self.item_raw[r.clone()].iter(),
                        )),
                        Arc::new(titles),
                    ]
                }
                _ => {
                    let k = self.test_negatives_per_user.max(1);
                    let users =
                        UInt32Array::from_iter_values(r.clone().map(|x| self.test_users[x / k]));
                    vec![Arc::new(users), u32s(&self.test_negatives)]
                }
            };
            let batch = RecordBatch::try_new(schema.clone(), cols)
                .map_err(|e| Error::invalid(format!("building the {table} table: {e}")))?;
            out.push(batch);
            start = end;
            if n == 0 {
                break;
            }
        }
        Ok((schema, out))
    }

    /// Check one table's schema and append its columns to `self`.
    pub(super) fn absorb(
        &mut self,
        table: &str,
        schema: &SchemaRef,
        batches: &[RecordBatch],
        loc: &str,
    ) -> Result<()> {
        let has_time = check_schema(table, schema, loc)?;
        let expect = table_schema(table, has_time);
        let col_u32 = |b: &RecordBatch, c: usize| -> Result<Vec<u32>> {
            let a = b
                .column(c)
                .as_any()
                .downcast_ref::<UInt32Array>()
                .expect("schema checked");
            if a.null_count() > 0 {
                return Err(Error::parse(
                    loc,
                    format!("column {} has nulls", expect.field(c).name()),
                ));
            }
            Ok(a.values().to_vec())
        };
        let col_str = |b: &RecordBatch, c: usize| -> Result<Vec<Option<String>>> {
            let a = b
                .column(c)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("schema checked");
            Ok(a.iter().map(|s| s.map(str::to_string)).collect())
        };
        let mut times: Vec<i64> = Vec::new();
        for b in batches {
            match table {
                TRAIN | TEST => {
                    let (u, i) = (col_u32(b, 0)?, col_u32(b, 1)?);
                    if has_time {
                        let a = b
                            .column(2)
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .expect("checked");
                        if a.null_count() > 0 {
                            return Err(Error::parse(loc, "column timestamp has nulls"));
                        }
                        times.extend_from_slice(a.values());
                    }
                    if table == TRAIN {
                        match &mut self.train_users {
                            TrainUsers::Rows(us) => us.extend(u),
                            us => us.extend(u),
                        }
                        self.train_items.to_mut().extend(i);
                    } else {
                        self.test_users.to_mut().extend(u);
                        self.test_items.to_mut().extend(i);
                    }
                }
                USERS | ITEMS => {
                    let ids = col_u32(b, 0)?;
                    let start = if table == USERS {
                        self.user_raw.len()
                    } else {
                        self.item_raw.len()
                    };
                    if let Some(p) = ids
                        .iter()
                        .enumerate()
                        .position(|(k, &id)| id as usize != start + k)
                    {
                        return Err(Error::parse(
                            loc,
                            format!(
                                "row {}: id {}, expected dense ids 0, 1, 2, ...",
                                start + p,
                                ids[p]
                            ),
                        ));
                    }
                    let raw = col_str(b, 1)?;
                    if raw.iter().any(Option::is_none) {
                        return Err(Error::parse(loc, "column raw_id has nulls"));
                    }
                    let raw = raw.into_iter().map(Option::unwrap_or_default);
                    if table == USERS {
                        self.user_raw.extend(raw);
                    } else {
                        self.item_raw.extend(raw);
                        let titles = col_str(b, 2)?;
                        self.item_titles.get_or_insert_with(Vec::new).extend(titles);
                    }
                }
                _ => {
                    let users = col_u32(b, 0)?;
                    let k = self.test_negatives_per_user;
                    let base = self.test_negatives.len();
                    for (j, &u) in users.iter().enumerate() {
                        let row = (base + j) / k;
                        if self.test_users.get(row) != Some(&u) {
                            return Err(Error::parse(
                                loc,
                                format!(
                                    "row {}: user {u}, expected {k} rows per test user in test order",
                                    base + j
                                ),
                            ));
                        }
                    }
                    self.test_negatives.to_mut().extend(col_u32(b, 1)?);
                }
            }
        }
        match table {
            TRAIN if has_time => self.train_timestamps = Some(times),
            TEST if has_time => self.test_timestamps = Some(times),
            ITEMS
                if self
                    .item_titles
                    .as_ref()
                    .is_some_and(|t| t.iter().all(Option::is_none)) =>
            {
                self.item_titles = None;
            }
            _ => {}
        }
        Ok(())
    }
}

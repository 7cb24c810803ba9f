//! The dataset as consecutive Arrow IPC streams (`ncf-prep -o -`), checked message by message.

use super::memory::check_memory;
use super::meta::meta_from_json;
use super::{Dataset, Meta, ITEMS, META_KEY, NEGATIVES, TEST, TRAIN, USERS};
use crate::{Error, Result};
use std::io::{Read, Write};
use std::sync::Arc;

impl Dataset {
    /// Write the dataset as consecutive Arrow IPC streams (train, test, users, items, then
    /// test_negatives when present), each schema tagged with `ncf.table`; the first also carries
    /// meta.json under `ncf.meta`. See docs/FORMATS.md.
    pub fn write_ipc<W: Write>(&self, mut w: W) -> Result<()> {
        let this = self.with_timestamps()?;
        let this = &*this;
        this.validate("dataset to write")?;
        let meta = this.current_meta();
        let json = serde_json::to_string(&meta).expect("meta serialises");
        let ioerr = |e: crate::arrow::error::ArrowError| match e {
            crate::arrow::error::ArrowError::IoError(_, e) => Error::io("<output>", e),
            e => Error::io("<output>", std::io::Error::other(e.to_string())),
        };
        for (k, t) in this.tables().into_iter().enumerate() {
            let (schema, batches) = this.batches(t)?;
            let schema = if k == 0 {
                let mut s = (*schema).clone();
                s.metadata.insert(META_KEY, json.clone());
                Arc::new(s)
            } else {
                schema
            };
            let mut sw =
                crate::arrow::ipc::writer::StreamWriter::try_new(&mut w, &schema).map_err(ioerr)?;
            for b in batches {
                let b = b.with_schema(schema.clone()).map_err(ioerr)?;
                sw.write(&b).map_err(ioerr)?;
            }
            sw.finish().map_err(ioerr)?;
        }
        w.flush().map_err(|e| Error::io("<output>", e))
    }

    /// Read what [`Dataset::write_ipc`] wrote; `name` labels errors.
    pub fn read_ipc<R: Read>(r: R, name: &str) -> Result<Dataset> {
        let mut r = CheckedIpc::new(r);
        let mut ds = Dataset::default();
        let mut meta: Option<Meta> = None;
        let mut expected = vec![TRAIN, TEST, USERS, ITEMS];
        let mut k = 0;
        while k < expected.len() {
            let t = expected[k];
            let loc = format!("{name}: IPC stream {} ({t})", k + 1);
            let bad = |e: &dyn std::fmt::Display| {
                Error::parse(&loc, format!("not a readable ncf Arrow IPC stream ({e})"))
            };
            let reader = match crate::arrow::ipc::reader::StreamReader::try_new(&mut r, None) {
                Ok(reader) => reader,
                Err(e) => {
                    return Err(match (k, r.parquet) {
                        (0, true) => Error::parse(
                            name,
                            "this is a Parquet file, not an ncf Arrow IPC stream: give the \
                             dataset's directory (not one of its tables), or the stream \
                             `ncf-prep -o -` writes",
                        ),
                        (0, false) => Error::parse(
                            name,
                            format!("not an ncf Arrow IPC stream (expected the output of `ncf-prep -o -`): {e}"),
                        ),
                        _ => bad(&e),
                    })
                }
            };
            let schema = reader.schema();
            if k == 0 {
                let json = schema.metadata.get(META_KEY).ok_or_else(|| {
                    Error::parse(
                        name,
                        format!("first IPC stream has no `{META_KEY}` metadata"),
                    )
                })?;
                let m = meta_from_json(json, name)?;
                check_memory(&m, 0, name)?;
                ds.n_users = m.n_users;
                ds.n_items = m.n_items;
                ds.test_negatives_per_user = m.test_negatives_per_user as usize;
                if m.test_negatives_per_user > 0 {
                    expected.push(NEGATIVES);
                }
                meta = Some(m);
            }
            let mut batches = Vec::new();
            for b in reader {
                batches.push(b.map_err(|e| bad(&e))?);
            }
            ds.absorb(t, &schema, &batches, &loc)?;
            k += 1;
        }
        let meta = meta.expect("first stream read");
        ds.check_meta(&meta, name)?;
        ds.validate(name)?;
        if meta.fingerprint != ds.fingerprint() {
            return Err(Error::invalid(format!(
                "{name}: content does not match the fingerprint in its meta"
            )));
        }
        ds.meta = Some(meta);
        Ok(ds)
    }
}

/// An Arrow IPC stream passed through one message at a time, after checking what the arrow
/// decoder trusts without checking (found by fuzzing: a buffer reaching past the message body
/// panics inside arrow-ipc): every buffer of a record or dictionary batch lies in its body.
struct CheckedIpc<R> {
    inner: R,
    /// The current message (prefix, metadata and body), checked, and how much was passed on.
    pending: Vec<u8>,
    pos: usize,
    /// The input starts with Parquet's magic `PAR1` (a table piped where a stream is expected).
    parquet: bool,
    started: bool,
}

impl<R: Read> CheckedIpc<R> {
    pub(super) fn new(inner: R) -> Self {
        CheckedIpc {
            inner,
            pending: Vec::new(),
            pos: 0,
            parquet: false,
            started: false,
        }
    }

    /// Append exactly `n` bytes of the input to `pending` (growing as they arrive, so a bogus
    /// length cannot allocate); false at a clean end of input before the first byte.
    pub(super) fn take(&mut self, n: u64, what: &str) -> std::io::Result<bool> {
        let before = self.pending.len();
        let got = (&mut self.inner).take(n).read_to_end(&mut self.pending)? as u64;
        if got == n {
            Ok(true)
        } else if got == 0 && before == 0 {
            Ok(false)
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("truncated {what}: {got} of {n} bytes"),
            ))
        }
    }

    pub(super) fn next_message(&mut self) -> std::io::Result<()> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        self.pending.clear();
        self.pos = 0;
        if !self.take(4, "message length")? {
            return Ok(());
        }
        if !std::mem::replace(&mut self.started, true) && self.pending == b"PAR1" {
            self.parquet = true;
            return Err(bad("a Parquet file".into()));
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.pending[..4]);
        if len == [0xff; 4] {
            self.take(4, "message length")?;
            len.copy_from_slice(&self.pending[4..8]);
        }
        let len = i32::from_le_bytes(len);
        if len == 0 {
            return Ok(()); // end of stream: passed on as is
        }
        if len < 0 {
            return Err(bad(format!("negative message length {len}")));
        }
        let start = self.pending.len();
        self.take(len as u64, "message header")?;
        let msg = crate::arrow::ipc::root_as_message(&self.pending[start..])
            .map_err(|e| bad(format!("message header is not valid: {e}")))?;
        let body = msg.bodyLength();
        if body < 0 {
            return Err(bad(format!("negative message body length {body}")));
        }
        let batch = msg
            .header_as_record_batch()
            .or_else(|| msg.header_as_dictionary_batch().and_then(|d| d.data()));
        if let Some(b) = batch {
            if b.length() < 0 {
                return Err(bad(format!("negative row count {}", b.length())));
            }
            for (k, buf) in b.buffers().iter().flatten().enumerate() {
                let end = buf.offset().checked_add(buf.length());
                if buf.offset() < 0 || buf.length() < 0 || end.is_none_or(|e| e > body) {
                    return Err(bad(format!(
                        "buffer {k} at offset {} of length {} lies outside the {body}-byte \
                         message body",
                        buf.offset(),
                        buf.length()
                    )));
                }
            }
            for node in b.nodes().iter().flatten() {
                if node.length() < 0 || node.null_count() < 0 {
                    return Err(bad("negative array length or null count".into()));
                }
            }
        }
        self.take(body as u64, "message body")?;
        Ok(())
    }
}

impl<R: Read> Read for CheckedIpc<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.pending.len() {
            if let Err(e) = self.next_message() {
                self.pending.clear();
                self.pos = 0;
                return Err(e);
            }
        }
        let n = out.len().min(self.pending.len() - self.pos);
        out[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

//! A delimited text file read in parts of bounded size ([`Chunked`]), for preparing inputs
//! larger than the memory (`ncf-prep` out of core, [`crate::data::prep::external`]): each part
//! is whole lines, parsed like the whole file would be, its ids still raw (integers only).

use super::delimited::{first_line, layout_for, parse_part, sniff_text};
use super::*;
use std::io::Read;

/// A regular, uncompressed delimited text file of integer ids, read part by part.
pub struct Chunked {
    file: std::fs::File,
    name: String,
    format: Format,
    layout: Layout,
    opts: ReadOptions,
    len: u64,
    read: u64,
    /// Lines before the next part.
    lines: usize,
    /// Bytes read past the last newline, the start of the next part.
    carry: Vec<u8>,
    hash: Sha256,
    first: bool,
    /// The movies file, when given or found beside the ratings.
    movies: Option<PathBuf>,
}

/// `path` (a ratings file, or a directory holding one) as a [`Chunked`] reader, or `None` when it
/// cannot be read in parts: stdin, gzip, zip, Parquet, the NCF authors' split, text ids (their
/// order needs all of them). `Err` only for what would fail anyway (unreadable, binary, a bad
/// first line).
pub fn open_chunked(path: &Path, opts: &ReadOptions) -> Result<Option<Chunked>> {
    if crate::io::is_stdio(path) || opts.text_ids || authors_split(path, opts.format)?.is_some() {
        return Ok(None);
    }
    let mut opts = opts.clone();
    let path = if path.is_dir() {
        let Some(r) = RATINGS_FILES
            .iter()
            .map(|n| path.join(n))
            .find(|p| p.is_file())
        else {
            return Ok(None);
        };
        if opts.movies.is_none() {
            opts.movies = MOVIES_FILES
                .iter()
                .map(|n| path.join(n))
                .find(|p| p.is_file());
        }
        r
    } else {
        path.to_path_buf()
    };
    if matches!(
        opts.format,
        Some(Format::Zip | Format::Parquet | Format::NcfSplit)
    ) {
        return Ok(None);
    }
    let name = display_name(&path);
    let mut file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(None);
    }
    let mut head = Vec::with_capacity(1 << 16);
    (&mut file)
        .take(1 << 16)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(&path, e))?;
    if head.starts_with(GZIP_MAGIC) || head.starts_with(b"PK\x03\x04") || head.starts_with(b"PAR1")
    {
        return Ok(None);
    }
    let text = sniff::text_of(&head, &name, "ratings")?;
    if text.iter().all(u8::is_ascii_whitespace) {
        // Empty, or blank lines first: the whole-file path says what is wrong.
        return Ok(None);
    }
    let format = opts.format.unwrap_or_else(|| sniff_text(&name, text));
    let layout = layout_for(format, first_line(text), &opts, &name)?;
    let mut hash = Sha256::new();
    hash.update(&head);
    let carry = text.to_vec();
    Ok(Some(Chunked {
        file,
        name,
        format,
        layout,
        len: meta.len(),
        read: head.len() as u64,
        lines: 0,
        carry,
        hash,
        first: true,
        movies: opts.movies.clone(),
        opts,
    }))
}

impl Chunked {
    /// Bytes of the file.
    pub fn file_bytes(&self) -> u64 {
        self.len
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Whether ratings are read (`--min-rating`; the layout has a rating column then).
    pub fn needs_rating(&self) -> bool {
        self.opts.need_rating && self.layout.rating.is_some()
    }

    /// Whether the rows have a timestamp column.
    pub fn has_time(&self) -> bool {
        self.layout.time.is_some()
    }

    /// Memory preparing the whole file at once would take (as the in-memory path checks it),
    /// its rows estimated from the lines of the first 64 KiB.
    pub fn in_memory_need(&self) -> u64 {
        let head = &self.carry[..self.carry.len().min(1 << 16)];
        let lines = budget::lines(head).max(1);
        let rows = (self.len as f64 * lines as f64 / head.len().max(1) as f64) as u64;
        let columns = budget::Columns {
            time: self.has_time(),
            rating: self.opts.need_rating,
        };
        budget::text(self.len, rows, columns)
    }

    /// The rows of the next part of about `bytes` bytes (whole lines), `None` at the end.
    pub fn next_part(&mut self, bytes: usize) -> Result<Option<Interactions>> {
        loop {
            let mut want = bytes.max(1 << 12).saturating_sub(self.carry.len());
            if want == 0 && !self.carry.contains(&b'\n') {
                want = 1 << 16;
            }
            let start = self.carry.len();
            let got = match want {
                0 => 0,
                _ => (&mut self.file)
                    .take(want as u64)
                    .read_to_end(&mut self.carry)
                    .map_err(|e| Error::io(&self.name, e))?,
            };
            self.hash.update(&self.carry[start..]);
            self.read += got as u64;
            // Fewer bytes than asked for: the end of the file.
            let eof = want > 0 && got < want;
            let end = match eof {
                true => self.carry.len(),
                false => match self.carry.iter().rposition(|&b| b == b'\n') {
                    Some(k) => k + 1,
                    // One line longer than a part: read on.
                    None => continue,
                },
            };
            if end == 0 {
                return Ok(None);
            }
            let rest = self.carry.split_off(end);
            let part = std::mem::replace(&mut self.carry, rest);
            let mut layout = self.layout.clone();
            if !self.first {
                layout.header = false;
            }
            let first = std::mem::replace(&mut self.first, false);
            let lines = budget::lines(&part) as usize;
            let before = self.lines;
            self.lines += lines;
            let blank = part.iter().all(u8::is_ascii_whitespace);
            if blank || (first && layout.header && lines <= 1) {
                if eof && self.carry.is_empty() {
                    return Ok(None);
                }
                continue;
            }
            return parse_part(&part, &layout, &self.opts, &self.name, before).map(Some);
        }
    }

    /// meta.json's `source` (once every part was read: it holds the file's sha256), and the
    /// titles of the movies file when there is one.
    pub fn finish(self) -> Result<(serde_json::Value, Option<HashMap<String, String>>)> {
        let mut files = vec![
            json!({"path": self.name, "sha256": hex(&self.hash.finalize()),
            "bytes": self.len}),
        ];
        let mut titles = None;
        if let Some(m) = &self.movies {
            let (t, file) = read_movies_file(m)?;
            titles = Some(t);
            files.push(file);
        }
        Ok((
            json!({"path": self.name, "format": self.format.name(), "files": files}),
            titles,
        ))
    }
}

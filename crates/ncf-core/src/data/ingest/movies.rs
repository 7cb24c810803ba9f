//! Movie titles (`movies.csv`, `movies.dat`, `u.item`): raw item id → title.

use super::*;

pub(super) fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

/// One CSV record with RFC 4180 quotes; returns fields and the rest of the buffer.
pub(super) fn csv_record(buf: &[u8]) -> (Vec<Vec<u8>>, &[u8]) {
    let mut fields = Vec::new();
    let mut cur = Vec::new();
    let mut i = 0;
    let mut quoted = false;
    while i < buf.len() {
        let b = buf[i];
        if quoted {
            if b == b'"' {
                if buf.get(i + 1) == Some(&b'"') {
                    cur.push(b'"');
                    i += 1;
                } else {
                    quoted = false;
                }
            } else {
                cur.push(b);
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == b',' {
            fields.push(std::mem::take(&mut cur));
        } else if b == b'\n' {
            if cur.last() == Some(&b'\r') {
                cur.pop();
            }
            fields.push(cur);
            return (fields, &buf[i + 1..]);
        } else {
            cur.push(b);
        }
        i += 1;
    }
    if cur.last() == Some(&b'\r') {
        cur.pop();
    }
    fields.push(cur);
    (fields, &[])
}

/// Titles by raw movie id from `movies.csv` (UTF-8, quoted, a header naming a `title` column),
/// `movies.dat` (`::`, latin-1) or `u.item` (`|`, latin-1); the kind is chosen by `file_name`.
/// A file that is no movies file (no title column; titles that are all numbers, as a ratings
/// file's columns are) and an id given twice are refused: either would attach wrong titles.
pub fn parse_movies(buf: &[u8], file_name: &str, loc: &str) -> Result<HashMap<String, String>> {
    let buf = super::sniff::text_of(buf, loc, "movies")?;
    let mut titles = Titles {
        out: HashMap::new(),
        lines: HashMap::new(),
        numeric: true,
        again: None,
    };
    let lower = file_name.to_ascii_lowercase();
    if lower.ends_with(".csv") {
        let (header, mut rest) = csv_record(buf);
        let names: Vec<String> = header
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_string())
            .collect();
        let title = names.iter().position(|n| n.eq_ignore_ascii_case("title"));
        let Some(title) = title else {
            return Err(Error::parse(
                format!("{loc}:1"),
                format!(
                    "header [{}] has no title column: --movies takes a movies file \
                     (movieId,title,... as movies.csv), not a ratings file",
                    names
                        .iter()
                        .map(|n| shown(n.as_bytes()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let id = names
            .iter()
            .position(|n| ITEM_NAMES.iter().any(|c| n.eq_ignore_ascii_case(c)))
            .unwrap_or(0);
        let mut line = 1;
        while !rest.is_empty() {
            let (f, r) = csv_record(rest);
            rest = r;
            line += 1;
            if f.len() == 1 && f[0].is_empty() {
                continue;
            }
            if f.len() <= id.max(title) {
                return Err(Error::parse(
                    format!("{loc}:{line}"),
                    format!(
                        "expected {} fields as the header has, found {}",
                        names.len(),
                        f.len()
                    ),
                ));
            }
            let t = String::from_utf8(f[title].clone())
                .map_err(|_| Error::parse(format!("{loc}:{line}"), "title is not valid UTF-8"))?;
            titles.add(String::from_utf8_lossy(&f[id]).trim().to_string(), t, line);
        }
    } else {
        let sep: &[u8] = if lower.ends_with(".dat") { b"::" } else { b"|" };
        let mut fields: [&[u8]; 2] = [&[]; 2];
        for (k, raw) in buf.split(|&b| b == b'\n').enumerate() {
            let line = strip_cr(raw);
            if line.is_empty() {
                continue;
            }
            if split_fields(line, sep, &mut fields) < 2 {
                return Err(Error::parse(
                    format!("{loc}:{}", k + 1),
                    format!("expected id{0}title{0}...", String::from_utf8_lossy(sep)),
                ));
            }
            titles.add(
                latin1(fields[0]).trim().to_string(),
                latin1(fields[1]),
                k + 1,
            );
        }
    }
    if titles.numeric && !titles.out.is_empty() {
        return Err(Error::parse(
            loc,
            "every title is a number: this looks like a ratings file, not a movies file \
             (movies.dat lines are MovieID::Title::Genres, u.item lines id|title|...)",
        ));
    }
    if let Some((id, line, first)) = titles.again {
        return Err(Error::parse(
            format!("{loc}:{line}"),
            format!(
                "movie id {} again (first on line {first}): which title is meant? keep one line \
                 per id",
                shown(id.as_bytes())
            ),
        ));
    }
    Ok(titles.out)
}

/// The titles read so far, the line of each id, whether every title is a number, and the first
/// id given again (its line and its first line), refused once the file is known to be a movies
/// file (a ratings file repeats ids on every line: that is the better message).
struct Titles {
    out: HashMap<String, String>,
    lines: HashMap<String, usize>,
    numeric: bool,
    again: Option<(String, usize, usize)>,
}

impl Titles {
    fn add(&mut self, id: String, title: String, line: usize) {
        self.numeric &= title.trim().parse::<f64>().is_ok();
        match self.lines.get(&id) {
            Some(&first) => {
                self.again.get_or_insert((id, line, first));
            }
            None => {
                self.lines.insert(id.clone(), line);
                self.out.insert(id, title);
            }
        }
    }
}

pub(super) fn read_movies_file(
    path: &Path,
) -> Result<(HashMap<String, String>, serde_json::Value)> {
    let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let name = path.display().to_string();
    let t = parse_movies(&buf, &name, &name)?;
    Ok((
        t,
        json!({"path": name, "sha256": sha256_hex(&buf), "bytes": buf.len(), "role": "movies"}),
    ))
}

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

/// Titles by raw movie id from `movies.csv` (UTF-8, quoted), `movies.dat` (`::`, latin-1) or
/// `u.item` (`|`, latin-1); the kind is chosen by `file_name`.
pub fn parse_movies(buf: &[u8], file_name: &str, loc: &str) -> Result<HashMap<String, String>> {
    let buf = super::sniff::text_of(buf, loc)?;
    let mut out = HashMap::new();
    let lower = file_name.to_ascii_lowercase();
    if lower.ends_with(".csv") {
        let (_header, mut rest) = csv_record(buf);
        let mut line = 1;
        while !rest.is_empty() {
            let (f, r) = csv_record(rest);
            rest = r;
            line += 1;
            if f.len() == 1 && f[0].is_empty() {
                continue;
            }
            if f.len() < 2 {
                return Err(Error::parse(
                    format!("{loc}:{line}"),
                    "expected movieId,title,...",
                ));
            }
            let title = String::from_utf8(f[1].clone())
                .map_err(|_| Error::parse(format!("{loc}:{line}"), "title is not valid UTF-8"))?;
            out.insert(String::from_utf8_lossy(&f[0]).trim().to_string(), title);
        }
    } else {
        let sep: &[u8] = if lower.ends_with(".dat") { b"::" } else { b"|" };
        let mut fields: [&[u8]; 16] = [&[]; 16];
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
            out.insert(latin1(fields[0]).trim().to_string(), latin1(fields[1]));
        }
    }
    Ok(out)
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

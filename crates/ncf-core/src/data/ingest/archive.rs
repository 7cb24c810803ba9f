//! GroupLens .zip archives: the ratings file inside (and the movie titles beside it).

use super::*;

pub(super) type ZipRead = (
    Interactions,
    Format,
    Option<(Option<HashMap<String, String>>, serde_json::Value)>,
);

/// The ratings (and titles) inside zip archive `bytes`, with `held` bytes of input in memory.
pub(super) fn read_zip(
    bytes: &[u8],
    name: &str,
    opts: &ReadOptions,
    held: Held,
) -> Result<ZipRead> {
    let bad =
        |e: &dyn std::fmt::Display| Error::parse(name, format!("not a readable zip archive ({e})"));
    let mut zip = ::zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| bad(&e))?;
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(&e))?;
    let find = |wanted: &[&str]| {
        wanted.iter().find_map(|w| {
            names
                .iter()
                .position(|n| n == w || n.ends_with(&format!("/{w}")))
        })
    };
    let Some(ri) = find(&RATINGS_FILES) else {
        return Err(Error::invalid(format!(
            "{name}: no ratings file inside the zip (looked for {}; it holds {})",
            RATINGS_FILES.join(", "),
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    // The declared size is untrusted (found by fuzzing: it allocated 4 GB up front): the
    // buffer grows with what really arrives, checked against the memory available as it does.
    let entry = |zip: &mut ::zip::ZipArchive<Cursor<&[u8]>>, i: usize| -> Result<Vec<u8>> {
        let f = zip.by_index(i).map_err(|e| bad(&e))?;
        let loc = format!("{name}!{}", names[i]);
        budget::read_checked(f, &loc, held, opts.need_rating, |e| {
            Error::parse(&loc, e.to_string())
        })
    };
    let data = entry(&mut zip, ri)?;
    let rloc = format!("{name}!{}", names[ri]);
    let format = sniff_text(&names[ri], &data);
    let (rows, format) = read_text(
        &data,
        format,
        &rloc,
        &ReadOptions {
            format: Some(format),
            ..opts.clone()
        },
        held.plus_resident(data.len() as u64),
    )?;
    let mut entries = vec![json!({"path": names[ri], "sha256": sha256_hex(&data)})];
    let mut titles = None;
    if opts.movies.is_none() {
        if let Some(mi) = find(&MOVIES_FILES) {
            let m = entry(&mut zip, mi)?;
            titles = Some(parse_movies(
                &m,
                &names[mi],
                &format!("{name}!{}", names[mi]),
            )?);
            entries.push(json!({"path": names[mi], "sha256": sha256_hex(&m)}));
        }
    }
    Ok((rows, format, Some((titles, json!(entries)))))
}

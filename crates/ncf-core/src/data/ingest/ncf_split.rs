//! The NCF authors' pre-split files (`x.train.rating`, `x.test.rating`, `x.test.negative`): dense
//! ids, the test split and its 99 negatives as they published them.

use super::*;

/// The prefix of the authors' split files when `path` names one (`x.train.rating`, prefix `x`, or
/// a directory holding exactly one `*.train.rating`).
pub(super) fn ncf_prefix(path: &Path) -> Option<PathBuf> {
    let s = path.to_string_lossy();
    for suffix in [".train.rating", ".test.rating", ".test.negative"] {
        if let Some(p) = s.strip_suffix(suffix) {
            return Some(PathBuf::from(p));
        }
    }
    if path.is_dir() {
        let mut found = Vec::new();
        for e in std::fs::read_dir(path).ok()?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(p) = n.strip_suffix(".train.rating") {
                found.push(path.join(p));
            }
        }
        return (found.len() == 1).then(|| found.pop().unwrap());
    }
    let train = PathBuf::from(format!("{s}.train.rating"));
    train.is_file().then(|| path.to_path_buf())
}

/// Rows `user\titem\t...` of a `.rating` file: ids are the authors' dense ids.
/// Users, items, timestamps (0 when absent) and the file's sha256.
pub(super) type RatingRows = (Vec<u32>, Vec<u32>, Vec<i64>, String);

/// Parse a `.rating` file (`loc` labels errors) into its [`RatingRows`].
pub(super) fn parse_rating_file(buf: &[u8], loc: &str) -> Result<RatingRows> {
    let loc = loc.to_string();
    if buf.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::parse(
            &loc,
            "empty file (expected user\\titem\\trating\\ttimestamp lines)",
        ));
    }
    let (mut u, mut i, mut t) = (Vec::new(), Vec::new(), Vec::new());
    let mut f: [&[u8]; 16] = [&[]; 16];
    for (k, raw) in buf.split(|&b| b == b'\n').enumerate() {
        let line = strip_cr(raw);
        if line.is_empty() {
            continue;
        }
        let n = split_fields(line, b"\t", &mut f);
        let at = || format!("{loc}:{}", k + 1);
        if n < 2 {
            return Err(Error::parse(
                at(),
                format!(
                    "expected user\\titem\\trating\\ttimestamp, found `{}`",
                    shown(line)
                ),
            ));
        }
        let id = |x: &[u8], what: &str| {
            parse_id(x)
                .filter(|&v| v < u32::MAX as u64)
                .map(|v| v as u32)
                .ok_or_else(|| {
                    Error::parse(
                        at(),
                        format!("expected an integer {what} id, found `{}`", shown(x)),
                    )
                })
        };
        u.push(id(f[0], "user")?);
        i.push(id(f[1], "item")?);
        let ts = if n >= 4 {
            parse_i64(f[3]).ok_or_else(|| {
                Error::parse(
                    at(),
                    format!(
                        "expected an integer timestamp in field 4, found `{}`",
                        shown(f[3])
                    ),
                )
            })?
        } else {
            0
        };
        t.push(ts);
    }
    Ok((u, i, t, sha256_hex(buf)))
}

/// Read the authors' `PREFIX.train.rating`, `PREFIX.test.rating`, `PREFIX.test.negative`,
/// keeping their split, ids and negatives exactly.
pub fn read_ncf_split(prefix: &Path) -> Result<Loaded> {
    let p = |s: &str| PathBuf::from(format!("{}{s}", prefix.display()));
    let paths = [p(".train.rating"), p(".test.rating"), p(".test.negative")];
    let mut bufs = Vec::with_capacity(3);
    for path in &paths {
        bufs.push(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    }
    let names = paths.map(|p| p.display().to_string());
    ncf_split_from_bytes(
        [&bufs[0], &bufs[1], &bufs[2]],
        [&names[0], &names[1], &names[2]],
        &prefix.display().to_string(),
    )
}

/// The authors' three files already in memory (train, test, negatives; `names` label errors):
/// what [`read_ncf_split`] does after reading them, and the fuzzer's entry point.
pub fn ncf_split_from_bytes(bufs: [&[u8]; 3], names: [&str; 3], prefix: &str) -> Result<Loaded> {
    let [train_name, test_name, nloc] = names;
    let (tu, ti, tt, train_sha) = parse_rating_file(bufs[0], train_name)?;
    let (su, si, st, test_sha) = parse_rating_file(bufs[1], test_name)?;
    let neg_buf = bufs[2];
    let order = test_order(&su, test_name)?;
    let (negs, per_user) = parse_negatives(neg_buf, &su, &si, nloc, test_name)?;
    let (n_users, n_items) = checked_id_counts([&tu, &ti], [&su, &si], &negs, train_name)?;
    // Train sorted by user then time; stable, so ties keep file order.
    let mut t_order: Vec<usize> = (0..tu.len()).collect();
    t_order.sort_by_key(|&k| (tu[k], tt[k]));
    let per_user = per_user.unwrap_or(0);
    let ds = Dataset {
        meta: None,
        n_users,
        n_items,
        train_users: t_order.iter().map(|&k| tu[k]).collect(),
        train_items: t_order.iter().map(|&k| ti[k]).collect(),
        train_timestamps: Some(t_order.iter().map(|&k| tt[k]).collect()),
        test_users: order.iter().map(|&k| su[k]).collect(),
        test_items: order.iter().map(|&k| si[k]).collect(),
        test_timestamps: Some(order.iter().map(|&k| st[k]).collect()),
        test_negatives: order
            .iter()
            .flat_map(|&k| negs[k].clone().unwrap())
            .collect(),
        test_negatives_per_user: per_user,
        user_raw: (0..n_users).map(|u| u.to_string()).collect(),
        item_raw: (0..n_items).map(|i| i.to_string()).collect(),
        item_titles: None,
        timestamps_in: None,
        mapped_split: None,
    };
    let files = json!([
        {"path": train_name, "sha256": train_sha},
        {"path": test_name, "sha256": test_sha},
        {"path": nloc, "sha256": sha256_hex(neg_buf)},
    ]);
    Ok(Loaded {
        input: Input::Split(Box::new(ds)),
        source: json!({"path": prefix, "format": "ncf", "files": files}),
    })
}

/// The test rows in user order (the authors' file already is), refusing a user with two.
fn test_order(su: &[u32], test_name: &str) -> Result<Vec<usize>> {
    let mut order: Vec<usize> = (0..su.len()).collect();
    order.sort_by_key(|&k| su[k]);
    if let Some(w) = order.windows(2).find(|w| su[w[0]] == su[w[1]]) {
        return Err(Error::parse(
            test_name,
            format!(
                "user {} has more than one test row (lines {} and {})",
                su[w[0]],
                w[0] + 1,
                w[1] + 1
            ),
        ));
    }
    Ok(order)
}

/// The negatives of each test row, in the test file's order (None: no line for it).
type RowNegatives = Vec<Option<Vec<u32>>>;

/// The negatives line of each test row (in the test file's order) and how many negatives each
/// has: every test user needs exactly one line, all with the same count, naming its test pair.
fn parse_negatives(
    neg_buf: &[u8],
    su: &[u32],
    si: &[u32],
    nloc: &str,
    test_name: &str,
) -> Result<(RowNegatives, Option<usize>)> {
    let row_of: HashMap<u32, usize> = su.iter().enumerate().map(|(k, &u)| (u, k)).collect();
    let mut negs: RowNegatives = vec![None; su.len()];
    let mut per_user = None;
    let mut f: Vec<&[u8]> = Vec::new();
    for (k, raw) in neg_buf.split(|&b| b == b'\n').enumerate() {
        let line = strip_cr(raw);
        if line.is_empty() {
            continue;
        }
        let at = || format!("{nloc}:{}", k + 1);
        f.clear();
        f.extend(line.split(|&b| b == b'\t'));
        let head = f[0];
        let pair = head.strip_prefix(b"(").and_then(|h| h.strip_suffix(b")"));
        let parsed = pair.and_then(|p| {
            let c = p.iter().position(|&b| b == b',')?;
            Some((parse_id(&p[..c])?, parse_id(&p[c + 1..])?))
        });
        let Some((u, i)) = parsed else {
            return Err(Error::parse(
                at(),
                format!(
                    "expected `(user,item)` then tab-separated negatives, found `{}`",
                    shown(head)
                ),
            ));
        };
        let Some(&row) = row_of.get(&(u as u32)) else {
            return Err(Error::parse(
                at(),
                format!("user {u} has no row in {test_name}"),
            ));
        };
        if si[row] as u64 != i {
            return Err(Error::parse(
                at(),
                format!(
                    "pair ({u},{i}) but the test item of user {u} is {}",
                    si[row]
                ),
            ));
        }
        let items: Vec<u32> = f[1..]
            .iter()
            .map(|x| {
                parse_id(x)
                    .filter(|&v| v < u32::MAX as u64)
                    .map(|v| v as u32)
            })
            .collect::<Option<_>>()
            .ok_or_else(|| Error::parse(at(), "expected integer negative item ids"))?;
        match per_user {
            None => per_user = Some(items.len()),
            Some(n) if n != items.len() => {
                return Err(Error::parse(
                    at(),
                    format!("{} negatives, earlier lines have {n}", items.len()),
                ))
            }
            _ => {}
        }
        if negs[row].replace(items).is_some() {
            return Err(Error::parse(
                at(),
                format!("user {u} has a second negatives line"),
            ));
        }
    }
    if let Some(row) = negs.iter().position(Option::is_none) {
        return Err(Error::parse(
            nloc,
            format!("no negatives line for test user {}", su[row]),
        ));
    }
    Ok((negs, per_user))
}

/// The numbers of users and items the ids of the train and test rows (users, items) and of the
/// negatives imply, refused when they are far beyond the rows (not the authors' dense ids).
fn checked_id_counts(
    train: [&[u32]; 2],
    test: [&[u32]; 2],
    negs: &[Option<Vec<u32>>],
    train_name: &str,
) -> Result<(u32, u32)> {
    let [tu, ti] = train;
    let [su, si] = test;
    let n_users = tu.iter().chain(su).max().map_or(0, |m| m + 1);
    let n_items = ti
        .iter()
        .chain(si)
        .chain(negs.iter().flatten().flatten())
        .max()
        .map_or(0, |m| m + 1);
    // The authors' ids are dense (every user has rows, nearly every item a row or a negative):
    // an id far beyond the number of rows is corruption, and would allocate billions of raw ids.
    let rows = tu.len() + su.len();
    let negs_n: usize = negs.iter().flatten().map(Vec::len).sum();
    let slack = |n: usize| 2 * n + (1 << 20);
    if n_users as usize > slack(rows) {
        return Err(Error::parse(
            train_name,
            format!(
                "user id {} but only {rows} rows in the train and test files: these are not the \
                 authors' dense ids",
                n_users - 1
            ),
        ));
    }
    if n_items as usize > slack(rows + negs_n) {
        return Err(Error::parse(
            train_name,
            format!(
                "item id {} but only {} rows and negatives: these are not the authors' dense ids",
                n_items - 1,
                rows + negs_n
            ),
        ));
    }
    Ok((n_users, n_items))
}

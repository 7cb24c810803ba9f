//! Markdown from results files: the tables of BENCHMARKS.md and README.md's "How fast" lines,
//! written between `<!-- generated:NAME ... -->` and `<!-- /generated:NAME -->` markers so the
//! hand-written text around them is kept. Every number written here links to its results file.

use crate::results::{AllResults, BenchResults, GpuRun, Measurement};
use crate::{Error, Result};
use std::fmt::Write;
use std::path::Path;

/// Replace the body of block `name` in `text` (the markers stay). `file` names the document in errors.
pub fn replace_block(text: &str, name: &str, body: &str, file: &str) -> Result<String> {
    let start = format!("<!-- generated:{name}");
    let end = format!("<!-- /generated:{name} -->");
    let s = text.find(&start).ok_or_else(|| {
        Error::invalid(format!(
            "{file}: no `{start} -->` marker (add the block where the generated text belongs)"
        ))
    })?;
    let after_start = s
        + text[s..]
            .find("-->")
            .ok_or_else(|| Error::invalid(format!("{file}: `{start}` is not closed by -->")))?
        + 3;
    let e = text[after_start..]
        .find(&end)
        .map(|e| after_start + e)
        .ok_or_else(|| Error::invalid(format!("{file}: `{start}` has no `{end}`")))?;
    if text[e + end.len()..].contains(&start) {
        return Err(Error::invalid(format!(
            "{file}: block {name} appears twice"
        )));
    }
    Ok(format!(
        "{}\n{}\n{}",
        &text[..after_start],
        body.trim_end(),
        &text[e..]
    ))
}

/// `1234567` → `1,234,567`.
pub fn commas(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (k, c) in s.chars().enumerate() {
        if k > 0 && (s.len() - k) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Three significant digits, at least.
fn sig(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A value with its unit, readable: `154.5 M samples/s`, `118,451 samples/s`, `5.65 s`.
pub fn value(v: f64, unit: &str) -> String {
    if unit.ends_with("/s") && v >= 1e6 {
        format!("{:.1} M {unit}", v / 1e6)
    } else if unit.ends_with("/s") && v >= 1e3 {
        format!("{} {unit}", commas(v))
    } else if unit == "MB" {
        format!("{} MB", commas(v))
    } else {
        format!("{} {unit}", sig(v))
    }
}

/// Just the number, in the style of `value` (for spreads).
fn number(v: f64, unit: &str) -> String {
    if unit.ends_with("/s") && v >= 1e6 {
        format!("{:.1} M", v / 1e6)
    } else if (unit.ends_with("/s") && v >= 1e3) || unit == "MB" {
        commas(v)
    } else {
        sig(v)
    }
}

/// How many times better ours is than theirs (accounts for lower-is-better units).
pub fn ratio(ours: &Measurement, theirs: &Measurement) -> f64 {
    if ours.better == "lower" {
        theirs.median / ours.median
    } else {
        ours.median / theirs.median
    }
}

fn link(prefix: &str, rel: &Path) -> String {
    let p = format!("{prefix}{}", rel.display());
    format!("[`{p}`]({p})")
}

fn machine_line(r: &BenchResults) -> String {
    let m = &r.machine;
    let mut s = format!(
        "{}: {}, {} cores, {} GiB",
        m.name, m.cpu, m.cores, m.memory_gib
    );
    if let Some(g) = &m.gpu {
        let _ = write!(s, ", {g}");
        if let Some(d) = &m.gpu_driver {
            let _ = write!(s, " (driver {d})");
        }
    } else {
        s.push_str(", no GPU");
    }
    let _ = write!(
        s,
        "; {}; {}; commit `{}`{}",
        m.os,
        m.rustc,
        m.git_commit,
        if m.git_dirty { " + local changes" } else { "" }
    );
    if let Some(l) = m.load_average {
        let _ = write!(s, "; load average {l:.2} at the start");
    }
    s
}

/// The table of one `make bench` results file: median, spread, repetitions, and the PyTorch
/// peer's figure beside ours where it was measured in the same run.
pub fn bench_table(rel: &Path, r: &BenchResults, prefix: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "`make bench` of {} — results file {}  \n{}\n",
        r.date,
        link(prefix, rel),
        machine_line(r)
    );
    s.push_str("| benchmark | median | spread (min – max) | runs | PyTorch peer (median) | ncf vs peer |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    for m in r.benchmarks.iter().filter(|m| m.peer_of.is_none()) {
        let peer = r
            .benchmarks
            .iter()
            .find(|p| p.peer_of.as_deref() == Some(m.id.as_str()));
        let (pv, pr) = match peer {
            Some(p) => (value(p.median, &p.unit), format!("{:.2}×", ratio(m, p))),
            None => ("—".into(), "—".into()),
        };
        let note = m
            .note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {}{note} | {} | {} – {} | {} | {pv} | {pr} |",
            m.title,
            value(m.median, &m.unit),
            number(m.min, &m.unit),
            number(m.max, &m.unit),
            m.runs.len()
        );
    }
    for n in &r.notes {
        let _ = writeln!(s, "\n- {n}");
    }
    s
}

/// The latest `make bench` file in full, and a line for each earlier one.
pub fn bench_section(all: &AllResults, prefix: &str) -> String {
    let Some((rel, r)) = all.latest_bench() else {
        return "No `make bench` results file yet: run `make bench`.\n".into();
    };
    let mut s = bench_table(rel, r, prefix);
    let earlier: Vec<_> = all.bench.iter().rev().skip(1).collect();
    if !earlier.is_empty() {
        s.push_str("\nEarlier runs:\n\n");
        for (p, r) in earlier {
            let _ = writeln!(s, "- {} ({}, {})", link(prefix, p), r.date, r.machine.name);
        }
    }
    s
}

/// One device-check run: parity, ml-1m, throughput per precision beside the PyTorch peer.
pub fn gpu_run(run: &GpuRun, prefix: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Results file: {} ({})\n",
        link(prefix, &run.file),
        run.env.iter().take(1).cloned().collect::<Vec<_>>().join("")
    );
    if let Some((pass, total)) = run.parity_pass {
        let _ = writeln!(s, "- Parity: **{pass} of {total} checks pass**.");
    }
    if let Some((file, hr, ndcg, ep, t)) = &run.ml1m {
        let epoch = ep.map(|e| format!(" (epoch {e})")).unwrap_or_default();
        let _ = writeln!(
            s,
            "- ml-1m, the paper's split: best HR@10 **{hr:.4}**, NDCG@10 {ndcg:.4}{epoch}, {t:.1} s of training ({}).",
            link(prefix, file)
        );
    }
    s.push_str("\n| precision | ncf samples/s | PyTorch peer samples/s | ncf vs peer |\n|---|---|---|---|\n");
    for (p, ours, peer) in &run.throughput {
        let (pv, r) = match peer {
            Some(t) => (format!("{:.1} M", t / 1e6), format!("{:.2}×", ours / t)),
            None => ("—".into(), "—".into()),
        };
        let _ = writeln!(s, "| {p} | {:.1} M | {pv} | {r} |", ours / 1e6);
    }
    s
}

/// The newest GPU run that has throughput figures.
fn latest_gpu(all: &AllResults) -> Option<&GpuRun> {
    all.gpu.iter().rev().find(|g| !g.throughput.is_empty())
}

/// README's "How fast" lines: headline ratios against the PyTorch peer and NVIDIA's published
/// figures, each linked to the results file it comes from.
pub fn how_fast(all: &AllResults, prefix: &str) -> String {
    let mut s = String::new();
    if let Some(g) = latest_gpu(all) {
        let best = g
            .throughput
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("non-empty");
        let _ = write!(
            s,
            "- GPU, one {}, NVIDIA's config on the ml-20m shape: **{:.1} M samples/s in {}**",
            g.gpu(),
            best.1 / 1e6,
            best.0
        );
        if let Some(p) = best.2 {
            let _ = write!(
                s,
                ", **{:.2}× the PyTorch NeuMF peer** ({:.1} M) in the same run",
                best.1 / p,
                p / 1e6
            );
        }
        let _ = writeln!(s, " ({}).", link(prefix, &g.file));
        for (rel, p) in &all.published {
            // NVIDIA's "mixed precision" is AMP fp16: compare bf16/fp16 with it.
            // A row's label may name its step ("bf16 (fused)"): the precision is its first word.
            let first = best.0.split(' ').next().unwrap_or_default();
            let prec = if first == "bf16" { "fp16" } else { first };
            let mut figs: Vec<_> = p.figures.iter().filter(|f| f.precision == prec).collect();
            figs.sort_by_key(|f| f.gpus);
            if let Some(one) = figs.first() {
                let list: Vec<String> = figs
                    .iter()
                    .map(|f| {
                        format!(
                            "{:.1} M samples/s on {} GPU{}",
                            f.samples_per_s / 1e6,
                            f.gpus,
                            if f.gpus == 1 { "" } else { "s" }
                        )
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "  {}'s published figures ({}, {}): {}; ncf on one {} is **{:.2}× their {}-GPU figure** ({}).",
                    p.who,
                    one.gpu,
                    prec,
                    list.join(", "),
                    g.gpu(),
                    best.1 / one.samples_per_s,
                    one.gpus,
                    link(prefix, rel)
                );
            }
        }
        if let Some((file, hr, _, _, t)) = &g.ml1m {
            let _ = writeln!(
                s,
                "  ml-1m (the paper's split) reaches best HR@10 {hr:.4} in {t:.1} s of training ({}).",
                link(prefix, file)
            );
        }
    }
    let cores = all
        .latest_bench()
        .map(|(_, r)| r.machine.cores)
        .unwrap_or(0);
    if let Some((rel, m)) = all.latest_with("cpu.train.steady") {
        let _ = write!(
            s,
            "- CPU, {cores} cores, NVIDIA's config on the ml-20m shape: **{}** (steady state, median of {})",
            value(m.median, &m.unit),
            m.runs.len()
        );
        if let Some(p) = all.bench.iter().find(|(p, _)| p == rel).and_then(|(_, r)| {
            r.benchmarks
                .iter()
                .find(|p| p.peer_of.as_deref() == Some("cpu.train.steady"))
        }) {
            let _ = write!(
                s,
                ", **{:.2}× the PyTorch peer** ({}) on the same machine",
                ratio(m, p),
                value(p.median, &p.unit)
            );
        }
        let _ = writeln!(s, " ({}).", link(prefix, rel));
    }
    if let Some((rel, m)) = all.latest_with("prep.csv.parquet") {
        let rss = all
            .latest_with("prep.csv.parquet.rss")
            .map(|(_, r)| format!(", {} peak RSS", value(r.median, &r.unit)))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "- `ncf-prep`: the 20 M-row ml-20m-shaped CSV to Parquet in {} (median of {}, {} – {}){rss} ({}).",
            value(m.median, &m.unit),
            m.runs.len(),
            number(m.min, &m.unit),
            number(m.max, &m.unit),
            link(prefix, rel)
        );
    }
    if let (Some((rel, one)), Some((_, all_users))) = (
        all.latest_with("topk.one_user"),
        all.latest_with("topk.all_users"),
    ) {
        let _ = writeln!(
            s,
            "- `ncf-topk` on ml-1m: one user in {} (whole process), every user at {} ({}).",
            value(one.median, &one.unit),
            value(all_users.median, &all_users.unit),
            link(prefix, rel)
        );
    }
    if s.is_empty() {
        s.push_str("No results files yet: run `make bench`.\n");
    }
    s
}

/// `cpu.scale.r{R}t{T}` → (R, T).
fn ranks_threads(id: &str) -> Option<(u32, u32)> {
    let (r, t) = id.strip_prefix("cpu.scale.r")?.split_once('t')?;
    Some((r.parse().ok()?, t.parse().ok()?))
}

/// The strong-scaling table (issue 5): the newest `make bench` file with `cpu.scale.r{R}t{T}`
/// measurements (whole ml-1m epochs as R ranks × T threads), with that file's `cpu.train.epoch`
/// as 1 rank × all cores.
pub fn scaling_section(all: &AllResults, prefix: &str) -> String {
    let Some((rel, r)) = all
        .bench
        .iter()
        .rev()
        .find(|(_, r)| r.benchmarks.iter().any(|m| ranks_threads(&m.id).is_some()))
    else {
        return "No scaling figures yet: run `make bench`.\n".into();
    };
    let mut rows: Vec<(u32, u32, &Measurement)> = r
        .benchmarks
        .iter()
        .filter_map(|m| ranks_threads(&m.id).map(|(a, b)| (a, b, m)))
        .collect();
    if let Some(m) = r.benchmarks.iter().find(|m| m.id == "cpu.train.epoch") {
        let cores = r.machine.cores as u32;
        if cores > 0 && !rows.iter().any(|&(a, b, _)| (a, b) == (1, cores)) {
            rows.push((1, cores, m));
        }
    }
    rows.sort_by_key(|&(a, b, _)| (a * b, a));
    let base = rows
        .iter()
        .find(|&&(a, b, _)| (a, b) == (1, 1))
        .map(|&(_, _, m)| m.median);
    let mut s = format!(
        "From {} ({}, {}): whole ml-1m epochs, NVIDIA's config, global batch fixed.\n\n",
        link(prefix, rel),
        r.date,
        r.machine.name
    );
    s.push_str("| ranks × threads per rank | cores | samples/s (median) | spread (min – max) | runs | vs 1 × 1 |\n|---|---|---|---|---|---|\n");
    for (a, b, m) in rows {
        let vs = base
            .map(|b0| format!("{:.2}×", m.median / b0))
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            s,
            "| {a} × {b} | {} | {} | {} – {} | {} | {vs} |",
            a * b,
            value(m.median, &m.unit),
            number(m.min, &m.unit),
            number(m.max, &m.unit),
            m.runs.len()
        );
    }
    s
}

/// Every generated block of BENCHMARKS.md, by name.
pub fn benchmarks_blocks(all: &AllResults, prefix: &str) -> Vec<(String, String)> {
    let mut v = vec![
        ("bench-latest".to_string(), bench_section(all, prefix)),
        ("scaling".to_string(), scaling_section(all, prefix)),
    ];
    for g in &all.gpu {
        v.push((format!("gpu:{}", g.dir.display()), gpu_run(g, prefix)));
    }
    v
}

/// Fill the generated blocks of a document; blocks the document does not have are an error
/// only when `required`.
pub fn fill(text: &str, file: &str, blocks: &[(String, String)], required: bool) -> Result<String> {
    let mut out = text.to_string();
    for (name, body) in blocks {
        match replace_block(&out, name, body, file) {
            Ok(t) => out = t,
            Err(e) if required => return Err(e),
            Err(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_inside_the_markers() {
        let doc = "a\n<!-- generated:x (do not edit) -->\nold\n<!-- /generated:x -->\nb\n";
        let out = replace_block(doc, "x", "new\n", "D.md").unwrap();
        assert_eq!(
            out,
            "a\n<!-- generated:x (do not edit) -->\nnew\n<!-- /generated:x -->\nb\n"
        );
        // Idempotent.
        assert_eq!(replace_block(&out, "x", "new", "D.md").unwrap(), out);
        let e = replace_block("a", "x", "", "D.md").unwrap_err().to_string();
        assert!(e.starts_with("D.md: no `<!-- generated:x -->`"), "{e}");
        let e = replace_block("<!-- generated:x -->", "x", "", "D.md").unwrap_err();
        assert!(
            e.to_string().contains("has no `<!-- /generated:x -->`"),
            "{e}"
        );
    }

    #[test]
    fn scaling_ids_parse() {
        assert_eq!(ranks_threads("cpu.scale.r2t1"), Some((2, 1)));
        assert_eq!(ranks_threads("cpu.scale.r16t8"), Some((16, 8)));
        assert_eq!(ranks_threads("cpu.train.epoch"), None);
        assert_eq!(ranks_threads("cpu.scale.rxt1"), None);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(commas(1234567.4), "1,234,567");
        assert_eq!(commas(999.0), "999");
        assert_eq!(value(154.5e6, "samples/s"), "154.5 M samples/s");
        assert_eq!(value(118451.0, "samples/s"), "118,451 samples/s");
        assert_eq!(value(5.654, "s"), "5.65 s");
        assert_eq!(value(1048.0, "MB"), "1,048 MB");
        assert_eq!(value(0.0123, "s"), "0.012 s");
    }

    fn m(id: &str, better: &str, median: f64, peer_of: Option<&str>) -> Measurement {
        Measurement {
            id: id.into(),
            group: "g".into(),
            title: id.into(),
            unit: if better == "lower" { "s" } else { "samples/s" }.into(),
            better: better.into(),
            runs: vec![median],
            median,
            min: median,
            max: median,
            peer_of: peer_of.map(String::from),
            note: None,
        }
    }

    #[test]
    fn ratios_point_the_right_way_and_peer_sits_beside_ours() {
        assert_eq!(
            ratio(&m("a", "higher", 4.0, None), &m("p", "higher", 1.0, None)),
            4.0
        );
        assert_eq!(
            ratio(&m("a", "lower", 2.0, None), &m("p", "lower", 6.0, None)),
            3.0
        );
        let r = BenchResults {
            schema: crate::results::SCHEMA.into(),
            date: "2026-11-26T12:00:00Z".into(),
            machine: Default::default(),
            benchmarks: vec![
                m("cpu.train.steady", "higher", 120_000.0, None),
                m(
                    "peer.cpu.train.steady",
                    "higher",
                    30_000.0,
                    Some("cpu.train.steady"),
                ),
            ],
            notes: vec![],
        };
        let t = bench_table(Path::new("x.json"), &r, "benchmarks/results/");
        assert!(
            t.contains("[`benchmarks/results/x.json`](benchmarks/results/x.json)"),
            "{t}"
        );
        let rows: Vec<_> = t.lines().filter(|l| l.starts_with("| cpu")).collect();
        assert_eq!(rows.len(), 1, "{t}");
        assert!(rows[0].contains("| 30,000 samples/s | 4.00× |"), "{t}");
        assert!(!t.contains("| peer.cpu"), "{t}");
    }
}

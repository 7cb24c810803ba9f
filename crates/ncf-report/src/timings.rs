//! A `cargo build --timings` report (target/cargo-timings/cargo-timing.html, ~200 kB) summed up
//! in a few lines of Markdown: what scripts/bench-newcomer.sh keeps of the build, instead of the
//! report itself.

use crate::{Error, Result};
use serde::Deserialize;
use std::fmt::Write;

/// One compilation unit of the report's `UNIT_DATA`.
#[derive(Clone, Debug, Deserialize)]
pub struct Unit {
    pub name: String,
    /// ` ncf-train "bin"`, ` build-script`, or empty for a library.
    #[serde(default)]
    pub target: String,
    /// Seconds.
    pub duration: f64,
}

/// The value of a `<td>NAME:</td><td>VALUE</td>` row of the report's summary table.
fn field<'a>(html: &'a str, name: &str) -> &'a str {
    let key = format!("<td>{name}:</td><td>");
    html.find(&key)
        .map(|i| &html[i + key.len()..])
        .and_then(|rest| rest.split("</td>").next())
        .unwrap_or("?")
}

/// The profile, wall time, units, the summed unit time with the shares of our crates (ncf-*)
/// and of arrow/parquet, and the `top` slowest units as a Markdown table (docs/BUILD.md).
pub fn summary(html: &str, name: &str, top: usize) -> Result<String> {
    const KEY: &str = "const UNIT_DATA = ";
    let start = html
        .find(KEY)
        .ok_or_else(|| Error::parse(name, "no UNIT_DATA (not a cargo --timings report?)"))?;
    let mut values =
        serde_json::Deserializer::from_str(&html[start + KEY.len()..]).into_iter::<Vec<Unit>>();
    let mut units = values
        .next()
        .ok_or_else(|| Error::parse(name, "UNIT_DATA: no units"))?
        .map_err(|e| Error::parse(name, format!("UNIT_DATA: {e}")))?;
    let sum = |f: &dyn Fn(&Unit) -> bool| {
        units
            .iter()
            .filter(|u| f(u))
            .map(|u| u.duration)
            .sum::<f64>()
    };
    let total = sum(&|_| true);
    let ours = sum(&|u| u.name.starts_with("ncf-"));
    let arrow = sum(&|u| u.name.starts_with("arrow") || u.name.starts_with("parquet"));
    let pct = |x: f64| 100.0 * x / total.max(1e-9);
    let mut out = format!(
        "profile {}, wall {}, {} units, {}\n",
        field(html, "Profile"),
        field(html, "Total time"),
        field(html, "Total units"),
        field(html, "Max concurrency")
    );
    let _ = writeln!(
        out,
        "summed unit time {total:.0} s: ncf-* {ours:.0} s ({:.0} %), arrow/parquet {arrow:.0} s ({:.0} %)\n",
        pct(ours),
        pct(arrow)
    );
    out += "| unit | s |\n|---|---|\n";
    units.sort_by(|a, b| b.duration.total_cmp(&a.duration));
    for u in units.iter().take(top) {
        let unit = format!("{} {}", u.name, u.target.trim());
        let _ = writeln!(out, "| {} | {:.1} |", unit.trim(), u.duration);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_report_is_summed_up_with_its_slowest_units() {
        let html = r#"<table><tr><td>Profile:</td><td>dev</td></tr><tr><td>Total units:</td><td>3</td></tr>
<tr><td>Max concurrency:</td><td>3 (jobs=2 ncpu=2)</td></tr><tr><td>Total time:</td><td>10.0s</td></tr></table>
<script>
const UNIT_DATA = [
  {"i":0,"name":"parquet","version":"60.1.0","target":"","duration":5.0},
  {"i":1,"name":"ncf-cli","version":"0.1.0","target":" ncf-train \"bin\"","duration":3.0},
  {"i":2,"name":"clap","version":"4.6.9","target":"","duration":2.0}
];
const CONCURRENCY_DATA = [];
</script>"#;
        let s = super::summary(html, "t.html", 2).unwrap();
        assert_eq!(
            s,
            "profile dev, wall 10.0s, 3 units, 3 (jobs=2 ncpu=2)\n\
             summed unit time 10 s: ncf-* 3 s (30 %), arrow/parquet 5 s (50 %)\n\n\
             | unit | s |\n|---|---|\n| parquet | 5.0 |\n| ncf-cli ncf-train \"bin\" | 3.0 |\n"
        );
        let e = super::summary("<html></html>", "t.html", 2).unwrap_err();
        assert!(
            e.to_string().contains("not a cargo --timings report"),
            "{e}"
        );
    }
}

//! Reports of the ncf tools: training curves and throughput charts drawn as PNG (with a bundled
//! font, no system fonts), benchmark results files rendered into BENCHMARKS.md / README.md, and
//! the reports of training runs the scripts and `make demo` print ([`runs`]).
//! Each binary is `main` over its module: `ncf-plot` over [`plot`], `ncf-bench-report` over
//! [`bench_report`].

pub mod bench_report;
pub mod chart;
pub mod markdown;
pub mod plot;
pub mod results;
pub mod runs;
pub mod timings;
pub mod trainlog;

pub use ncf_core::{Error, Result};

/// The current UTC time as RFC 3339 (`2026-11-26T12:45:00Z`), without a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the Unix epoch → RFC 3339 UTC (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_696_496), "2026-11-26T12:34:56Z");
    }
}

//! How much memory a run may use, and the one check every tool makes before an allocation whose
//! size a flag or an input controls: [`require`] refuses, naming the size, what it is for and
//! where the limit came from, instead of letting the allocator abort the process.

use crate::{Error, Result};

/// The environment variable that caps what a tool may allocate (bytes, or `K`/`M`/`G`/`T`
/// suffixed, binary multiples).
pub const LIMIT_VAR: &str = "NCF_MEMORY_LIMIT";

/// Memory this process may still use, and where that figure came from: `NCF_MEMORY_LIMIT` when
/// set (an invalid value is an error, never ignored), else the smaller of `/proc/meminfo`'s
/// MemAvailable and the cgroup's `memory.max` minus `memory.current`; `None` when unknown.
pub fn available() -> Result<Option<(u64, String)>> {
    if let Some(v) = std::env::var_os(LIMIT_VAR) {
        let v = v.to_string_lossy();
        return match parse_bytes(&v) {
            Some(b) => Ok(Some((b, format!("{LIMIT_VAR}={v}")))),
            None => Err(Error::usage(format!(
                "{LIMIT_VAR}={v}: not a size; give bytes, or a number with K, M, G or T \
                 (binary multiples: 512M, 2G, 1.5G), or unset it to use what the machine has \
                 available"
            ))),
        };
    }
    Ok(system_available())
}

/// What the machine says is available (MemAvailable, the cgroup's room), without the variable.
fn system_available() -> Option<(u64, String)> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let avail = meminfo.as_deref().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .map(|max| max.saturating_sub(read("/sys/fs/cgroup/memory.current").unwrap_or(0)));
    match (avail, cgroup) {
        (Some(a), Some(c)) if c < a => Some((c, "cgroup memory.max".into())),
        (Some(a), _) => Some((a, "MemAvailable".into())),
        (None, Some(c)) => Some((c, "cgroup memory.max".into())),
        (None, None) => None,
    }
}

/// Refuse `need` bytes when more than [`available`]: `what` says what they are for ("this
/// model (…)"), `advice` the way out; the message adds the sizes and the limit's source.
pub fn require(need: u64, what: &str, advice: &str) -> Result<()> {
    let Some((avail, source)) = available()? else {
        return Ok(());
    };
    if need > avail {
        let advice = if advice.is_empty() {
            String::new()
        } else {
            format!("; {advice}")
        };
        return Err(Error::invalid(format!(
            "{what} needs about {} of memory, but only {} is available ({source}){advice}",
            human_bytes(need),
            human_bytes(avail),
        )));
    }
    Ok(())
}

/// `512`, `64K`, `1.5G`, `2 GiB`-free forms: a non-negative number of bytes, optionally with one
/// of `K`/`M`/`G`/`T` (either case; binary multiples). `None` for anything else (`1KB`, `-5`,
/// `abc`, an overflow).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last()? {
        (k, 'k' | 'K') => (&s[..k], 1u64 << 10),
        (k, 'm' | 'M') => (&s[..k], 1 << 20),
        (k, 'g' | 'G') => (&s[..k], 1 << 30),
        (k, 't' | 'T') => (&s[..k], 1 << 40),
        _ => (s, 1),
    };
    let num = num.trim();
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mul);
    }
    let x: f64 = num.parse().ok()?;
    let bytes = x * mul as f64;
    (x.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// `1.5 GiB` style.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes_and_nothing_else() {
        assert_eq!(parse_bytes("512"), Some(512));
        assert_eq!(parse_bytes("1k"), Some(1024));
        assert_eq!(parse_bytes("20K"), Some(20 << 10));
        assert_eq!(parse_bytes(" 3M "), Some(3 << 20));
        assert_eq!(parse_bytes("1.5G"), Some(3 << 29));
        assert_eq!(parse_bytes("2T"), Some(2 << 40));
        for bad in [
            "",
            "1KB",
            "1KiB",
            "abc",
            "-5",
            "10E",
            "1e3",
            "99999999999999999999999",
            "K",
            ".",
            "16777216T",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sizes_read_as_people_do() {
        assert_eq!(human_bytes(5), "5 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}

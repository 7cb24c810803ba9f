//! `ncf-devcheck`'s flags and run: one subcommand per decision of scripts/device-check.sh. The
//! script runs the commands (under timeouts) and hands their exit codes and outputs here; the
//! decisions are [`crate::judge`], [`crate::stages`], [`crate::env`] and [`crate::results`].

use crate::env::Facts;
use crate::judge::{self, judge_kill, judge_runs, Run};
use crate::results::{self, Results, Stage};
use crate::stages::{self, PeerFacts, Ran, SanitizerRun};
use crate::{StageVerdict, Status};
use anyhow::{anyhow, bail, Context, Result};
use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// The verdicts and the results file of the ncf GPU check (scripts/device-check.sh).
///
/// The script runs every command under a timeout and hands what it left here: each stage's
/// verdict subcommand (env, dry, nccl-load, runs, kill, parity, ml1m, sanitizer, bench, peer)
/// prints `STATUS SUMMARY` (pass, fail, no-gpu, skipped, timeout) and writes {status, summary,
/// detail} to --out. The driver's: plan (stages and limits, the header), stage (one stage's
/// fragment), merge (results.json, schema ncf-device-check/1), summary (the closing table).
///
/// Exit codes: 0 the verdict was decided and written whatever it is (summary: no stage failed),
/// 1 error (unreadable input; plan: an unknown stage or limits over the cap; summary: a stage
/// failed, errored or was cut), 2 usage error (bad command line).
///
/// Example (what the script does after a stage's commands):
///   ncf-devcheck ml1m --rc 0 --log ml1m.jsonl --stderr ml1m.err --out ml1m.verdict.json
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per process: the env stage's many flags need no box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// The stages to run (`NAME SECONDS` lines), from the script's NAME=SECONDS table; writes the header.
    Plan {
        /// The most the limits may add up to, in seconds.
        #[arg(long)]
        cap: u64,
        /// The stages to run, space-separated, in order (empty: all).
        #[arg(long, default_value = "")]
        only: String,
        #[arg(long, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
        gpu: bool,
        #[arg(long, default_value = "")]
        started: String,
        #[arg(long, default_value = "")]
        host: String,
        /// The file naming the commit the binaries were built from (.device/COMMIT).
        #[arg(long)]
        commit: Option<PathBuf>,
        /// Where the header is written.
        #[arg(long)]
        header: PathBuf,
        /// Every stage of the script in order, NAME=SECONDS.
        #[arg(required = true)]
        limits: Vec<String>,
    },
    /// A stage's fragment of results.json from its exit, time and verdict; prints the log line.
    Stage {
        #[arg(long)]
        name: String,
        #[arg(long, allow_hyphen_values = true)]
        rc: i32,
        #[arg(long)]
        millis: u64,
        #[arg(long)]
        limit: u64,
        /// The verdict the stage wrote (absent when it was cut or died first).
        #[arg(long)]
        verdict: PathBuf,
        /// The stage's output (its last lines say why when it has no verdict).
        #[arg(long)]
        log: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Merge the stages' fragments (in order) into --out, written atomically.
    Merge {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        header: Option<PathBuf>,
        /// Stage names that a complete run has (comma-separated).
        #[arg(long, value_delimiter = ',')]
        expect: Vec<String>,
        stages: Vec<PathBuf>,
    },
    /// Print the closing table of a results file; exit 1 when a stage failed, errored or was cut.
    Summary { results: PathBuf },
    /// A stage without a GPU: did its commands (RC:STDERR_FILE) run as far as they can?
    Dry {
        #[arg(long)]
        what: String,
        /// The stderr whose first error line the summary quotes.
        #[arg(long)]
        sample: PathBuf,
        #[arg(long, value_name = "RC:STDERR_FILE")]
        ran: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// The environment: CUDA libraries, NCCL, compute-sanitizer, Python; writes --env-sh.
    Env {
        #[arg(long, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
        gpu: bool,
        /// nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader
        #[arg(long)]
        smi_query: PathBuf,
        /// nvidia-smi's table.
        #[arg(long)]
        smi: PathBuf,
        #[arg(long, default_value = "")]
        python: String,
        #[arg(long, default_value = "")]
        torch_python: String,
        #[arg(long, default_value = "")]
        torch: String,
        #[arg(long, default_value = "")]
        nccl_dir: String,
        /// ldconfig -p (NCCL when no Python found it).
        #[arg(long)]
        ldconfig: PathBuf,
        /// A candidate CUDA library directory (in order of preference).
        #[arg(long)]
        cuda_dir: Vec<PathBuf>,
        /// A candidate compute-sanitizer (after the chosen toolkit's own).
        #[arg(long)]
        sanitizer: Vec<PathBuf>,
        #[arg(long, default_value = "")]
        ld_library_path: String,
        #[arg(long)]
        bin: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        commit: PathBuf,
        #[arg(long)]
        env_sh: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// ncf-cuda-check --nccl-version on the GPU machine.
    NcclLoad(Outputs),
    /// Compare runs (NAME=EXIT:LOG) with plain reference runs (the same form).
    Runs {
        /// A plain run, NAME=EXIT:LOG (give two: their difference is the noise).
        #[arg(long = "ref", value_name = "NAME=EXIT:LOG")]
        refs: Vec<String>,
        /// A run through NCCL, NAME=EXIT:LOG.
        #[arg(long = "run", value_name = "NAME=EXIT:LOG")]
        runs: Vec<String>,
        /// Another process that must exit 0 (e.g. "rank 1=0").
        #[arg(long, value_name = "NAME=EXIT")]
        also: Vec<String>,
        /// The ranks' stderr logs (checksum lines; the first one's NCCL network lines).
        #[arg(long)]
        stderr: Vec<PathBuf>,
        /// Ranks that must each print one equal parameter checksum (0: none needed).
        #[arg(long, default_value_t = 0)]
        ranks: usize,
        /// Two model files that must hold the same bytes: the two plain runs of one fixed-seed
        /// configuration (the deterministic reductions make them equal).
        #[arg(long, value_name = "MODEL", num_args = 2)]
        identical: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Judge the survivor of a killed rank.
    Kill {
        #[arg(long)]
        killed: usize,
        /// The survivor's exit code.
        #[arg(long, allow_hyphen_values = true)]
        rc: i32,
        /// Milliseconds from the kill to the survivor's exit.
        #[arg(long, required_unless_present = "ended_first")]
        millis: Option<u64>,
        #[arg(long, default_value_t = 30.0)]
        limit: f64,
        /// The survivor's stderr.
        #[arg(long)]
        stderr: PathBuf,
        /// The rank to kill had ended already (RC:STDERR_FILE): nothing was killed.
        #[arg(long, value_name = "RC:STDERR_FILE")]
        ended_first: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// ncf-cuda-check's parity checks.
    Parity(Outputs),
    /// ncf-train --preset ml1m: its best HR@10 against --min-hr.
    Ml1m {
        #[arg(long, allow_hyphen_values = true)]
        rc: i32,
        #[arg(long)]
        log: PathBuf,
        #[arg(long)]
        stderr: PathBuf,
        #[arg(long, default_value_t = stages::ML1M_MIN_HR)]
        min_hr: f64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print `unsupported` when this compute-sanitizer has no --kernel-name (rerun without it), else `supported`.
    SanitizerFilter {
        #[arg(long, allow_hyphen_values = true)]
        rc: i32,
        #[arg(long)]
        log: PathBuf,
    },
    /// compute-sanitizer's runs (TOOL:PRECISIONS:LIMIT:RC:LOG_FILE); --sanitizer "" when none was found.
    Sanitizer {
        #[arg(long, default_value = "")]
        sanitizer: String,
        #[arg(long, value_name = "TOOL:PRECISIONS:LIMIT:RC:LOG_FILE")]
        ran: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// ncf-cuda-check --bench.
    Bench(Outputs),
    /// The PyTorch peer's epoch lines.
    Peer {
        #[arg(long, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
        gpu: bool,
        #[arg(long)]
        peer: PathBuf,
        #[arg(long, default_value = "")]
        torch_python: String,
        #[arg(long)]
        lines: PathBuf,
        #[arg(long)]
        stderr: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

/// What a command of a stage left (ncf-cuda-check's modes): its exit code, stdout, stderr and
/// --json report; and where the verdict goes.
#[derive(clap::Args, Debug)]
struct Outputs {
    #[arg(long, allow_hyphen_values = true)]
    rc: i32,
    #[arg(long)]
    stdout: Option<PathBuf>,
    #[arg(long)]
    stderr: PathBuf,
    #[arg(long)]
    json: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

impl Outputs {
    fn stdout(&self) -> String {
        self.stdout.as_deref().map(read).unwrap_or_default()
    }
}

/// A file's text; a file a command did not write reads as empty.
fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A file's JSON as `T`, None when it is missing or not `T`.
fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Option<T> {
    serde_json::from_str(&read(p)).ok()
}

fn write_atomic(p: &Path, text: &str) -> Result<()> {
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, p))
        .with_context(|| p.display().to_string())
}

fn write_json<T: serde::Serialize>(p: &Path, v: &T) -> Result<()> {
    write_atomic(p, &(serde_json::to_string_pretty(v)? + "\n"))
}

/// A verdict: printed as `STATUS SUMMARY`, written to `out`.
fn report(v: &StageVerdict, out: &Path) -> Result<()> {
    write_json(out, v)?;
    println!("{}", v.line());
    Ok(())
}

/// NAME=EXIT:LOG → (name, exit, log text).
fn parse_run(s: &str) -> Result<(String, i32, String)> {
    let form = || anyhow!("{s:?}: expected NAME=EXIT:LOG");
    let (name, rest) = s.split_once('=').ok_or_else(form)?;
    let (rc, log) = rest.split_once(':').ok_or_else(form)?;
    let rc = rc.parse().map_err(|_| anyhow!("{s:?}: exit code {rc:?}"))?;
    Ok((name.to_string(), rc, read(Path::new(log))))
}

/// RC:FILE → a command's run (named after the file).
fn parse_ran(s: &str) -> Result<Ran> {
    let (rc, file) = s
        .split_once(':')
        .ok_or_else(|| anyhow!("{s:?}: expected RC:STDERR_FILE"))?;
    let path = Path::new(file);
    Ok(Ran {
        name: path
            .file_name()
            .map_or(file.into(), |f| f.to_string_lossy().into_owned()),
        rc: rc.parse().map_err(|_| anyhow!("{s:?}: exit code {rc:?}"))?,
        stderr: read(path),
    })
}

/// TOOL:PRECISIONS:LIMIT:RC:LOG_FILE → a compute-sanitizer run.
fn parse_sanitizer_run(s: &str) -> Result<SanitizerRun> {
    let bad = || anyhow!("{s:?}: expected TOOL:PRECISIONS:LIMIT:RC:LOG_FILE");
    let mut it = s.splitn(5, ':');
    let mut next = || it.next().ok_or_else(bad);
    let (tool, precisions, limit, rc, log) = (next()?, next()?, next()?, next()?, next()?);
    Ok(SanitizerRun {
        tool: tool.into(),
        precisions: precisions.into(),
        limit_s: limit.parse().map_err(|_| bad())?,
        rc: rc.parse().map_err(|_| bad())?,
        log: read(Path::new(log)),
    })
}

fn as_runs(v: &[(String, i32, String)]) -> Vec<Run<'_>> {
    v.iter()
        .map(|(n, rc, log)| Run {
            name: n,
            rc: *rc,
            log,
        })
        .collect()
}

/// The NCCL transport lines of a rank's stderr (`Using network Socket`, `NET/Socket : Using [0]lo`).
fn nccl_network(stderr: &str) -> Vec<String> {
    let mut found: Vec<String> = stderr
        .lines()
        .filter_map(|l| {
            if let Some(i) = l.find("Using network ") {
                let word: String = l[i + 14..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .collect();
                return Some(format!("Using network {word}"));
            }
            let i = l.find("NET/Socket : Using [")?;
            Some(
                l[i..]
                    .split_whitespace()
                    .take(4)
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Run `ncf-devcheck` with its parsed flags.
pub fn run(a: Args) -> Result<()> {
    match a.cmd {
        Cmd::Plan {
            cap,
            only,
            gpu,
            started,
            host,
            commit,
            header,
            limits,
        } => {
            let limits = limits
                .iter()
                .map(|l| {
                    let (n, s) = l
                        .split_once('=')
                        .ok_or_else(|| anyhow!("{l:?}: expected NAME=SECONDS"))?;
                    Ok((
                        n.to_string(),
                        s.parse().map_err(|_| anyhow!("{l:?}: seconds"))?,
                    ))
                })
                .collect::<Result<Vec<(String, u64)>>>()?;
            let plan = stages::plan(cap, &only, &limits).map_err(|e| anyhow!(e))?;
            let total = plan.iter().map(|(_, l)| l).sum();
            let commit = commit.map(|c| read(&c)).unwrap_or_default();
            write_json(
                &header,
                &stages::header(gpu, total, &started, &host, &commit),
            )?;
            for (name, limit) in plan {
                println!("{name} {limit}");
            }
            Ok(())
        }
        Cmd::Stage {
            name,
            rc,
            millis,
            limit,
            verdict,
            log,
            out,
        } => {
            let log = read(&log);
            let tail: Vec<&str> = log.lines().rev().take(2).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let seconds = millis as f64 / 1000.0;
            let s = Stage::ended(
                &name,
                rc,
                seconds,
                limit,
                read_json(&verdict),
                &tail.join(" "),
            );
            write_json(&out, &s)?;
            println!(
                "stage {name}: {} in {seconds:.1} s: {}",
                s.status.word(),
                s.summary
            );
            Ok(())
        }
        Cmd::Merge {
            out,
            header,
            expect,
            stages,
        } => {
            let header = header.map(|p| read(&p));
            let stages: Vec<(String, String)> = stages
                .iter()
                .map(|p| {
                    let name = p.file_name().map(|f| f.to_string_lossy().into_owned());
                    (name.unwrap_or_default(), read(p))
                })
                .collect();
            let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
            write_json(&out, &results::merge(header.as_deref(), &stages, &expect))
        }
        Cmd::Summary { results } => {
            let text =
                std::fs::read_to_string(&results).with_context(|| results.display().to_string())?;
            let r: Results = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a results file", results.display()))?;
            let (table, failed) = stages::summary(&r);
            print!("{table}");
            if failed {
                let n = r.stages.iter().filter(|s| s.status.failed()).count();
                bail!(
                    "{n} of {} stages failed, errored or were cut",
                    r.stages.len()
                );
            }
            Ok(())
        }
        Cmd::Dry {
            what,
            sample,
            ran,
            out,
        } => {
            let ran = ran
                .iter()
                .map(|r| parse_ran(r))
                .collect::<Result<Vec<_>>>()?;
            report(&stages::dry(&what, &read(&sample), &ran), &out)
        }
        Cmd::Env {
            gpu,
            smi_query,
            smi,
            python,
            torch_python,
            torch,
            nccl_dir,
            ldconfig,
            cuda_dir,
            sanitizer,
            ld_library_path,
            bin,
            data,
            commit,
            env_sh,
            out,
        } => {
            let facts = Facts {
                gpu,
                smi_query: read(&smi_query),
                smi: read(&smi),
                python,
                torch_python,
                torch,
                nccl_dir,
                ldconfig: read(&ldconfig),
                cuda_dirs: cuda_dir,
                sanitizers: sanitizer,
                ld_library_path,
                bin,
                data,
                commit: read(&commit),
            };
            let (v, lines, sh) = crate::env::judge_env(&facts);
            std::fs::write(&env_sh, sh).with_context(|| env_sh.display().to_string())?;
            for l in lines {
                println!("{l}");
            }
            report(&v, &out)
        }
        Cmd::NcclLoad(o) => {
            let detail = read_json(&o.json).unwrap_or_default();
            let v = stages::nccl_load(o.rc, &o.stdout(), &read(&o.stderr), detail);
            report(&v, &o.out)
        }
        Cmd::Runs {
            refs,
            runs,
            also,
            stderr,
            ranks,
            identical,
            out,
        } => {
            let refs = refs
                .iter()
                .map(|s| parse_run(s))
                .collect::<Result<Vec<_>>>()?;
            let runs = runs
                .iter()
                .map(|s| parse_run(s))
                .collect::<Result<Vec<_>>>()?;
            let errs: Vec<String> = stderr.iter().map(|p| read(p)).collect();
            let mut v: StageVerdict =
                judge_runs(&as_runs(&refs), &as_runs(&runs), &errs.join("\n"), ranks).into();
            let mut others = vec![];
            for a in &also {
                let (name, rc) = a
                    .split_once('=')
                    .ok_or_else(|| anyhow!("{a:?}: expected NAME=EXIT"))?;
                let rc: i32 = rc.parse().map_err(|_| anyhow!("{a:?}: exit code"))?;
                if rc != 0 {
                    others.push(format!("{name} exited {rc}"));
                }
            }
            if let [a, b] = &identical[..] {
                others.extend(judge::identical(a, b));
            }
            let net = nccl_network(errs.first().map_or("", String::as_str));
            if !others.is_empty() {
                v.status = Status::Fail;
                v.summary = format!("{}; {}", others.join("; "), v.summary);
            } else if !net.is_empty() {
                v.summary += &format!(" (NCCL: {})", net.join(", "));
            }
            report(&v, &out)
        }
        Cmd::Kill {
            killed,
            rc,
            millis,
            limit,
            stderr,
            ended_first,
            out,
        } => {
            let err = read(&stderr);
            let v = match (ended_first, millis) {
                (Some(other), _) => {
                    let other = parse_ran(&other)?;
                    StageVerdict::new(
                        Status::Fail,
                        format!(
                            "a rank ended before rank {killed} could be killed (rank 0 exit {rc}, \
                             rank {killed} exit {}): {} {}",
                            other.rc,
                            stages::first_error(&err),
                            stages::first_error(&other.stderr)
                        ),
                        serde_json::Value::Null,
                    )
                }
                (None, Some(ms)) => judge_kill(killed, rc, ms as f64 / 1000.0, limit, &err).into(),
                (None, None) => bail!("--millis or --ended-first"),
            };
            report(&v, &out)
        }
        Cmd::Parity(o) => {
            let v = stages::parity(o.rc, &o.stdout(), &read(&o.stderr), read_json(&o.json));
            report(&v, &o.out)
        }
        Cmd::Ml1m {
            rc,
            log,
            stderr,
            min_hr,
            out,
        } => report(&stages::ml1m(rc, &read(&log), &read(&stderr), min_hr), &out),
        Cmd::SanitizerFilter { rc, log } => {
            let unsupported = stages::sanitizer_unfiltered(rc, &read(&log));
            println!(
                "{}",
                if unsupported {
                    "unsupported"
                } else {
                    "supported"
                }
            );
            Ok(())
        }
        Cmd::Sanitizer {
            sanitizer,
            ran,
            out,
        } => {
            let runs = ran
                .iter()
                .map(|r| parse_sanitizer_run(r))
                .collect::<Result<Vec<_>>>()?;
            report(&stages::sanitizer(&sanitizer, &runs), &out)
        }
        Cmd::Bench(o) => report(
            &stages::bench(o.rc, read_json(&o.json), &read(&o.stderr)),
            &o.out,
        ),
        Cmd::Peer {
            gpu,
            peer,
            torch_python,
            lines,
            stderr,
            out,
        } => {
            let (lines, stderr) = (read(&lines), read(&stderr));
            let facts = PeerFacts {
                gpu,
                peer: &peer.display().to_string(),
                peer_present: peer.is_file(),
                torch_python: &torch_python,
                lines: &lines,
                stderr: &stderr,
            };
            report(&stages::peer(&facts), &out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nccl_transport_is_named_once() {
        let err = "x NCCL INFO Using network Socket\nx NCCL INFO NET/Socket : Using [0]lo:127.0.0.1<0> extra\n\
                   x NCCL INFO Using network Socket\n";
        assert_eq!(
            nccl_network(err),
            [
                "NET/Socket : Using [0]lo:127.0.0.1<0>",
                "Using network Socket"
            ]
        );
    }
}

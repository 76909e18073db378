//! Progress while cases run: a bar on a terminal (indicatif), one plain line per case
//! otherwise (CI logs).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::verdict::{CaseResult, Verdict};

/// Reports each finished case.
pub enum Progress {
    /// An indicatif bar.
    Bar(ProgressBar),
    /// Plain lines on stderr.
    Lines,
    /// Nothing.
    Quiet,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn auto(total: usize, quiet: bool) -> Progress {
        if quiet {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}") {
            bar.set_style(style);
        }
        Progress::Bar(bar)
    }

    /// One case finished.
    pub fn case_done(&self, c: &CaseResult) {
        match self {
            Progress::Bar(b) => {
                b.inc(1);
                if matches!(c.verdict, Verdict::Fail | Verdict::Error) {
                    b.println(format!("{:<10} {}", c.verdict.as_str(), c.id));
                }
                b.set_message(c.id.clone());
            }
            Progress::Lines => {
                eprintln!("{:<10} {} ({} ms)", c.verdict.as_str(), c.id, c.duration_ms)
            }
            Progress::Quiet => {}
        }
    }

    /// All cases finished.
    pub fn finish(&self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

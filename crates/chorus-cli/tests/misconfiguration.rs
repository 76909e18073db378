//! A misconfigured harness is not a failing server: `chorus conform` refuses settings that
//! cannot work with exit 2 and a message saying what to change, before grading anything.

use std::process::Command;

/// Runs `chorus conform ARGS`; returns the exit code and stderr.
fn conform(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("conform")
        .args(args)
        .output()
        .expect("chorus runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused(args: &[&str], says: &str) {
    let (code, err) = conform(args);
    assert_eq!(code, Some(2), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: {err:?} lacks {says:?}");
}

#[test]
fn a_zero_timeout_scale_is_refused() {
    refused(
        &["--timeout-scale", "0"],
        "--timeout-scale 0 must be a positive factor",
    );
}

#[test]
fn zero_repeats_are_refused() {
    refused(&["--repeat", "0"], "--repeat 0 would run nothing");
}

#[test]
fn zero_jobs_are_refused() {
    refused(&["--jobs", "0"], "--jobs 0 would run nothing");
}

#[test]
fn a_run_glob_matching_nothing_is_refused() {
    refused(&["--run", "presense.*"], "matches no case");
}

#[test]
fn an_http_url_is_refused_with_the_ws_scheme_to_use() {
    refused(
        &["--url", "http://localhost:3001/ws"],
        "use ws:// or wss://",
    );
}

#[test]
fn a_url_without_scheme_is_refused() {
    refused(&["--url", "localhost:3001/ws"], "has no scheme");
}

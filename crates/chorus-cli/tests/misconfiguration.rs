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

// ---- against a running `chorus serve` -------------------------------------------------

const SECRET: &str = "misconfiguration-test-secret-0123456789abcdef";
const KEY: &str = "misconfiguration-test-key";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `chorus serve` on a free loopback port; stopped (by its pid) when dropped.
struct Served {
    child: std::process::Child,
    port: u16,
}

impl Served {
    fn start(extra: &[&str], env: &[(&str, &str)]) -> Served {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["serve", "--memory", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(extra)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chorus serve starts");
        wait_listening(port);
        Served { child, port }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "no server on {port}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn served_with_key() -> Served {
    Served::start(&["--jwt-secret", SECRET, "--api-key", KEY], &[])
}

#[test]
fn a_wrong_api_key_is_refused_before_grading() {
    let server = served_with_key();
    let url = server.url();
    let args = [
        "--url",
        &url,
        "--token-secret",
        SECRET,
        "--api-key",
        "misconfiguration-test-ke",
    ];
    refused(&args, "the server refused --api-key: 401");
}

#[test]
fn a_server_refusing_wrong_keys_passes_the_auth_cases() {
    let server = served_with_key();
    let url = server.url();
    let args = [
        "--url",
        &url,
        "--token-secret",
        SECRET,
        "--api-key",
        KEY,
        "--run",
        "http.auth.*",
        "--no-properties",
    ];
    let (code, err) = conform(&args);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_server_in_development_mode_is_named_not_failed() {
    // CHORUS_DEV=1 is accepted as true (not only `true`).
    let server = Served::start(&["--jwt-secret", SECRET], &[("CHORUS_DEV", "1")]);
    let url = server.url();
    refused(
        &["--url", &url, "--token-secret", SECRET],
        "it runs in development mode",
    );
    // Asked to grade it anyway, the tokenless case fails as it would in production.
    let (code, err) = conform(&[
        "--url",
        &url,
        "--token-secret",
        SECRET,
        "--allow-dev-mode",
        "--run",
        "security.dev-mode.off-by-default",
        "--no-properties",
    ]);
    assert_eq!(code, Some(1), "{err}");
}

#[test]
fn a_wrong_token_secret_says_the_close_code_as_a_number() {
    let server = served_with_key();
    let url = server.url();
    let (code, err) = conform(&[
        "--url",
        &url,
        "--token-secret",
        "not-the-secret-0123456789abcdef0123456789",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("closed with 4001"), "{err}");
    assert!(!err.contains("Some("), "{err}");
}

/// Runs `chorus serve ARGS` to its end (it must refuse to start); exit code and stderr.
fn serve_refusing(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("serve")
        .args(args)
        .output()
        .expect("chorus runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_capability_is_named_with_the_valid_ones() {
    let (code, err) = serve_refusing(&["--dev", "--memory", "--disable-capabilities", "foo"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\"foo\""), "{err}");
    assert!(
        err.contains("valid names: presence, rooms, cursors, state, history"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_is_said_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, err) =
        serve_refusing(&["--dev", "--memory", "--host", "127.0.0.1", "--port", &port]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.matches("cannot bind").count(), 1, "{err}");
}

#[test]
fn localhost_is_accepted_and_logs_have_no_colour_codes_when_redirected() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args([
            "serve",
            "--dev",
            "--memory",
            "--host",
            "localhost",
            "--port",
        ])
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chorus serve starts");
    wait_listening(port);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape in a redirected log: {log:?}"
    );
}

#[test]
fn bench_of_an_uninstalled_node_baseline_fails_clearly() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["bench", "--quick", "--servers", "node", "--node-dir"])
        .arg(empty.path())
        .output()
        .expect("chorus runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("run `npm ci`"), "{err}");
}

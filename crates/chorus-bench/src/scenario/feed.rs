//! The PostgreSQL change feed (issue 14, spec changes.md "Database feeds"): writers commit
//! INSERTs into a published table at a paced rate, one subscriber of `resource:{table}`
//! receives the `data_change` frames, and each row's latency is measured from the moment
//! its INSERT was scheduled to commit (an autocommit statement: the COMMIT is the statement)
//! to the frame's arrival. The rows carry their scheduled time, so the latency includes
//! PostgreSQL's own commit (the WAL flush) and any backlog of the writers (no coordinated
//! omission); `commit_*` gives that part alone, `after_commit_*` what is left after the
//! writer saw its COMMIT done.
//!
//! The server reads the table through its replication slot with a durable store
//! (`--memory false`: positions are acknowledged once durable, CHG-19). A ramp of paced
//! steps finds the sustained maximum: the highest rate whose changes all arrive within the
//! step and whose p99 stays within [`CLIMB`] times the first step's.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio_postgres::NoTls;

use crate::dialect::{frame_type, ChorusDialect};
use crate::error::{within, BenchError};
use crate::metrics::{add_percentiles, latency_histogram, Figures};
use crate::payload::{clock_origin, now_ns};
use crate::scenario::Timing;
use crate::server::Server;
use crate::session::Session;

/// The published table, and the name of the feed's slot and publication.
pub const TABLE: &str = "chorus_bench_feed";

/// Writer connections: PostgreSQL groups concurrent commits into one WAL flush, which a
/// single connection (one flush per commit, ~5 ms on this machine's disk) cannot.
pub const WRITERS: usize = 8;

/// Transactions per second the writers aim at: above this, a step puts several rows in one
/// transaction (`rows_per_txn`) rather than asking the disk for more flushes.
pub const MAX_TXN_PER_SEC: f64 = 1000.0;

/// Rates of the ramp, changes per second.
pub const RAMP: [f64; 8] = [
    1_000.0, 2_000.0, 5_000.0, 10_000.0, 20_000.0, 40_000.0, 70_000.0, 100_000.0,
];

/// A ramp step is sustained while its p99 stays within this factor of the first step's.
pub const CLIMB: f64 = 3.0;

/// Flags for `chorus serve` reading the bench table; `data_dir` holds the durable store.
pub fn server_args(pg_url: &str, data_dir: &std::path::Path) -> Vec<String> {
    [
        "--pg-url",
        pg_url,
        "--pg-tables",
        TABLE,
        "--pg-slot",
        TABLE,
        "--pg-publication",
        TABLE,
        "--data-dir",
        &data_dir.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, BenchError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.map_err(pg)?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn pg(e: tokio_postgres::Error) -> BenchError {
    BenchError::Server {
        server: "postgres".to_owned(),
        reason: e.to_string(),
    }
}

/// Creates the bench table afresh (and drops a slot and publication a crashed run left).
pub async fn prepare(url: &str) -> Result<(), BenchError> {
    cleanup(url).await?;
    connect(url)
        .await?
        .batch_execute(&format!(
            "CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, run bigint NOT NULL,
                                   batch bigint NOT NULL, sent_ns bigint NOT NULL);
             ALTER TABLE {TABLE} REPLICA IDENTITY FULL;"
        ))
        .await
        .map_err(pg)
}

/// Drops the slot (it would keep WAL forever), the publication and the table.
pub async fn cleanup(url: &str) -> Result<(), BenchError> {
    let db = connect(url).await?;
    db.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
         WHERE slot_name = $1 AND NOT active",
        &[&TABLE],
    )
    .await
    .map_err(pg)?;
    db.batch_execute(&format!(
        "DROP PUBLICATION IF EXISTS {TABLE}; DROP TABLE IF EXISTS {TABLE};"
    ))
    .await
    .map_err(pg)
}

/// What the writers and the subscriber of one run share (one thread: `Cell`s suffice).
struct Run {
    id: i64,
    /// When each batch's COMMIT returned to its writer (ns), 0 until then.
    acked: RefCell<Vec<u64>>,
    committed: Cell<u64>,
    commit: RefCell<Histogram<u64>>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
}

/// One paced run at `rate` changes/s for `timing.duration`.
pub async fn paced(server: &Server, timing: Timing, rate: f64) -> Result<Figures, BenchError> {
    let url = server
        .pg_url
        .clone()
        .ok_or_else(|| BenchError::Options("the feed scenarios need --pg-url".to_owned()))?;
    let rows_per_txn = (rate / MAX_TXN_PER_SEC).ceil().max(1.0) as u64;
    let batches = ((rate * timing.duration.as_secs_f64()) / rows_per_txn as f64).ceil() as u64;
    let run = Rc::new(Run {
        id: i64::try_from(now_ns()).unwrap_or(i64::MAX),
        acked: RefCell::new(vec![0; batches as usize]),
        committed: Cell::new(0),
        commit: RefCell::new(latency_histogram()),
        errors: Cell::new(0),
        first_error: RefCell::new(None),
    });
    let mut sub = Session::open(server, "feed-subscriber").await?;
    sub.send_text(ChorusDialect::subscribe_frame(
        &format!("resource:{TABLE}"),
        |_| {},
    ))
    .await?;
    sub.until(&["subscribed"], |_| {}).await?;
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        writers.push(connect(&url).await?);
    }
    let cpu_start = server.cpu()?;
    let start_ns = now_ns() + 20_000_000;
    let interval_ns = rows_per_txn as f64 * 1e9 / rate;
    let jobs: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, db)| {
            let run = run.clone();
            let schedule = Schedule {
                first: w as u64,
                batches,
                rows_per_txn,
                start_ns,
                interval_ns,
            };
            tokio::task::spawn_local(write(db, run, schedule))
        })
        .collect();
    let expected = batches * rows_per_txn;
    let deadline = Instant::now() + timing.duration + Duration::from_millis(20);
    let received = receive(&mut sub, &run, expected, deadline + timing.drain).await?;
    for job in jobs {
        job.await
            .map_err(|e| BenchError::Protocol(format!("writer: {e}")))?;
    }
    let cpu = server.cpu()?.saturating_sub(cpu_start).as_secs_f64();
    sub.close().await;
    if let Some(e) = run.first_error.borrow().as_ref() {
        eprintln!("    feed writer error (first of {}): {e}", run.errors.get());
    }
    Ok(figures(
        &run,
        &received,
        rate,
        rows_per_txn,
        expected,
        timing,
        cpu,
    ))
}

/// Which batches one writer sends, and when.
#[derive(Clone, Copy)]
struct Schedule {
    first: u64,
    batches: u64,
    rows_per_txn: u64,
    start_ns: u64,
    interval_ns: f64,
}

/// Commits batches `first`, `first + WRITERS`, ... each at its scheduled time (or at once
/// when late), every row carrying that time.
async fn write(db: tokio_postgres::Client, run: Rc<Run>, s: Schedule) {
    let mut batch = s.first;
    while batch < s.batches {
        let due_ns = s.start_ns + (batch as f64 * s.interval_ns) as u64;
        let due = clock_origin() + Duration::from_nanos(due_ns);
        tokio::time::sleep_until(due.into()).await;
        let values: Vec<String> = (0..s.rows_per_txn)
            .map(|_| format!("({}, {batch}, {due_ns})", run.id))
            .collect();
        let sql = format!(
            "INSERT INTO {TABLE} (run, batch, sent_ns) VALUES {}",
            values.join(",")
        );
        match db.batch_execute(&sql).await {
            Ok(()) => {
                let now = now_ns();
                run.acked.borrow_mut()[batch as usize] = now;
                run.committed.set(run.committed.get() + s.rows_per_txn);
                let _ = run
                    .commit
                    .borrow_mut()
                    .record(now.saturating_sub(due_ns).max(1_000));
            }
            Err(e) => {
                run.errors.set(run.errors.get() + 1);
                run.first_error.borrow_mut().get_or_insert(e.to_string());
            }
        }
        batch += WRITERS as u64;
    }
}

/// What the subscriber saw.
struct Received {
    latency: Histogram<u64>,
    /// (batch, arrival ns) of every row, for the after-commit figure.
    arrivals: Vec<(u64, u64)>,
    /// Frames whose `seq` did not follow the previous one's (a gap or a repeat).
    disorder: u64,
}

/// Reads `data_change` frames of this run until `expected` arrived or `until`.
async fn receive(
    sub: &mut Session,
    run: &Run,
    expected: u64,
    until: Instant,
) -> Result<Received, BenchError> {
    let mut got = Received {
        latency: latency_histogram(),
        arrivals: Vec::with_capacity(expected as usize),
        disorder: 0,
    };
    let mut last_seq: Option<u64> = None;
    while (got.arrivals.len() as u64) < expected {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Ok(text) = tokio::time::timeout(left, sub.recv()).await else {
            break;
        };
        let text = text?;
        if frame_type(&text) != "data_change" {
            continue;
        }
        let now = now_ns();
        let seq = number(&text, "\"seq\":");
        if let (Some(prev), Some(seq)) = (last_seq, seq) {
            if seq != prev + 1 {
                got.disorder += 1;
            }
        }
        last_seq = seq;
        if number(&text, "\"run\":") != u64::try_from(run.id).ok() {
            continue;
        }
        let (Some(batch), Some(sent)) =
            (number(&text, "\"batch\":"), number(&text, "\"sent_ns\":"))
        else {
            return Err(BenchError::Protocol(format!(
                "a feed row without its times: {text}"
            )));
        };
        let _ = got.latency.record(now.saturating_sub(sent).max(1_000));
        got.arrivals.push((batch, now));
    }
    Ok(got)
}

/// The unsigned number after `key` in a frame (the bench's own columns and `seq`; the
/// frames are the server's compact JSON).
fn number(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: &str = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

fn figures(
    run: &Run,
    got: &Received,
    rate: f64,
    rows_per_txn: u64,
    expected: u64,
    timing: Timing,
    cpu: f64,
) -> Figures {
    let delivered = got.arrivals.len() as u64;
    let secs = timing.duration.as_secs_f64();
    let acked = run.acked.borrow();
    let mut after = latency_histogram();
    let mut before_ack = 0u64;
    for &(batch, at) in &got.arrivals {
        match acked.get(batch as usize).copied() {
            Some(ack) if ack > 0 && at >= ack => {
                let _ = after.record((at - ack).max(1_000));
            }
            _ => before_ack += 1,
        }
    }
    let mut f = Figures::from([
        ("offered_per_sec".to_owned(), rate),
        ("rows_per_txn".to_owned(), rows_per_txn as f64),
        (
            "committed_per_sec".to_owned(),
            run.committed.get() as f64 / secs,
        ),
        ("delivered_per_sec".to_owned(), delivered as f64 / secs),
        // Committed rows that had not arrived by the end of the drain: late or lost (the
        // feed's own tests check that none is lost, CHG-19).
        (
            "not_delivered".to_owned(),
            run.committed.get().saturating_sub(delivered) as f64,
        ),
        (
            "not_committed".to_owned(),
            expected.saturating_sub(run.committed.get()) as f64,
        ),
        ("disorder".to_owned(), got.disorder as f64),
        ("writer_errors".to_owned(), run.errors.get() as f64),
        ("delivered_before_commit_ack".to_owned(), before_ack as f64),
        (
            "server_cpu_us_per_change".to_owned(),
            cpu * 1e6 / delivered.max(1) as f64,
        ),
    ]);
    add_percentiles(&mut f, "latency", &got.latency);
    add_percentiles(&mut f, "commit", &run.commit.borrow());
    add_percentiles(&mut f, "after_commit", &after);
    f
}

/// The ramp: paced steps at [`RAMP`] rates; the sustained maximum is the last step before
/// the first that loses, falls behind or climbs. Figures of every step are kept
/// (`step_{rate}_...`).
pub async fn ramp(server: &Server, timing: Timing) -> Result<Figures, BenchError> {
    let mut f = Figures::new();
    let mut base_p99: Option<f64> = None;
    let mut sustained = 0.0;
    let step_timing = Timing {
        drain: Duration::from_secs(2),
        ..timing
    };
    for rate in RAMP {
        let step = within(
            timing.duration + Duration::from_secs(60),
            &format!("feed ramp step {rate}/s"),
            paced(server, step_timing, rate),
        )
        .await?;
        let p99 = step.get("latency_p99_ms").copied().unwrap_or(f64::INFINITY);
        let whole = step.get("not_delivered") == Some(&0.0)
            && step.get("not_committed") == Some(&0.0)
            && step.get("disorder") == Some(&0.0);
        let base = *base_p99.get_or_insert(p99);
        let key = format!("step_{}k", rate / 1000.0);
        for name in [
            "delivered_per_sec",
            "latency_p50_ms",
            "latency_p99_ms",
            "not_delivered",
            "server_cpu_us_per_change",
        ] {
            if let Some(v) = step.get(name) {
                f.insert(format!("{key}_{name}"), *v);
            }
        }
        if !whole || p99 > CLIMB * base {
            break;
        }
        sustained = rate;
        // Let the server's record channels of the step expire before the next.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    f.insert("sustained_per_sec".to_owned(), sustained);
    f.insert("base_p99_ms".to_owned(), base_p99.unwrap_or(0.0));
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn numbers_are_read_after_their_key() {
        let frame = r#"{"type":"data_change","seq":41,"data":{"batch":7,"run":12,"sent_ns":990}}"#;
        assert_eq!(number(frame, "\"seq\":"), Some(41));
        assert_eq!(number(frame, "\"batch\":"), Some(7));
        assert_eq!(number(frame, "\"sent_ns\":"), Some(990));
        assert_eq!(number(frame, "\"id\":"), None);
    }
}

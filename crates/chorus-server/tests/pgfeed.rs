//! The PostgreSQL change feed against the real PostgreSQL of this machine (127.0.0.1:5432,
//! prepared by `.ci/postgres.sh`: wal_level=logical, role `chorus`, database
//! `chorus_test`). Each test owns its tables, slot and publication (named after the test
//! and this process), so parallel runs do not collide. Without a reachable database the
//! tests say so loudly and return, except under CI=true, where they fail.
#![cfg(feature = "pgfeed")]

mod common;

use std::time::Duration;

use chorus_server::{Config, RunningServer, Server};
use common::{test_config, Client};
use serde_json::{json, Value};
use tokio_postgres::NoTls;

const URL: &str = "postgres://chorus@127.0.0.1:5432/chorus_test";

/// One test at a time: one of them restarts the PostgreSQL cluster.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A connection to the test database, or `None` (announced) when there is none.
async fn database() -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(URL, NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            Some(client)
        }
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PostgreSQL at {URL} is not reachable under CI ({e}); run .ci/postgres.sh")
        }
        Err(e) => {
            eprintln!(
                "\n*** SKIPPED: PostgreSQL at {URL} is not reachable ({e}).\n\
                 *** The change-feed tests did NOT run; run `bash .ci/postgres.sh` first.\n"
            );
            None
        }
    }
}

/// Names of one test's objects, and the clean-up of a test that died before its own.
struct Names {
    table: String,
    slot: String,
}

async fn names(db: &tokio_postgres::Client, test: &str) -> Names {
    // Slots of earlier runs whose process is gone would keep WAL forever.
    let stale = db
        .query(
            "SELECT slot_name::text FROM pg_replication_slots
             WHERE slot_name LIKE 'chorus_test_%' AND NOT active",
            &[],
        )
        .await
        .unwrap();
    for row in stale {
        let slot: String = row.get(0);
        let pid = slot.rsplit('_').next().unwrap_or("");
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = db
                .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                .await;
        }
    }
    let pid = std::process::id();
    let names = Names {
        table: format!("{test}_{pid}"),
        slot: format!("chorus_test_{test}_{pid}"),
    };
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {t};
         CREATE TABLE {t} (id bigint PRIMARY KEY, title text, body text, meta jsonb,
                           price numeric, done boolean, tx int);
         ALTER TABLE {t} REPLICA IDENTITY FULL;",
        t = names.table
    ))
    .await
    .unwrap();
    names
}

async fn cleanup(db: &tokio_postgres::Client, n: &Names) {
    let _ = db
        .execute("SELECT pg_drop_replication_slot($1)", &[&n.slot])
        .await;
    let _ = db
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {s}; DROP TABLE IF EXISTS {t};",
            s = n.slot,
            t = n.table
        ))
        .await;
}

fn feed_config(n: &Names, dir: &std::path::Path) -> Config {
    let mut config = test_config();
    config.memory = false;
    config.data_dir = dir.to_owned();
    config.pg_url = Some(URL.to_owned());
    config.pg_tables = vec![n.table.clone()];
    config.pg_slot = n.slot.clone();
    config.pg_publication = n.slot.clone();
    config
}

async fn start(config: Config) -> RunningServer {
    Server::start(config).await.expect("server starts")
}

/// The next `data_change`, waiting longer than the common kit (a feed reconnects).
async fn change(c: &mut Client) -> Value {
    let f = tokio::time::timeout(Duration::from_secs(20), c.until("data_change"))
        .await
        .expect("a data_change within 20 s");
    f
}

#[tokio::test(flavor = "multi_thread")]
async fn insert_update_delete_reach_both_channels_with_whole_rows() {
    let _one = serial().await;
    let Some(db) = database().await else { return };
    let n = names(&db, "crud").await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(feed_config(&n, dir.path())).await;
    let mut feed = Client::user(&server, "ann").await;
    feed.subscribe(&format!("resource:{}", n.table)).await;
    let mut record = Client::user(&server, "bob").await;
    record.subscribe(&format!("{}:7", n.table)).await;
    let t = &n.table;
    db.batch_execute(&format!(
        "INSERT INTO {t} (id, title, body, meta, price, done)
         VALUES (7, 'Hello', NULL, '{{\"tags\": [\"a\"]}}', 10.50, true)"
    ))
    .await
    .unwrap();
    let created = change(&mut feed).await;
    let row = json!({"id": "7", "title": "Hello", "body": null, "meta": {"tags": ["a"]},
        "price": "10.50", "done": true, "tx": null});
    assert_eq!(created["operation"], "create");
    assert_eq!(created["record_id"], "7");
    assert_eq!(created["data"], row);
    assert_eq!(
        change(&mut record).await["data"],
        row,
        "the record channel too"
    );

    // A large value is stored out of line (TOAST); an update that does not touch it
    // still carries it, from the old row image.
    db.batch_execute(&format!(
        "UPDATE {t} SET body = (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 4000) i) WHERE id = 7;
         UPDATE {t} SET title = 'Hello, world' WHERE id = 7;"
    ))
    .await
    .unwrap();
    let big = change(&mut feed).await;
    let body = big["data"]["body"].as_str().unwrap().to_owned();
    assert_eq!(body.len(), 128_000);
    let updated = change(&mut feed).await;
    assert_eq!(updated["operation"], "update");
    assert_eq!(updated["data"]["title"], "Hello, world");
    assert_eq!(
        updated["data"]["body"], body,
        "unchanged TOASTed column filled in"
    );

    // A column added while the feed runs appears in the rows after it.
    db.batch_execute(&format!(
        "ALTER TABLE {t} ADD COLUMN extra text DEFAULT 'x'; DELETE FROM {t} WHERE id = 7;"
    ))
    .await
    .unwrap();
    let deleted = change(&mut feed).await;
    assert_eq!(deleted["operation"], "delete");
    assert_eq!(
        deleted["data"]["title"], "Hello, world",
        "the whole old row"
    );
    assert_eq!(deleted["data"]["extra"], "x");
    for _ in 0..3 {
        assert_eq!(change(&mut record).await["record_id"], "7");
    }
    server.shutdown().await.unwrap();
    cleanup(&db, &n).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_arrive_whole_in_commit_order() {
    let _one = serial().await;
    let Some(db) = database().await else { return };
    let Some(other) = database().await else {
        return;
    };
    let n = names(&db, "order").await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(feed_config(&n, dir.path())).await;
    let mut feed = Client::user(&server, "ann").await;
    feed.subscribe(&format!("resource:{}", n.table)).await;
    let t = &n.table;
    // A starts first, B commits first: B's rows come first, and A's are not split.
    db.batch_execute(&format!("BEGIN; INSERT INTO {t} (id, tx) VALUES (1, 1);"))
        .await
        .unwrap();
    other
        .batch_execute(&format!("BEGIN; INSERT INTO {t} (id, tx) VALUES (2, 2);"))
        .await
        .unwrap();
    db.batch_execute(&format!("INSERT INTO {t} (id, tx) VALUES (3, 1);"))
        .await
        .unwrap();
    other
        .batch_execute(&format!("INSERT INTO {t} (id, tx) VALUES (4, 2); COMMIT;"))
        .await
        .unwrap();
    db.batch_execute(&format!("INSERT INTO {t} (id, tx) VALUES (5, 1); COMMIT;"))
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let f = change(&mut feed).await;
        got.push((
            f["data"]["tx"].clone(),
            f["record_id"].clone(),
            f["seq"].clone(),
        ));
    }
    let ids: Vec<_> = got
        .iter()
        .map(|g| g.1.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        ["2", "4", "1", "3", "5"],
        "commit order, each transaction whole"
    );
    let seqs: Vec<_> = got.iter().map(|g| g.2.as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    server.shutdown().await.unwrap();
    cleanup(&db, &n).await;
}

/// Restarts the local PostgreSQL cluster (root, Debian's pg_ctlcluster).
fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("a Debian PostgreSQL cluster under /etc/postgresql");
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster restart failed");
}

async fn insert(db: &tokio_postgres::Client, t: &str, ids: std::ops::RangeInclusive<i64>) {
    for id in ids {
        db.execute(&format!("INSERT INTO {t} (id, tx) VALUES ($1, 0)"), &[&id])
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_or_repeated_across_restarts_of_chorus_and_postgres() {
    let _one = serial().await;
    let Some(db) = database().await else { return };
    let n = names(&db, "restart").await;
    let t = n.table.clone();
    let dir = tempfile::tempdir().unwrap();
    let server = start(feed_config(&n, dir.path())).await;
    let channel = format!("resource:{t}");
    let mut feed = Client::user(&server, "ann").await;
    let epoch = feed.subscribe(&channel).await["position"]["epoch"].clone();
    insert(&db, &t, 1..=20).await;
    for _ in 0..10 {
        change(&mut feed).await;
    }
    // Chorus stops mid-stream (some changes not yet delivered), changes go on meanwhile.
    server.shutdown().await.unwrap();
    insert(&db, &t, 21..=30).await;
    let server = start(feed_config(&n, dir.path())).await;
    let mut probe = Client::user(&server, "bob").await;
    probe.subscribe(&channel).await;
    insert(&db, &t, 31..=31).await;
    while change(&mut probe).await["record_id"] != "31" {}
    // PostgreSQL restarts under the running feed (its replication connection drops).
    drop(db);
    restart_postgres();
    let db = loop {
        if let Ok((c, conn)) = tokio_postgres::connect(URL, NoTls).await {
            tokio::spawn(conn);
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    insert(&db, &t, 32..=40).await;
    while change(&mut probe).await["record_id"] != "40" {}

    // Everything, once, in order, with contiguous seqs: recovery from seq 0.
    let mut late = Client::user(&server, "cid").await;
    let reply = late
        .request(json!({"type": "subscribe", "channel": channel,
            "since": {"epoch": epoch, "seq": 0}}))
        .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let mut ids = Vec::new();
    for seq in 1..=40u64 {
        let f = late.recv_type("data_change").await;
        assert_eq!(f["seq"], seq);
        ids.push(f["record_id"].as_str().unwrap().parse::<i64>().unwrap());
    }
    assert_eq!(ids, (1..=40).collect::<Vec<_>>());
    late.silence(300).await;
    server.shutdown().await.unwrap();
    cleanup(&db, &n).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_without_full_replica_identity_refuses_to_start() {
    let _one = serial().await;
    let Some(db) = database().await else { return };
    let n = names(&db, "identity").await;
    db.batch_execute(&format!("ALTER TABLE {} REPLICA IDENTITY DEFAULT", n.table))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = Server::start(feed_config(&n, dir.path())).await.err();
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("REPLICA IDENTITY FULL"), "{text}");
    cleanup(&db, &n).await;
}

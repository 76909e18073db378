//! Three nodes on one Redis ([`crate::cluster`]) against the single server of the same
//! run: cross-node fan-out (the publisher on node A, the subscribers split over B and C),
//! unpaced and paced, and presence churn across nodes. Besides the usual figures each run
//! reports the nodes' CPU, the broker's CPU and the Redis commands per publish or cycle,
//! and the same plan's figures on the single (in-process) server as `single_*`.

use crate::cluster::Cluster;
use crate::error::BenchError;
use crate::metrics::Figures;
use crate::pubsub::{self, PubSubPlan};
use crate::scenario::{presence, Timing};
use crate::server::Server;

fn plan(t: Timing, subscribers: usize, rate: Option<f64>) -> PubSubPlan {
    let mut p = PubSubPlan {
        channels: 1,
        publishers: 1,
        subscribers,
        stalled: 0,
        duration: t.duration,
        rate,
        window: t.window,
        drain: t.drain,
    };
    if let Some(rate) = rate {
        // As the single-server paced run: the window must not be what paces it.
        p.window = ((rate * 2.0) / p.fanout() as f64).ceil().max(64.0) as u64;
    }
    p
}

/// Publisher on node 0, subscribers alternating over nodes 1 and 2.
fn cross_node(publisher: bool, slot: usize) -> usize {
    if publisher {
        0
    } else {
        1 + slot % 2
    }
}

/// Cross-node fan-out to `subscribers`, paced at `rate` deliveries/s or unpaced.
pub async fn fanout(
    cluster: &Cluster,
    single: &Server,
    t: Timing,
    subscribers: usize,
    rate: Option<f64>,
) -> Result<Figures, BenchError> {
    let plan = plan(t, subscribers, rate);
    let one = pubsub::run(single, &plan).await?.figures();
    let nodes = cluster.node_refs();
    let (requests, calls) = (cluster.commands_processed()?, cluster.command_calls()?);
    let out = pubsub::run_on(&nodes, &cross_node, &[cluster.redis_pid], &plan).await?;
    let requests = cluster.commands_processed()? - requests;
    let calls = cluster.command_calls()? - calls;
    let mut f = out.figures();
    let sent = out.sent.max(1) as f64;
    let delivered = out.delivered.max(1) as f64;
    let us = |d: &std::time::Duration| d.as_secs_f64() * 1e6;
    let publisher_node = out.node_cpu.first().map_or(0.0, us);
    let subscriber_nodes: f64 = out.node_cpu.iter().skip(1).map(us).sum();
    f.insert(
        "publisher_node_cpu_us_per_publish".into(),
        publisher_node / sent,
    );
    f.insert(
        "subscriber_nodes_cpu_us_per_delivery".into(),
        subscriber_nodes / delivered,
    );
    let redis = out.watched_cpu.first().map_or(0.0, us);
    f.insert("redis_cpu_us_per_publish".into(), redis / sent);
    f.insert("redis_requests_per_publish".into(), requests as f64 / sent);
    f.insert("redis_calls_per_publish".into(), calls as f64 / sent);
    for (name, value) in one {
        f.insert(format!("single_{name}"), value);
    }
    if let Some(rate) = rate {
        f.insert("target_per_sec".into(), rate);
    }
    Ok(f)
}

/// Presence churn across nodes: churners on nodes 0 and 1, `members` watchers on node 2.
pub async fn presence(
    cluster: &Cluster,
    single: &Server,
    t: Timing,
    members: usize,
) -> Result<Figures, BenchError> {
    let one = presence::run(single, t, members).await?;
    let nodes = cluster.node_refs();
    let (requests, calls) = (cluster.commands_processed()?, cluster.command_calls()?);
    let mut f = presence::run_on(&nodes, &[cluster.redis_pid], t, members).await?;
    let requests = cluster.commands_processed()? - requests;
    let calls = cluster.command_calls()? - calls;
    let cycles = f.get("cycles").copied().unwrap_or(0.0).max(1.0);
    // A cycle is three presence changes: join, update, leave.
    f.insert(
        "redis_requests_per_change".into(),
        requests as f64 / cycles / 3.0,
    );
    f.insert("redis_calls_per_change".into(), calls as f64 / cycles / 3.0);
    if let Some(v) = f.remove("watched_cpu_us_per_cycle") {
        f.insert("redis_cpu_us_per_cycle".into(), v);
    }
    for (name, value) in one {
        f.insert(format!("single_{name}"), value);
    }
    Ok(f)
}

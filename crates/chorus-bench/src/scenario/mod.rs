//! The scenarios of the issue and what each measures. A scenario runs once against one
//! server and returns its figures; the runner repeats and alternates.

mod cluster;
mod fanout;
pub mod feed;
mod history;
mod idle;
mod presence;
mod soak;
mod state;

use std::time::Duration;

use serde::Serialize;

use crate::error::BenchError;
use crate::metrics::Figures;
use crate::server::{Server, ServerKind};

/// Timing shared by the publish/subscribe scenarios.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timing {
    /// Publishing time of one run.
    pub duration: Duration,
    /// Wait for late deliveries.
    pub drain: Duration,
    /// A publisher's messages in flight in unpaced runs.
    pub window: u64,
}

/// One scenario with its sizes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "scenario", rename_all = "kebab-case")]
pub enum Scenario {
    /// 1 publisher, N subscribers, one channel, unpaced (windowed).
    Fanout {
        /// Subscribers.
        subscribers: usize,
    },
    /// The same, paced to a delivery rate.
    FanoutPaced {
        /// Subscribers.
        subscribers: usize,
        /// Deliveries per second.
        rate: f64,
    },
    /// Many publishers in one channel (each also receives the others).
    Fanin {
        /// Publishers.
        publishers: usize,
    },
    /// N publisher/subscriber pairs, one channel each.
    Channels {
        /// Pairs.
        pairs: usize,
    },
    /// Fan-out with one subscriber that stops reading.
    SlowConsumer {
        /// Reading subscribers.
        subscribers: usize,
    },
    /// Idle connections, each in one (presence) channel: memory.
    Idle {
        /// Connections.
        connections: usize,
        /// Members per channel.
        per_channel: usize,
    },
    /// Joins, updates, leaves on a presence channel of `members` members.
    Presence {
        /// Static members.
        members: usize,
    },
    /// Compare-and-set writers on one channel's shared state.
    State {
        /// Writers (all subscribed).
        writers: usize,
    },
    /// Reconnect with `since` after missing messages.
    History {
        /// Recovering clients.
        clients: usize,
        /// Messages each missed.
        missed: usize,
    },
    /// PostgreSQL commits to `data_change` at a subscriber, paced (needs `--pg-url`).
    Feed {
        /// Changes per second.
        rate: f64,
    },
    /// Paced feed steps of growing rate until latency climbs: the sustained maximum.
    FeedRamp,
    /// Three nodes on one Redis: publisher on one node, subscribers split over the two
    /// others, unpaced or paced; against the single server (needs `redis-server`).
    ClusterFanout {
        /// Subscribers.
        subscribers: usize,
        /// Deliveries per second, or unpaced.
        rate: Option<f64>,
    },
    /// Presence churn across three nodes on one Redis.
    ClusterPresence {
        /// Static members (on the third node).
        members: usize,
    },
    /// Connect/subscribe/publish/disconnect churn, then leak checks.
    Soak {
        /// Churn time.
        secs: u64,
    },
}

impl Scenario {
    /// Name used in tables, JSON and `--scenarios`.
    pub fn name(&self) -> String {
        match self {
            Scenario::Fanout { subscribers } => format!("fanout-{subscribers}"),
            Scenario::FanoutPaced { subscribers, rate } => {
                format!("fanout-{subscribers}-paced-{}k", (rate / 1000.0).round())
            }
            Scenario::Fanin { publishers } => format!("fanin-{publishers}"),
            Scenario::Channels { pairs } => format!("channels-{pairs}"),
            Scenario::SlowConsumer { subscribers } => format!("slow-consumer-{subscribers}"),
            Scenario::Idle { connections, .. } => format!("idle-{connections}"),
            Scenario::Presence { members } => format!("presence-{members}"),
            Scenario::State { writers } => format!("state-{writers}"),
            Scenario::History { clients, missed } => format!("history-{clients}x{missed}"),
            Scenario::Soak { secs } => format!("soak-{secs}s"),
            Scenario::ClusterFanout { subscribers, rate } => match rate {
                None => format!("cluster-fanout-{subscribers}"),
                Some(r) => format!(
                    "cluster-fanout-{subscribers}-paced-{}k",
                    (r / 1000.0).round()
                ),
            },
            Scenario::ClusterPresence { members } => format!("cluster-presence-{members}"),
            Scenario::Feed { rate } => format!("feed-{}k", rate / 1000.0),
            Scenario::FeedRamp => "feed-ramp".to_owned(),
        }
    }

    /// The family name `--scenarios` selects by.
    pub fn family(&self) -> &'static str {
        match self {
            Scenario::Fanout { .. } => "fanout",
            Scenario::FanoutPaced { .. } => "paced",
            Scenario::Fanin { .. } => "fanin",
            Scenario::Channels { .. } => "channels",
            Scenario::SlowConsumer { .. } => "slow",
            Scenario::Idle { .. } => "idle",
            Scenario::Presence { .. } => "presence",
            Scenario::State { .. } => "state",
            Scenario::History { .. } => "history",
            Scenario::Soak { .. } => "soak",
            Scenario::ClusterFanout { .. } | Scenario::ClusterPresence { .. } => "cluster",
            Scenario::Feed { .. } | Scenario::FeedRamp => "feed",
        }
    }

    /// One sentence on what is measured.
    pub fn description(&self) -> String {
        match self {
            Scenario::Fanout { subscribers } => format!("1 publisher, {subscribers} subscribers, one channel, 64-byte payloads, unpaced (closed loop, window per publisher)"),
            Scenario::FanoutPaced { subscribers, rate } => format!("1 publisher, {subscribers} subscribers, paced at {rate} deliveries/s; latency from scheduled send time"),
            Scenario::Fanin { publishers } => format!("{publishers} publishers in one channel, each receiving the others' messages"),
            Scenario::Channels { pairs } => format!("{pairs} channels, one publisher and one subscriber each"),
            Scenario::SlowConsumer { subscribers } => format!("fan-out to {subscribers} subscribers, once with and once without one extra subscriber that never reads (4 KiB receive buffer)"),
            Scenario::Idle { connections, per_channel } => format!("{connections} idle authenticated connections, {per_channel} per (presence) channel; RSS growth per connection"),
            Scenario::Presence { members } => format!("4 churners join, update, leave a presence channel of {members} members"),
            Scenario::State { writers } => format!("{writers} subscribed writers doing compare-and-set (expected_version) on one key"),
            Scenario::History { clients, missed } => format!("{clients} clients reconnect with `since` after missing {missed} messages"),
            Scenario::ClusterFanout { subscribers, rate } => format!("3 nodes on one Redis: 1 publisher on node A, {subscribers} subscribers split over nodes B and C, {}; the same plan on the single server as single_*", rate.map_or("unpaced (closed loop, window per publisher)".to_owned(), |r| format!("paced at {r} deliveries/s"))),
            Scenario::ClusterPresence { members } => format!("3 nodes on one Redis: 4 churners on nodes A and B join, update, leave a presence channel whose {members} members are on node C; the single server as single_*"),
            Scenario::Soak { secs } => format!("{secs} s of connect/subscribe/publish/disconnect churn, then idle: RSS back near idle, stats at zero"),
            Scenario::Feed { rate } => format!("{} PostgreSQL writers commit {rate} INSERTs/s ({} rows per transaction) into a published table; latency from the scheduled COMMIT to the data_change at one subscriber of resource:{}", feed::WRITERS, (rate / feed::MAX_TXN_PER_SEC).ceil().max(1.0), feed::TABLE),
            Scenario::FeedRamp => format!("paced feed steps at {:?} changes/s; sustained: the last step with every change delivered and p99 within {}x the first step's", feed::RAMP, feed::CLIMB),
        }
    }

    /// Servers that speak what the scenario needs (baselines have no presence, state,
    /// history or stats).
    pub fn supports(&self, kind: ServerKind) -> bool {
        match self {
            Scenario::Presence { .. }
            | Scenario::State { .. }
            | Scenario::History { .. }
            | Scenario::Soak { .. }
            | Scenario::Feed { .. }
            | Scenario::FeedRamp
            | Scenario::ClusterFanout { .. }
            | Scenario::ClusterPresence { .. } => kind == ServerKind::Chorus,
            _ => true,
        }
    }

    /// Whether each run needs a server started afresh (memory baselines).
    pub fn fresh_server_per_run(&self) -> bool {
        matches!(self, Scenario::Idle { .. } | Scenario::Soak { .. })
    }

    /// Whether warm-up runs and repetitions apply (the soak runs once).
    pub fn repeats(&self) -> bool {
        !matches!(self, Scenario::Soak { .. } | Scenario::FeedRamp)
    }

    /// Whether the scenario reads the PostgreSQL table of [`feed`] (created before the
    /// server starts, dropped after).
    pub fn needs_database(&self) -> bool {
        matches!(self, Scenario::Feed { .. } | Scenario::FeedRamp)
    }

    /// Whether the scenario runs on a cluster of nodes on a Redis of its own (started
    /// once per scenario, beside the single server it compares with).
    pub fn needs_cluster(&self) -> bool {
        matches!(
            self,
            Scenario::ClusterFanout { .. } | Scenario::ClusterPresence { .. }
        )
    }

    /// At most this many measured repetitions, and no warm-up (the slow-consumer run lasts
    /// 35 s per server).
    pub fn reps_cap(&self) -> Option<usize> {
        matches!(self, Scenario::SlowConsumer { .. }).then_some(3)
    }

    /// Figures shown in the comparison table (all figures go to JSON).
    pub fn key_figures(&self) -> &'static [&'static str] {
        match self {
            Scenario::Fanout { .. } | Scenario::Fanin { .. } | Scenario::Channels { .. } => &[
                "delivered_per_sec",
                "server_cpu_us_per_delivery",
                "latency_p50_ms",
                "latency_p99_ms",
                "latency_p999_ms",
                "peak_rss_kib",
                "lost",
            ],
            Scenario::FanoutPaced { .. } => &[
                "delivered_per_sec",
                "server_cpu_us_per_delivery",
                "latency_p50_ms",
                "latency_p99_ms",
                "latency_p999_ms",
                "lost",
            ],
            Scenario::SlowConsumer { .. } => &[
                "control_delivered_per_sec",
                "stalled_delivered_per_sec",
                "rate_change_pct",
                "control_peak_rss_kib",
                "stalled_peak_rss_kib",
                "stalled_close_code",
                "lost",
            ],
            Scenario::Idle { .. } => &[
                "rss_kib_per_connection",
                "idle_rss_kib",
                "connected_rss_kib",
                "server_cpu_us_per_connect",
            ],
            Scenario::Presence { .. } => &[
                "cycles_per_sec",
                "server_cpu_us_per_cycle",
                "server_cpu_us_per_event",
                "op_latency_p50_ms",
                "op_latency_p99_ms",
                "lost",
            ],
            Scenario::State { .. } => &[
                "accepted_writes_per_sec",
                "conflict_pct",
                "server_cpu_us_per_accepted_write",
                "server_cpu_us_per_delivery",
                "op_latency_p50_ms",
                "op_latency_p99_ms",
                "lost",
            ],
            Scenario::History { .. } => &[
                "replayed_per_sec",
                "server_cpu_us_per_replayed",
                "recovery_p50_ms",
                "recovery_p99_ms",
                "not_recovered",
                "lost",
            ],
            Scenario::Soak { .. } => &[
                "cycles",
                "fresh_rss_kib",
                "idle_rss_kib",
                "after_rss_kib",
                "rss_after_over_idle",
                "rss_after_over_fresh",
                "peak_rss_kib",
                "stats_connections",
                "stats_subscriptions",
                "errors",
            ],
            Scenario::Feed { .. } => &[
                "delivered_per_sec",
                "latency_p50_ms",
                "latency_p99_ms",
                "latency_p999_ms",
                "commit_p50_ms",
                "after_commit_p99_ms",
                "server_cpu_us_per_change",
                "not_delivered",
                "disorder",
            ],
            Scenario::FeedRamp => &["sustained_per_sec", "base_p99_ms"],
            Scenario::ClusterFanout { .. } => &[
                "delivered_per_sec",
                "single_delivered_per_sec",
                "server_cpu_us_per_delivery",
                "single_server_cpu_us_per_delivery",
                "subscriber_nodes_cpu_us_per_delivery",
                "publisher_node_cpu_us_per_publish",
                "redis_cpu_us_per_publish",
                "redis_calls_per_publish",
                "latency_p99_ms",
                "single_latency_p99_ms",
                "lost",
            ],
            Scenario::ClusterPresence { .. } => &[
                "cycles_per_sec",
                "single_cycles_per_sec",
                "server_cpu_us_per_cycle",
                "single_server_cpu_us_per_cycle",
                "redis_cpu_us_per_cycle",
                "redis_calls_per_change",
                "op_latency_p99_ms",
                "single_op_latency_p99_ms",
                "lost",
            ],
        }
    }

    /// Runs a cluster scenario once against `cluster`, and against `single` for comparison.
    pub async fn run_cluster(
        &self,
        cluster: &crate::cluster::Cluster,
        single: &Server,
        timing: Timing,
    ) -> Result<Figures, BenchError> {
        match *self {
            Scenario::ClusterFanout { subscribers, rate } => {
                cluster::fanout(cluster, single, timing, subscribers, rate).await
            }
            Scenario::ClusterPresence { members } => {
                cluster::presence(cluster, single, timing, members).await
            }
            _ => self.run(single, timing).await,
        }
    }

    /// Runs the scenario once against `server`.
    pub async fn run(&self, server: &Server, timing: Timing) -> Result<Figures, BenchError> {
        match *self {
            Scenario::Fanout { subscribers } => fanout::fanout(server, timing, subscribers).await,
            Scenario::FanoutPaced { subscribers, rate } => {
                fanout::paced(server, timing, subscribers, rate).await
            }
            Scenario::Fanin { publishers } => fanout::fanin(server, timing, publishers).await,
            Scenario::Channels { pairs } => fanout::channels(server, timing, pairs).await,
            Scenario::SlowConsumer { subscribers } => {
                fanout::slow_consumer(server, timing, subscribers).await
            }
            Scenario::Idle {
                connections,
                per_channel,
            } => idle::run(server, connections, per_channel).await,
            Scenario::Presence { members } => presence::run(server, timing, members).await,
            Scenario::State { writers } => state::run(server, timing, writers).await,
            Scenario::History { clients, missed } => history::run(server, clients, missed).await,
            Scenario::Soak { secs } => soak::run(server, Duration::from_secs(secs)).await,
            Scenario::Feed { rate } => feed::paced(server, timing, rate).await,
            Scenario::FeedRamp => feed::ramp(server, timing).await,
            Scenario::ClusterFanout { .. } | Scenario::ClusterPresence { .. } => Err(
                BenchError::Options(format!("{} needs a cluster", self.name())),
            ),
        }
    }
}

//! Fan-out, paced fan-out, fan-in, many channels and the slow consumer: publish/subscribe
//! runs of different shapes (see [`crate::pubsub`]).

use crate::error::BenchError;
use crate::metrics::Figures;
use crate::pubsub::{self, PubSubPlan};
use crate::scenario::Timing;
use crate::server::Server;

/// Minimum length of the run with a stalled subscriber.
const STALLED_RUN: std::time::Duration = std::time::Duration::from_secs(30);

fn plan(timing: Timing, channels: usize, publishers: usize, subscribers: usize) -> PubSubPlan {
    PubSubPlan {
        channels,
        publishers,
        subscribers,
        stalled: 0,
        duration: timing.duration,
        rate: None,
        // Split the window among a channel's publishers: a receiver has at most `window`
        // messages in flight whatever the fan-in, well under Chorus's 1,024-frame queue (a
        // fan-in receiver behind by 49 x 32 messages is a slow consumer, rightly closed).
        window: (timing.window / publishers as u64).max(2),
        drain: timing.drain,
    }
}

/// 1 publisher, `subscribers` subscribers, unpaced.
pub async fn fanout(server: &Server, t: Timing, subscribers: usize) -> Result<Figures, BenchError> {
    Ok(pubsub::run(server, &plan(t, 1, 1, subscribers))
        .await?
        .figures())
}

/// 1 publisher paced at `rate` deliveries per second.
pub async fn paced(
    server: &Server,
    t: Timing,
    subscribers: usize,
    rate: f64,
) -> Result<Figures, BenchError> {
    let mut p = plan(t, 1, 1, subscribers);
    p.rate = Some(rate);
    // Room for two seconds of messages: the window must not be what paces the run.
    p.window = ((rate * 2.0) / p.fanout() as f64).ceil().max(64.0) as u64;
    let out = pubsub::run(server, &p).await?;
    let mut f = out.figures();
    f.insert("target_per_sec".into(), rate);
    Ok(f)
}

/// `publishers` publishers and one subscriber in one channel.
pub async fn fanin(server: &Server, t: Timing, publishers: usize) -> Result<Figures, BenchError> {
    Ok(pubsub::run(server, &plan(t, 1, publishers, 1))
        .await?
        .figures())
}

/// `pairs` channels with one publisher and one subscriber each.
pub async fn channels(server: &Server, t: Timing, pairs: usize) -> Result<Figures, BenchError> {
    Ok(pubsub::run(server, &plan(t, pairs, 1, 1)).await?.figures())
}

/// Fan-out without, then with, one extra subscriber that never reads.
pub async fn slow_consumer(
    server: &Server,
    t: Timing,
    subscribers: usize,
) -> Result<Figures, BenchError> {
    let control = pubsub::run(server, &plan(t, 1, 1, subscribers)).await?;
    let mut stalled_plan = plan(t, 1, 1, subscribers);
    stalled_plan.stalled = 1;
    // The server's socket send buffer (Linux autotunes it up to 4 MiB) absorbs seconds of
    // frames before its own queue fills: the stalled run lasts long enough to get there.
    stalled_plan.duration = t.duration.max(STALLED_RUN);
    let stalled = pubsub::run(server, &stalled_plan).await?;
    let (c, s) = (control.figures(), stalled.figures());
    let rate = |f: &Figures| f.get("delivered_per_sec").copied().unwrap_or(0.0);
    let mut f = Figures::new();
    f.insert("control_delivered_per_sec".into(), rate(&c));
    f.insert("stalled_delivered_per_sec".into(), rate(&s));
    f.insert(
        "rate_change_pct".into(),
        (rate(&s) - rate(&c)) / rate(&c).max(1e-9) * 100.0,
    );
    for (prefix, figures) in [("control", &c), ("stalled", &s)] {
        for name in [
            "peak_rss_kib",
            "server_cpu_us_per_delivery",
            "latency_p99_ms",
        ] {
            if let Some(v) = figures.get(name) {
                f.insert(format!("{prefix}_{name}"), *v);
            }
        }
    }
    let code = stalled.stalled_closes.first().copied().flatten();
    // 0: the stalled connection was still open at the end.
    f.insert("stalled_close_code".into(), code.map_or(0.0, f64::from));
    f.insert("lost".into(), (control.lost() + stalled.lost()) as f64);
    f.insert(
        "disorder".into(),
        (control.disorder + stalled.disorder) as f64,
    );
    f.insert("errors".into(), (control.errors + stalled.errors) as f64);
    Ok(f)
}

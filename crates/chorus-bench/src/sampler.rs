//! Samples the server's resident memory while a run goes on, to report its peak.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::procstat;

/// How often RSS is read.
const PERIOD: Duration = Duration::from_millis(20);

/// A running sampler (a local task); [`RssSampler::stop`] returns the peak.
pub struct RssSampler {
    pid: u32,
    peak: Rc<Cell<u64>>,
    stop: Rc<Cell<bool>>,
    task: JoinHandle<()>,
    kernel_peak: bool,
}

impl RssSampler {
    /// Starts sampling `pid`; also resets the kernel's own peak (VmHWM) when allowed, so the
    /// peak between two samples is not missed.
    pub fn start(pid: u32) -> Self {
        let kernel_peak = procstat::reset_peak(pid);
        let peak = Rc::new(Cell::new(procstat::rss_kib(pid).unwrap_or(0)));
        let stop = Rc::new(Cell::new(false));
        let task = tokio::task::spawn_local({
            let (peak, stop) = (peak.clone(), stop.clone());
            async move {
                while !stop.get() {
                    if let Ok(kib) = procstat::rss_kib(pid) {
                        peak.set(peak.get().max(kib));
                    }
                    tokio::time::sleep(PERIOD).await;
                }
            }
        });
        RssSampler {
            pid,
            peak,
            stop,
            task,
            kernel_peak,
        }
    }

    /// Stops and returns the peak RSS in KiB.
    pub async fn stop(self) -> u64 {
        self.stop.set(true);
        let _ = self.task.await;
        let mut peak = self.peak.get();
        if self.kernel_peak {
            peak = peak.max(procstat::peak_rss_kib(self.pid).unwrap_or(0));
        }
        peak
    }
}

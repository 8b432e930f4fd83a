//! The attribution poller's families.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::{PollReasonLabel, SignalSourceLabel};
use super::{FloatGauge, unix};
use crate::attribution::{PollReason, PollStatus};
use crate::report::SignalSource;

#[derive(Debug, Default)]
pub(super) struct AttributionMetrics {
    error: Family<PollReasonLabel, Gauge>,
    polled: Family<Vec<(String, String)>, FloatGauge>,
    gaps: Family<Vec<(String, String)>, Counter>,
    signals: Family<SignalSourceLabel, Counter>,
}

impl AttributionMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "attribution_error",
            "1 for the reason the last read of the Proxmox cluster log and tasks failed (changed_by is null meanwhile), 0 for every other reason",
            self.error.clone(),
        );
        r.register(
            "attribution_last_poll_timestamp_seconds",
            "End of the last read of the Proxmox cluster log and tasks, failed or not (unix time)",
            self.polled.clone(),
        );
        r.register(
            "attribution_log_gaps",
            "Times the Proxmox cluster log turned over between two reads: entries may be lost",
            self.gaps.clone(),
        );
        r.register(
            "change_signals",
            "Change signals read from Proxmox (a cluster log line, a task or a changed config digest of a guest an environment manages), by source",
            self.signals.clone(),
        );
    }

    /// Counts the change signals of one read.
    pub(super) fn count_signals(&self, found: &[SignalSource]) {
        for source in found {
            self.signals
                .get_or_create(&SignalSourceLabel { source: *source })
                .inc();
        }
    }

    /// Shows a poll (`None`: attribution is off, every series goes).
    pub(super) fn show(&self, status: Option<&PollStatus>, new_gaps: u64) {
        let Some(status) = status else {
            self.error.clear();
            self.polled.clear();
            self.gaps.clear();
            return;
        };
        let failed = status.error.as_ref().map(|e| e.reason);
        for reason in PollReason::ALL {
            self.error
                .get_or_create(&PollReasonLabel { reason })
                .set(i64::from(failed == Some(reason)));
        }
        if let Some(t) = status.polled_at {
            self.polled.get_or_create(&Vec::new()).set(unix(t));
        }
        self.gaps.get_or_create(&Vec::new()).inc_by(new_gaps);
    }
}

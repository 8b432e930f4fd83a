//! The unmanaged-guest check's families.

use std::sync::Mutex;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::{GuestLabels, Kind, Reason};
use super::{FloatGauge, unix};
use crate::unmanaged::api::GuestKind;
use crate::unmanaged::{CheckReason, Unmanaged};

/// A guest's or node's name in a label, at most (UTF-16 units).
const NAME_MAX: usize = 128;

#[derive(Debug, Default)]
pub(super) struct UnmanagedMetrics {
    unmanaged: Family<Kind, Gauge>,
    info: Family<GuestLabels, Gauge>,
    error: Family<Reason, Gauge>,
    checked: Family<Vec<(String, String)>, FloatGauge>,
    /// The `tfdrift_unmanaged_resource_info` series shown now.
    series: Mutex<Vec<GuestLabels>>,
}

impl UnmanagedMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "unmanaged_resources",
            "Proxmox VMs (qemu) and containers (lxc) that no environment's state manages",
            self.unmanaged.clone(),
        );
        r.register(
            "unmanaged_resource_info",
            "One series per unmanaged Proxmox guest (bounded by metrics.max_resource_series)",
            self.info.clone(),
        );
        r.register(
            "unmanaged_check_error",
            "1 for the reason of the last unmanaged-guest check when it failed, 0 for every other reason",
            self.error.clone(),
        );
        r.register(
            "unmanaged_last_check_timestamp_seconds",
            "End of the last unmanaged-guest check, failed or not (unix time)",
            self.checked.clone(),
        );
    }

    /// Sets the gauges from a check (`None`: the check is not configured, every series
    /// disappears).
    pub(super) fn show(&self, result: Option<&Unmanaged>, max_series: usize) {
        let mut known = self.series.lock().unwrap_or_else(|p| p.into_inner());
        for old in known.drain(..) {
            self.info.remove(&old);
        }
        let Some(result) = result else {
            for kind in GuestKind::ALL {
                self.unmanaged.remove(&Kind { kind });
            }
            for reason in CheckReason::ALL {
                self.error.remove(&Reason { reason });
            }
            self.checked.clear();
            return;
        };
        for kind in GuestKind::ALL {
            let count = result.guests.iter().filter(|g| g.kind == kind).count();
            self.unmanaged
                .get_or_create(&Kind { kind })
                .set(count as i64);
        }
        for guest in result.guests.iter().take(max_series) {
            let labels = GuestLabels {
                vmid: guest.vmid,
                name: crate::text::label(guest.name.as_deref().unwrap_or_default(), NAME_MAX),
                node: crate::text::label(&guest.node, NAME_MAX),
                kind: guest.kind,
            };
            self.info.get_or_create(&labels).set(1);
            known.push(labels);
        }
        let failed = result.error.as_ref().map(|e| e.reason);
        for reason in CheckReason::ALL {
            self.error
                .get_or_create(&Reason { reason })
                .set(i64::from(failed == Some(reason)));
        }
        if let Some(t) = result.checked_at {
            self.checked.get_or_create(&Vec::new()).set(unix(t));
        }
    }
}

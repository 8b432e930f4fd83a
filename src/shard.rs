//! Work split across replicas the way kube-state-metrics splits it: replica `ordinal` of
//! `total` owns the environments whose name hashes to it, `jump(fnv1a64(name), total)`
//! (Lamping and Veach's jump consistent hash: going from `total` to `total + 1` replicas
//! moves about `1 / (total + 1)` of the environments). In the automatic mode the ordinal is
//! the number after the last `-` of the host name, a StatefulSet pod's `<name>-<ordinal>`.

/// This replica's part of the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub ordinal: u32,
    pub total: u32,
}

impl Default for Shard {
    /// One replica owns everything: sharding off.
    fn default() -> Shard {
        Shard {
            ordinal: 0,
            total: 1,
        }
    }
}

impl Shard {
    /// `shard` is a number or `auto` (the ordinal from `hostname`); an error says which
    /// value is wrong and why.
    pub fn resolve(shard: &str, total: u32, hostname: Option<&str>) -> Result<Shard, String> {
        if total == 0 {
            return Err("the total number of shards must be at least 1".into());
        }
        let ordinal = if shard == "auto" {
            let host = hostname.unwrap_or_default();
            ordinal_of(host).ok_or_else(|| {
                format!("\"auto\" takes the shard from the host name's last \"-<number>\" (a StatefulSet pod's name), and {host:?} has none")
            })?
        } else {
            shard
                .parse::<u32>()
                .map_err(|_| format!("{shard:?} is neither a shard number nor \"auto\""))?
        };
        if ordinal >= total {
            return Err(format!(
                "shard {ordinal} is not below the total of {total} shards (shards count from 0)"
            ));
        }
        Ok(Shard { ordinal, total })
    }

    /// True when this replica scans `environment`.
    /// The unmanaged-guest check runs on shard 0 alone, over every shard's states: once
    /// across the fleet, and a guest managed by any shard's environment is never reported.
    pub fn checks_unmanaged(&self) -> bool {
        self.ordinal == 0
    }

    pub fn owns(&self, environment: &str) -> bool {
        self.total <= 1 || jump(fnv1a64(environment.as_bytes()), self.total) == self.ordinal
    }
}

/// `$HOSTNAME` (a pod's name in Kubernetes), else the kernel's host name.
#[allow(
    clippy::disallowed_methods,
    reason = "read where the configuration is read: before the runtime, or in spawn_blocking"
)]
pub fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
}

/// The number after the last `-` of a host name (`tfdrift-2` -> 2).
fn ordinal_of(host: &str) -> Option<u32> {
    let (_, number) = host.rsplit_once('-')?;
    number.parse().ok()
}

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Jump consistent hash: the bucket of `key` among `buckets` (at least 1).
pub fn jump(mut key: u64, buckets: u32) -> u32 {
    let (mut bucket, mut next): (i64, i64) = (-1, 0);
    while next < i64::from(buckets) {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_is_the_standard_one() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn one_more_shard_moves_about_one_in_n_and_only_to_the_new_one() {
        let names: Vec<String> = (0..10_000).map(|i| format!("env-{i}")).collect();
        for total in 1..12u32 {
            let mut counts = vec![0usize; total as usize + 1];
            let mut moved = 0;
            for name in &names {
                let key = fnv1a64(name.as_bytes());
                let (before, after) = (jump(key, total), jump(key, total + 1));
                assert!(before < total && after <= total);
                if before != after {
                    assert_eq!(after, total, "a key moves only to the new shard");
                    moved += 1;
                }
                counts[after as usize] += 1;
            }
            let share = moved as f64 / names.len() as f64;
            let expected = 1.0 / f64::from(total + 1);
            assert!(
                (share - expected).abs() < 0.02,
                "{total}: {share} vs {expected}"
            );
            let even = names.len() as f64 / f64::from(total + 1);
            assert!(
                counts
                    .iter()
                    .all(|&c| (c as f64 - even).abs() < even * 0.15),
                "{total}: {counts:?}"
            );
        }
    }

    #[test]
    fn the_shard_is_a_number_or_the_host_names_ordinal() {
        assert_eq!(
            Shard::resolve("auto", 3, Some("tfdrift-exporter-2")),
            Ok(Shard {
                ordinal: 2,
                total: 3
            })
        );
        assert_eq!(
            Shard::resolve("1", 2, None),
            Ok(Shard {
                ordinal: 1,
                total: 2
            })
        );
        assert!(
            Shard::resolve("auto", 3, Some("monitoring"))
                .unwrap_err()
                .contains("monitoring")
        );
        assert!(
            Shard::resolve("3", 3, None)
                .unwrap_err()
                .contains("not below")
        );
        assert!(Shard::resolve("x", 3, None).is_err());
        assert!(Shard::resolve("0", 0, None).is_err());
        assert!(Shard::default().owns("anything"));
    }
}

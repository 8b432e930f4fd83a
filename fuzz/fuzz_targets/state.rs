//! `terraform state pull` output and the Proxmox inventory answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tfdrift_exporter::unmanaged::api::parse_inventory;
use tfdrift_exporter::unmanaged::state::managed_guests;

fuzz_target!(|data: &[u8]| {
    let _ = managed_guests(data);
    let _ = parse_inventory(data);
});

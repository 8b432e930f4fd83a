#!/usr/bin/env python3
"""Writes a `terraform show -json` plan of N resources with K changed attributes each.

Shaped like Terraform 1.11 output for Proxmox VMs: every resource is an `update`, with
`before`/`after`, masks, a `resource_drift` entry for one resource in ten, `prior_state`
and `planned_values` repeating the values (as real plans do), and a configuration block.
Usage: gen_plan.py [RESOURCES] [ATTRIBUTES] > plan.json
"""
import json
import sys

resources = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
changed = int(sys.argv[2]) if len(sys.argv) > 2 else 20


def values(i, version):
    # Values about as long as real ones (descriptions, cloud-init snippets, MAC lists).
    attrs = {f"attr_{k:02d}": f"value-{i}-{k}-v{version}-" + "lorem-ipsum-" * 4 for k in range(changed)}
    attrs.update({
        "vmid": 1000 + i,
        "name": f"vm-{i}",
        "node": "pve1",
        "memory": 2048 if version == 0 else 4096,
        "tags": ["terraform", f"group-{i % 7}"],
        "disk": [{"size": "32G", "storage": "local-lvm", "ssd": True}],
    })
    return attrs


changes, drift, prior, planned = [], [], [], []
for i in range(resources):
    address = f"proxmox_vm_qemu.vm[{i}]"
    before, after = values(i, 1), values(i, 0)
    common = {"address": address, "mode": "managed", "type": "proxmox_vm_qemu", "name": "vm",
              "index": i, "provider_name": "registry.terraform.io/telmate/proxmox"}
    changes.append({**common, "change": {
        "actions": ["update"], "before": before, "after": after, "after_unknown": {},
        "before_sensitive": {}, "after_sensitive": {}}})
    if i % 10 == 0:
        drift.append({**common, "change": {
            "actions": ["update"], "before": after, "after": before,
            "after_unknown": {}, "before_sensitive": {}, "after_sensitive": {}}})
    prior.append({**common, "schema_version": 0, "values": before, "sensitive_values": {}})
    planned.append({**common, "schema_version": 0, "values": after, "sensitive_values": {}})

plan = {
    "format_version": "1.2",
    "terraform_version": "1.11.4",
    "variables": {"pm_api_url": {"value": "https://pve1.lan:8006/api2/json"}},
    "planned_values": {"root_module": {"resources": planned}},
    "resource_drift": drift,
    "resource_changes": changes,
    "prior_state": {"format_version": "1.0", "terraform_version": "1.11.4",
                    "values": {"root_module": {"resources": prior}}},
    "configuration": {"root_module": {"variables": {"pm_api_url": {}}}},
    "timestamp": "2026-11-25T03:15:02Z",
    "applyable": True,
    "complete": True,
    "errored": False,
}
json.dump(plan, sys.stdout)

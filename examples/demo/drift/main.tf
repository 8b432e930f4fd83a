# The code says 2048 MB and 2 cores; terraform.tfstate beside this file records what a
# person set by hand in the Proxmox UI (3072 MB, 4 cores), so the scan reports drift.
resource "terraform_data" "vm_db" {
  input = {
    name   = "db"
    memory = 2048
    cores  = 2
  }
}

resource "terraform_data" "firewall_rule" {
  input = {
    action = "ACCEPT"
    dport  = "22"
    source = "192.168.1.0/24"
  }
}

# A VM as the demo declares it; terraform.tfstate beside this file records the same values,
# so the scan finds nothing to do.
resource "terraform_data" "vm_web" {
  input = {
    name   = "web"
    memory = 2048
    cores  = 2
  }
}

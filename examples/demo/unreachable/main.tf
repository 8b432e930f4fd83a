# State in an S3 backend (MinIO) that cannot be reached: nothing listens on 127.0.0.1:1.
# The scan reports an error with reason state_backend.
terraform {
  backend "s3" {
    bucket                      = "tfstate"
    key                         = "demo/terraform.tfstate"
    region                      = "us-east-1"
    endpoints                   = { s3 = "http://127.0.0.1:1" }
    access_key                  = "demo"
    secret_key                  = "demo-secret"
    use_path_style              = true
    skip_credentials_validation = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
    skip_s3_checksum            = true
    max_retries                 = 1
  }
}

resource "terraform_data" "vm_monitoring" {
  input = { name = "grafana", memory = 1024 }
}

"""What the S3 tests do to the server directly, as an administrator with the MinIO console
or `mc` would: buckets, objects, and an IAM user whose key terraform then uses.

    s3ctl.py ENDPOINT create-bucket BUCKET
    s3ctl.py ENDPOINT delete-bucket BUCKET        (its objects first)
    s3ctl.py ENDPOINT list BUCKET                 (one key a line)
    s3ctl.py ENDPOINT get BUCKET KEY              (the object on stdout)
    s3ctl.py ENDPOINT put BUCKET KEY              (the object from stdin)
    s3ctl.py ENDPOINT enable-auth                 (prints "ACCESS_KEY SECRET" of a new user
                                                   with s3:*, then turns credential checks on)

Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when set.
"""

import json
import os
import sys
import urllib.request

import boto3


def client(endpoint, service):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "admin"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "admin"),
    )


def main(endpoint, command, *args):
    s3 = client(endpoint, "s3")
    if command == "create-bucket":
        s3.create_bucket(Bucket=args[0])
    elif command == "delete-bucket":
        for item in s3.list_objects_v2(Bucket=args[0]).get("Contents", []):
            s3.delete_object(Bucket=args[0], Key=item["Key"])
        s3.delete_bucket(Bucket=args[0])
    elif command == "list":
        for item in s3.list_objects_v2(Bucket=args[0]).get("Contents", []):
            print(item["Key"])
    elif command == "get":
        sys.stdout.buffer.write(s3.get_object(Bucket=args[0], Key=args[1])["Body"].read())
    elif command == "put":
        s3.put_object(Bucket=args[0], Key=args[1], Body=sys.stdin.buffer.read())
    elif command == "enable-auth":
        iam = client(endpoint, "iam")
        iam.create_user(UserName="terraform")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(
            UserName="terraform", PolicyName="state", PolicyDocument=json.dumps(policy)
        )
        key = iam.create_access_key(UserName="terraform")["AccessKey"]
        reset = urllib.request.Request(
            endpoint + "/moto-api/reset-auth",
            data=b"0",
            headers={"Content-Type": "text/plain"},
            method="POST",
        )
        urllib.request.urlopen(reset).read()
        print(key["AccessKeyId"], key["SecretAccessKey"])
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Prepares the tests' AWS API emulator (moto) the way an AWS account would be set up:
a provisioned cluster; IAM users with access keys: `syncer` (the connector: may ask for
database credentials, read sign-in secrets and read the UNLOAD staging buckets), `rotator`
(creates and rotates secrets), `outsider` (may do nothing) and
`unloader` (stands in for the cluster's IAM role: may write the staging buckets but
`sync-denied`), `keeper` (the connector without s3:DeleteObject: may ask for database
credentials, read and list the staging buckets, and delete nothing); and the buckets (`sync-staging` and `sync-denied` in us-east-1, `sync-eu` in
eu-west-1). Then turns on moto's IAM enforcement, so that every later call is authenticated
and checked against these users' policies.

    aws_setup.py ENDPOINT_URL

Prints {"syncer": {"access_key_id": ..., "secret_access_key": ...}, "outsider": {...}, ...}.
"""

import json
import sys
import urllib.request

import boto3

REGION = "us-east-1"
CLUSTER = "sync-cluster"

# What the connector needs on a provisioned cluster (docs/configuration.md, IAM sign-in).
SYNC_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["redshift:GetClusterCredentials", "redshift:DescribeClusters"],
            "Resource": "*",
        }
    ],
}


def bucket_resources(*buckets):
    return [arn for b in buckets for arn in (f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*")]


# The connector's reads of sign-in secrets (docs/configuration.md, Secrets Manager sign-in).
SYNC_POLICY["Statement"].append(
    {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": "*"}
)

# The account's administrator of secrets.
ROTATE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue"],
            "Resource": "*",
        }
    ],
}

# The connector's reads of UNLOAD files (docs/design.md, "Initial syncs through UNLOAD").
SYNC_POLICY["Statement"].append(
    {
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:ListBucket", "s3:DeleteObject"],
        "Resource": bucket_resources("sync-staging", "sync-denied", "sync-eu"),
    }
)

# The connector without the permission to delete the files it has read.
KEEP_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        SYNC_POLICY["Statement"][0],
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": bucket_resources("sync-staging", "sync-denied", "sync-eu"),
        },
    ],
}

# The cluster's role for UNLOAD: writes the staging buckets, except sync-denied.
UNLOAD_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:ListBucket", "s3:GetObject"],
            "Resource": bucket_resources("sync-staging", "sync-eu"),
        }
    ],
}


def main():
    endpoint = sys.argv[1]
    session = dict(
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    redshift = boto3.client("redshift", **session)
    iam = boto3.client("iam", **session)
    redshift.create_cluster(
        ClusterIdentifier=CLUSTER,
        ClusterType="single-node",
        NodeType="ra3.xlplus",
        MasterUsername="admin",
        MasterUserPassword="Admin-password-1",
    )
    s3 = boto3.client("s3", **session)
    for bucket in ["sync-staging", "sync-denied"]:
        s3.create_bucket(Bucket=bucket)
    s3.create_bucket(
        Bucket="sync-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    users = {}
    for name, policy in [
        ("syncer", SYNC_POLICY),
        ("outsider", None),
        ("unloader", UNLOAD_POLICY),
        ("keeper", KEEP_POLICY),
        ("rotator", ROTATE_POLICY),
    ]:
        iam.create_user(UserName=name)
        if policy:
            iam.put_user_policy(UserName=name, PolicyName="sync", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        users[name] = {
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
        }
    # From here on, moto authenticates and authorizes every request.
    request = urllib.request.Request(
        endpoint + "/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request).read()
    print(json.dumps(users))


if __name__ == "__main__":
    main()

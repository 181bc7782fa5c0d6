"""Prepares the tests' AWS API emulator (moto) the way an AWS account would be set up:
a provisioned cluster, and two IAM users with access keys, one allowed to ask for database
credentials and one not. Then turns on moto's IAM enforcement, so that every later call is
authenticated and checked against these users' policies.

    aws_setup.py ENDPOINT_URL

Prints {"syncer": {"access_key_id": ..., "secret_access_key": ...}, "outsider": {...}}.
"""

import json
import sys
import urllib.request

import boto3

REGION = "us-east-1"
CLUSTER = "sync-cluster"

# What the connector needs on a provisioned cluster (README, IAM sign-in).
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
    users = {}
    for name, policy in [("syncer", SYNC_POLICY), ("outsider", None)]:
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

//! Every configuration key, in the order the configuration form shows them.

pub const HOST: &str = "host";
pub const PORT: &str = "port";
pub const DATABASE: &str = "database";
pub const TRANSPORT: &str = "transport";
pub const AUTH: &str = "auth";
pub const USER: &str = "user";
pub const PASSWORD: &str = "password";
pub const REGION: &str = "region";
pub const CLUSTER_IDENTIFIER: &str = "cluster_identifier";
pub const WORKGROUP: &str = "workgroup";
pub const DB_USER: &str = "db_user";
pub const AUTO_CREATE: &str = "auto_create";
pub const DB_GROUPS: &str = "db_groups";
pub const AWS_ENDPOINT_URL: &str = "aws_endpoint_url";
pub const SECRET_ARN: &str = "secret_arn";
pub const SSLMODE: &str = "sslmode";
pub const SSLROOTCERT: &str = "sslrootcert";
pub const SSH_HOST: &str = "ssh_host";
pub const SSH_PORT: &str = "ssh_port";
pub const SSH_USER: &str = "ssh_user";
pub const SSH_PRIVATE_KEY: &str = "ssh_private_key";
pub const SSH_PRIVATE_KEY_PASSPHRASE: &str = "ssh_private_key_passphrase";
pub const SSH_HOST_KEY: &str = "ssh_host_key";
pub const SCHEMAS: &str = "schemas";
pub const TABLES: &str = "tables";
pub const CURSOR_COLUMN: &str = "cursor_column";
pub const CURSOR_LAG_S: &str = "cursor_lag_s";
pub const PRIMARY_KEY: &str = "primary_key";
pub const DELETED_COLUMN: &str = "deleted_column";
pub const DELETE_CAPTURE: &str = "delete_capture";
pub const RESYNC_INTERVAL_H: &str = "resync_interval_h";
pub const WORK_SCHEMA: &str = "work_schema";
pub const NEW_COLUMN_BACKFILL: &str = "new_column_backfill";
pub const BATCH_SIZE: &str = "batch_size";
pub const MAX_BATCH_BYTES: &str = "max_batch_bytes";
pub const MAX_ROWS_PER_QUERY: &str = "max_rows_per_query";
pub const MAX_PARALLEL_TABLES: &str = "max_parallel_tables";
pub const UNLOAD_S3_URI: &str = "unload_s3_uri";
pub const UNLOAD_IAM_ROLE: &str = "unload_iam_role";
pub const UNLOAD_REGION: &str = "unload_region";
pub const UNLOAD_MIN_ROWS: &str = "unload_min_rows";
pub const UNLOAD_S3_ENDPOINT_URL: &str = "unload_s3_endpoint_url";
pub const CONNECT_TIMEOUT_S: &str = "connect_timeout_s";
pub const QUERY_TIMEOUT_S: &str = "query_timeout_s";
pub const RETRY_TIMEOUT_S: &str = "retry_timeout_s";

/// All keys the connector understands; anything else is rejected as a probable typo.
pub const ALL: &[&str] = &[
    DATABASE,
    TRANSPORT,
    // The direct transport's (the form groups them, shown while `transport` is direct).
    HOST,
    PORT,
    AUTH,
    USER,
    PASSWORD,
    AUTO_CREATE,
    DB_GROUPS,
    SSLMODE,
    SSLROOTCERT,
    SSH_HOST,
    SSH_PORT,
    SSH_USER,
    SSH_PRIVATE_KEY,
    SSH_PRIVATE_KEY_PASSPHRASE,
    SSH_HOST_KEY,
    CONNECT_TIMEOUT_S,
    // AWS: IAM sign-in, Secrets Manager sign-in, the Data API.
    REGION,
    CLUSTER_IDENTIFIER,
    WORKGROUP,
    DB_USER,
    AWS_ENDPOINT_URL,
    SECRET_ARN,
    SCHEMAS,
    TABLES,
    CURSOR_COLUMN,
    CURSOR_LAG_S,
    PRIMARY_KEY,
    DELETED_COLUMN,
    DELETE_CAPTURE,
    RESYNC_INTERVAL_H,
    WORK_SCHEMA,
    NEW_COLUMN_BACKFILL,
    BATCH_SIZE,
    MAX_BATCH_BYTES,
    MAX_ROWS_PER_QUERY,
    MAX_PARALLEL_TABLES,
    UNLOAD_S3_URI,
    UNLOAD_IAM_ROLE,
    UNLOAD_REGION,
    UNLOAD_MIN_ROWS,
    UNLOAD_S3_ENDPOINT_URL,
    QUERY_TIMEOUT_S,
    RETRY_TIMEOUT_S,
];

#[cfg(test)]
mod tests {
    use super::ALL;

    /// The keys the configuration reference documents (its tables' first columns).
    fn documented() -> Vec<&'static str> {
        include_str!("../../docs/configuration.md")
            .lines()
            .filter_map(|line| line.strip_prefix("| `")?.split_once("` |"))
            .map(|(key, _)| key)
            // A first cell that is one name (not `a` + `b`, as the sign-in tables have).
            .filter(|key| {
                key.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
            .collect()
    }

    /// Keys are described in three places (here, the form, the reference): the form's test
    /// checks the form; this one keeps the reference in agreement with the code both ways.
    #[test]
    fn every_key_is_documented_in_the_reference_and_every_documented_key_exists() {
        let documented = documented();
        for key in ALL {
            assert!(
                documented.contains(key),
                "`{key}` is not in docs/configuration.md's tables"
            );
        }
        for key in &documented {
            assert!(
                ALL.contains(key),
                "docs/configuration.md documents `{key}`, which the connector does not accept"
            );
        }
    }
}

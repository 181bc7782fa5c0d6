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

/// One key as the configuration reference (`docs/configuration.md`) describes it.
#[derive(Debug, Clone, Copy)]
pub struct KeyReference {
    pub key: &'static str,
    /// Its default, as the reference states it (Markdown).
    pub default: &'static str,
    /// What it means, as the reference states it (Markdown).
    pub meaning: &'static str,
}

/// Every key, in the order the configuration form shows them, with its reference: the one table
/// the parser's key list ([`ALL`]), the reference's key table (rendered from it, see the tests)
/// and the form (checked against [`ALL`] in order) follow. Adding a key starts here.
pub const REFERENCE: &[KeyReference] = &[
    KeyReference {
        key: DATABASE,
        default: r#"required (optional with a secret on the direct transport)"#,
        meaning: r#"database to sync from (Redshift's default is `dev`); with `auth` = secret, empty takes the secret's `dbname`"#,
    },
    KeyReference {
        key: TRANSPORT,
        default: r#"`direct`"#,
        meaning: r#"`direct`: sessions speak the PostgreSQL protocol to `host`:`port` (straight, or through `ssh_host`). `data_api`: statements go through the Redshift Data API over HTTPS, for a cluster or workgroup with no network path; see ["Through the Redshift Data API"](#through-the-redshift-data-api)"#,
    },
    KeyReference {
        key: HOST,
        default: r#"required (optional with IAM or a secret)"#,
        meaning: r#"cluster or workgroup endpoint, without port; with `auth` = iam it may be empty, and the endpoint is asked from AWS; with `auth` = secret, empty takes the secret's `host`"#,
    },
    KeyReference {
        key: PORT,
        default: r#"`5439`"#,
        meaning: r#"TCP port (with IAM and no host: the endpoint's)"#,
    },
    KeyReference {
        key: AUTH,
        default: r#"`password`"#,
        meaning: r#"`password`: `user` and `password`. `iam`: temporary credentials from AWS, see ["IAM sign-in"](#iam-sign-in). `secret`: the user and password of a Secrets Manager secret, see ["Secrets Manager sign-in"](#secrets-manager-sign-in)"#,
    },
    KeyReference {
        key: USER,
        default: r#"required with `auth` = password"#,
        meaning: r#"a user with USAGE on the schemas and SELECT on the tables (with IAM on a provisioned cluster: the database user, if `db_user` is empty)"#,
    },
    KeyReference {
        key: PASSWORD,
        default: r#"required with `auth` = password"#,
        meaning: r#"the user's password (must be empty with IAM)"#,
    },
    KeyReference {
        key: AUTO_CREATE,
        default: r#"`false`"#,
        meaning: r#"IAM, provisioned, with `db_user`: create the user if it does not exist"#,
    },
    KeyReference {
        key: DB_GROUPS,
        default: r#""#,
        meaning: r#"IAM, provisioned, with `db_user`: comma list of groups the user joins for the session"#,
    },
    KeyReference {
        key: SSLMODE,
        default: r#"`verify-full`"#,
        meaning: r#"as libpq names them: `verify-full` (chain and host name; Redshift's ACM certificates chain to the system roots, so this costs nothing), `verify-ca` (the chain only, so it needs `sslrootcert`: against the system roots any public certificate for any name would pass, and it is refused without one, as libpq refuses it), `require` (encrypt, no certificate check), `prefer`, `disable`. A password the server asks for in cleartext is sent only over `verify-full`, or `verify-ca` with `sslrootcert`; otherwise Test and Update fail and say so. A SCRAM sign-in must end with the server's proof before the connector accepts it. Choose a weaker mode deliberately, with `sslrootcert` for a private CA first"#,
    },
    KeyReference {
        key: SSLROOTCERT,
        default: r#"system roots"#,
        meaning: r#"PEM text of the CA(s) to trust, or the path of a PEM file (a regular file of at most 1 MiB, read off the async workers; any other path gets one error that says nothing about the file); replaces the system roots, which already trust Redshift's ACM certificates"#,
    },
    KeyReference {
        key: SSH_HOST,
        default: r#"off"#,
        meaning: r#"a bastion host to tunnel every session through (see ["Through an SSH bastion"](#through-an-ssh-bastion)); `host` and `port` are then the cluster's as the bastion resolves them"#,
    },
    KeyReference {
        key: SSH_PORT,
        default: r#"`22`"#,
        meaning: r#"the bastion's SSH port"#,
    },
    KeyReference {
        key: SSH_USER,
        default: r#"required with `ssh_host`"#,
        meaning: r#"the bastion user to sign in as, by public key"#,
    },
    KeyReference {
        key: SSH_PRIVATE_KEY,
        default: r#"required with `ssh_host`"#,
        meaning: r#"the private key's text: OpenSSH (`-----BEGIN OPENSSH PRIVATE KEY-----`) or PEM (PKCS#1/PKCS#8); Ed25519, ECDSA or RSA. Line breaks may be written `\n`"#,
    },
    KeyReference {
        key: SSH_PRIVATE_KEY_PASSPHRASE,
        default: r#""#,
        meaning: r#"the passphrase of an encrypted key"#,
    },
    KeyReference {
        key: SSH_HOST_KEY,
        default: r#"required with `ssh_host`"#,
        meaning: r#"the bastion's public host key: the contents of its `/etc/ssh/ssh_host_ed25519_key.pub`, a `known_hosts` line, or `ssh-keyscan -t ed25519 <bastion>` output checked out of band. Never learned on first use: a bastion presenting another key is refused"#,
    },
    KeyReference {
        key: CONNECT_TIMEOUT_S,
        default: r#"`30`"#,
        meaning: r#"seconds to establish a connection (1 to 3600); also how long a server may stop in the middle of a message before the session fails (a long query's silence before its first row is not bounded by it)"#,
    },
    KeyReference {
        key: REGION,
        default: r#"required with IAM and the Data API"#,
        meaning: r#"the cluster's or workgroup's AWS region, e.g. `us-east-1`; with `auth` = secret, Secrets Manager's region (default: the ARN's)"#,
    },
    KeyReference {
        key: CLUSTER_IDENTIFIER,
        default: r#""#,
        meaning: r#"IAM or the Data API, provisioned cluster: its identifier"#,
    },
    KeyReference {
        key: WORKGROUP,
        default: r#""#,
        meaning: r#"IAM or the Data API, Redshift Serverless: the workgroup name"#,
    },
    KeyReference {
        key: DB_USER,
        default: r#""#,
        meaning: r#"IAM or the Data API, provisioned: sign in as this database user (GetClusterCredentials); empty: as the IAM identity (GetClusterCredentialsWithIAM)"#,
    },
    KeyReference {
        key: AWS_ENDPOINT_URL,
        default: r#"the region's"#,
        meaning: r#"IAM, secret or the Data API: another endpoint for the Redshift, Redshift Data or Secrets Manager APIs (a VPC interface endpoint, say)"#,
    },
    KeyReference {
        key: SECRET_ARN,
        default: r#"required with `auth` = secret"#,
        meaning: r#"the ARN of the secret holding the user and password (or its name, with `region`); with the Data API, the statements run as the secret's user"#,
    },
    KeyReference {
        key: SCHEMAS,
        default: r#"all but system schemas"#,
        meaning: r#"comma list of schemas"#,
    },
    KeyReference {
        key: TABLES,
        default: r#"all readable"#,
        meaning: r#"comma list of `schema.table` to include"#,
    },
    KeyReference {
        key: CURSOR_COLUMN,
        default: r#"`updated_at`"#,
        meaning: r#"the column that says when a row changed, plus per-table overrides: `updated_at, public.orders:modified_at`"#,
    },
    KeyReference {
        key: CURSOR_LAG_S,
        default: r#"`0`"#,
        meaning: r#"TIMESTAMP/TIMESTAMPTZ cursors are always read only up to the database's clock (`GETDATE()`) minus this many seconds; later rows wait for a later sync (see "The cursor's upper bound" and "Late commits" in [design.md](design.md)); set it to your longest load transaction"#,
    },
    KeyReference {
        key: PRIMARY_KEY,
        default: r#"declared keys"#,
        meaning: r#"per-table key columns, in `cursor_column`'s override syntax with several columns joined by `+`: `public.events:event_id, sales.lines:order_id+line_no`. They replace the declared key (Redshift does not enforce keys, see ["Known limits"](design.md#known-limits)) or give a table without one a key: Schema reports them, the host keys rows by them, and `delete_capture = keys` can then name the table's deleted rows. An override naming a missing column keeps the declared key, with a Warning"#,
    },
    KeyReference {
        key: DELETED_COLUMN,
        default: r#"off"#,
        meaning: r#"a column that marks rows deleted, plus per-table overrides in `cursor_column`'s syntax: `is_deleted, public.orders:deleted_at`. A BOOLEAN (true = deleted) or a TIMESTAMP/TIMESTAMPTZ (set = deleted); see "Soft deletes" in [design.md](design.md)"#,
    },
    KeyReference {
        key: DELETE_CAPTURE,
        default: r#"`none`"#,
        meaning: r#"`resync`: every `resync_interval_h` hours each table read by a cursor is re-synced from scratch, so rows deleted in Redshift are marked deleted (see "Hard deletes by re-sync" in [design.md](design.md)); `keys`: every sync compares each table's primary keys with a snapshot of them kept in `work_schema`, inside Redshift, and sends the keys that vanished as DELETEs (see "Hard deletes by key snapshot" in [design.md](design.md))"#,
    },
    KeyReference {
        key: RESYNC_INTERVAL_H,
        default: r#"`24`"#,
        meaning: r#"with `delete_capture = resync`: hours between a table's re-syncs (0 to 8,784; 0 = every sync)"#,
    },
    KeyReference {
        key: WORK_SCHEMA,
        default: r#""#,
        meaning: r#"with `delete_capture = keys` (required): a schema the user may `CREATE` tables in; it holds one key snapshot per table and is never synced"#,
    },
    KeyReference {
        key: NEW_COLUMN_BACKFILL,
        default: r#"`true`"#,
        meaning: r#"a column that appears in a table (or is newly selected) re-syncs that table, through UNLOAD where configured, so rows synced before carry it; `false`: only rows changed afterwards carry it (see "Schema changes" in [design.md](design.md))"#,
    },
    KeyReference {
        key: BATCH_SIZE,
        default: r#"`5000`"#,
        meaning: r#"rows per fetch round trip (1 to 1,000,000), and at most between two updates of the table's position"#,
    },
    KeyReference {
        key: MAX_BATCH_BYTES,
        default: r#"`8388608` (8 MiB)"#,
        meaning: r#"bytes of records at most between checkpoints and in one message (64 KiB to 64 MiB): wide rows are checkpointed by size, and memory stays bounded whatever the row width"#,
    },
    KeyReference {
        key: MAX_ROWS_PER_QUERY,
        default: r#"`auto`"#,
        meaning: r#"`auto`: each query reads as many rows as fit 1 GiB of results (at most 100 MB through the Data API; shared by the tables synced at once; rows sized from the declared column widths, then from the rows seen), so most tables are one query and the largest a few, keeping the total work near-linear. A number: no query reads more rows than that, and a larger table is read by consecutive keyset queries (for query monitoring rules that abort queries by returned rows)"#,
    },
    KeyReference {
        key: MAX_PARALLEL_TABLES,
        default: r#"`1`"#,
        meaning: r#"tables synced at once within one Update (1 to 32), each on its own connection and task; each running scan holds one of the cluster's WLM query slots, so raise it only where the queue has slots to spare"#,
    },
    KeyReference {
        key: UNLOAD_S3_URI,
        default: r#"off"#,
        meaning: r#"`s3://bucket/prefix/`: initial syncs and full passes of large tables go through UNLOAD to this staging location (see ["Initial syncs through UNLOAD"](design.md#initial-syncs-through-unload)); give each connection a prefix of its own"#,
    },
    KeyReference {
        key: UNLOAD_IAM_ROLE,
        default: r#"required with `unload_s3_uri`"#,
        meaning: r#"the ARN of a role associated with the cluster that may write the staging location (chained roles comma-separated), or `default` for the cluster's default IAM role"#,
    },
    KeyReference {
        key: UNLOAD_REGION,
        default: r#"the cluster's"#,
        meaning: r#"the staging bucket's region, when it is not the cluster's (UNLOAD's `REGION`)"#,
    },
    KeyReference {
        key: UNLOAD_MIN_ROWS,
        default: r#"`1000000`"#,
        meaning: r#"tables of fewer rows (`COUNT(*)`) are read by queries: below this an UNLOAD's fixed cost outweighs its parallel export"#,
    },
    KeyReference {
        key: UNLOAD_S3_ENDPOINT_URL,
        default: r#"AWS's"#,
        meaning: r#"an S3 endpoint for the connector's reads (a VPC endpoint, an S3-compatible store), addressed path-style"#,
    },
    KeyReference {
        key: QUERY_TIMEOUT_S,
        default: r#"`0` (none)"#,
        meaning: r#"`statement_timeout` in seconds; on Redshift it includes WLM queue time"#,
    },
    KeyReference {
        key: RETRY_TIMEOUT_S,
        default: r#"`1800` (30 min)"#,
        meaning: r#"how long an Update goes on reconnecting and resuming after transient failures (a reboot, failover, resize, maintenance window: connections refused or lost, SQLSTATE 57P01/57P03, serializable conflicts) before it ends with `UNAVAILABLE`; the time starts over whenever rows arrive. Waits double from 1 s to 30 s, each jittered between half and all of it so parallel tables do not retry in lockstep; the wait ends at once when the host leaves. `0`: no retry"#,
    },
];

/// All keys the connector understands (the first column of [`REFERENCE`]); anything else is
/// rejected as a probable typo.
pub const ALL: &[&str] = &{
    let mut names = [""; REFERENCE.len()];
    let mut index = 0;
    while index < REFERENCE.len() {
        names[index] = REFERENCE[index].key;
        index += 1;
    }
    names
};

/// The reference's key table, in Markdown, rendered from [`REFERENCE`].
pub fn reference_table() -> String {
    let mut table = String::from("| key | default | meaning |\n|---|---|---|\n");
    for row in REFERENCE {
        let default = if row.default.is_empty() {
            " ".to_string()
        } else {
            format!(" {} ", row.default)
        };
        table.push_str(&format!("| `{}` |{default}| {} |\n", row.key, row.meaning));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::{reference_table, ALL};

    const REFERENCE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");

    /// The reference's key table is [`reference_table`], exactly: a key added, removed or
    /// reworded in the code and not in the file (or the other way round) fails here.
    /// `UPDATE_REFERENCE=1 cargo test --lib reference` writes the file's table from the code.
    #[test]
    fn the_reference_key_table_is_rendered_from_the_key_table() {
        let text = std::fs::read_to_string(REFERENCE_FILE).expect("docs/configuration.md");
        let start = text
            .find("| key | default | meaning |")
            .expect("the reference's key table");
        let end = start
            + text[start..]
                .find("\n\n")
                .expect("a blank line after the key table")
            + 1;
        let rendered = reference_table();
        if std::env::var_os("UPDATE_REFERENCE").is_some() {
            let updated = format!("{}{rendered}{}", &text[..start], &text[end..]);
            std::fs::write(REFERENCE_FILE, updated).expect("write docs/configuration.md");
            return;
        }
        assert!(
            text[start..end] == rendered,
            "docs/configuration.md's key table differs from src/config/keys.rs's REFERENCE; run UPDATE_REFERENCE=1 cargo test --lib reference, or change REFERENCE"
        );
    }

    #[test]
    fn keys_are_named_once_and_simply() {
        let mut seen = std::collections::BTreeSet::new();
        for key in ALL {
            assert!(seen.insert(key), "`{key}` twice");
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "`{key}`"
            );
        }
    }
}

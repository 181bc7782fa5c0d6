//! The configuration form hosts show to users: every configuration key, and the tests.

use crate::config::transport::DIRECT_ONLY;
use crate::config::{keys, SslMode, DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_BYTES, DEFAULT_PORT};
use crate::proto::{
    form_field, visibility_condition, ConditionalFields, ConfigurationFormResponse,
    ConfigurationTest, DropdownField, FormField, TextField, ToggleField, VisibilityCondition,
};

pub const TEST_CONNECT: &str = "connect";
pub const TEST_SELECT: &str = "select";

fn text(
    name: &str,
    label: &str,
    required: bool,
    description: &str,
    default: Option<&str>,
) -> FormField {
    FormField {
        name: name.to_string(),
        label: label.to_string(),
        required: Some(required),
        description: Some(description.to_string()),
        r#type: Some(form_field::Type::TextField(TextField::PlainText as i32)),
        default_value: default.map(str::to_string),
        placeholder: None,
    }
}

/// The name of the group of the direct transport's fields ([`DIRECT_ONLY`]): a container on
/// the form, never a key.
pub const DIRECT_TRANSPORT_GROUP: &str = "direct_transport_settings";

/// Moves the direct transport's fields ([`DIRECT_ONLY`]) into one group, shown while `transport` is direct,
/// right after the `transport` field.
fn with_direct_fields_grouped(fields: Vec<FormField>) -> Vec<FormField> {
    let (direct, mut rest): (Vec<FormField>, Vec<FormField>) = fields
        .into_iter()
        .partition(|field| DIRECT_ONLY.contains(&field.name.as_str()));
    let group = FormField {
        name: DIRECT_TRANSPORT_GROUP.to_string(),
        label: "Direct connection".to_string(),
        required: Some(false),
        description: Some(
            "With transport = direct: where the cluster listens, how to sign in and secure the session, and an optional SSH bastion.".to_string(),
        ),
        r#type: Some(form_field::Type::ConditionalFields(ConditionalFields {
            condition: Some(VisibilityCondition {
                condition_field: keys::TRANSPORT.to_string(),
                visible_when: Some(visibility_condition::VisibleWhen::StringValue(
                    "direct".to_string(),
                )),
            }),
            fields: direct,
        })),
        default_value: None,
        placeholder: None,
    };
    let at = rest
        .iter()
        .position(|field| field.name == keys::TRANSPORT)
        .map_or(0, |index| index + 1);
    rest.insert(at, group);
    rest
}

pub fn configuration_form() -> ConfigurationFormResponse {
    let mut password = text(
        keys::PASSWORD,
        "Password",
        false,
        "With auth = password: the user's password. Empty with auth = iam.",
        None,
    );
    password.r#type = Some(form_field::Type::TextField(TextField::Password as i32));
    let secret = |name: &str, label: &str, description: &str| {
        let mut field = text(name, label, false, description, None);
        field.r#type = Some(form_field::Type::TextField(TextField::Password as i32));
        field
    };
    let sslmode = FormField {
        name: keys::SSLMODE.to_string(),
        label: "TLS mode".to_string(),
        required: Some(false),
        description: Some(
            "verify-full (the default: check the chain and the host name; Redshift's certificates chain to the system roots, a private CA goes in sslrootcert), verify-ca (check the chain only), require (encrypt, no certificate check), prefer, disable. A password the server asks for in cleartext is sent only with verify-ca or verify-full.".to_string(),
        ),
        r#type: Some(form_field::Type::DropdownField(DropdownField {
            dropdown_field: SslMode::NAMES.iter().map(ToString::to_string).collect(),
        })),
        default_value: Some("verify-full".to_string()),
        placeholder: None,
    };
    let auth = FormField {
        name: keys::AUTH.to_string(),
        label: "Sign-in".to_string(),
        required: Some(false),
        description: Some(
            "password: a database user and password. iam: temporary database credentials from AWS (GetClusterCredentials, GetClusterCredentialsWithIAM or Serverless GetCredentials), signed with the AWS credentials of the standard chain (environment, profile, web identity, instance or container role), renewed as they expire. secret: the user and password of an AWS Secrets Manager secret (secret_arn), read with the same AWS credentials, and read again when the database refuses them (a rotation).".to_string(),
        ),
        r#type: Some(form_field::Type::DropdownField(DropdownField {
            dropdown_field: vec![
                "password".to_string(),
                "iam".to_string(),
                "secret".to_string(),
            ],
        })),
        default_value: Some("password".to_string()),
        placeholder: None,
    };
    let transport = FormField {
        name: keys::TRANSPORT.to_string(),
        label: "Transport".to_string(),
        required: Some(false),
        description: Some(
            "direct: the PostgreSQL protocol to host and port (or through an SSH bastion). data_api: the Redshift Data API over HTTPS, for a cluster or workgroup with no network path; needs region, cluster_identifier or workgroup, database, and secret_arn, db_user or neither (the IAM identity); host, port, user, password, TLS and SSH settings must then be empty.".to_string(),
        ),
        r#type: Some(form_field::Type::DropdownField(DropdownField {
            dropdown_field: crate::config::transport::NAMES
                .iter()
                .map(ToString::to_string)
                .collect(),
        })),
        default_value: Some("direct".to_string()),
        placeholder: None,
    };
    let mut auto_create = text(
        keys::AUTO_CREATE,
        "Create the database user",
        false,
        "auth = iam, provisioned, with db_user: create db_user if it does not exist (needs redshift:CreateClusterUser).",
        Some("false"),
    );
    auto_create.r#type = Some(form_field::Type::ToggleField(ToggleField {}));
    let port = DEFAULT_PORT.to_string();
    let batch = DEFAULT_BATCH_SIZE.to_string();
    let batch_bytes = DEFAULT_MAX_BATCH_BYTES.to_string();
    let mut host = text(
        keys::HOST,
        "Host",
        false,
        "The cluster or workgroup endpoint, without port. With auth = iam it may be left empty: the endpoint is asked from AWS.",
        None,
    );
    host.placeholder =
        Some("examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com".to_string());
    let fields = vec![
            host,
            text(keys::PORT, "Port", false, "The cluster's port; empty = 5439, or the endpoint's with auth = iam and no host.", Some(&port)),
            text(keys::DATABASE, "Database", false, "The database to sync from, e.g. dev (required, unless auth = secret and the secret holds its dbname).", None),
            transport,
            auth,
            text(keys::USER, "User", false, "With auth = password: a user with USAGE on the schemas and SELECT on the tables. With auth = iam on a provisioned cluster: the database user to sign in as, when db_user is empty.", None),
            password,
            text(keys::REGION, "AWS region", false, "auth = iam, or transport = data_api: the region of the cluster or workgroup, e.g. us-east-1.", None),
            text(keys::CLUSTER_IDENTIFIER, "Cluster identifier", false, "auth = iam or transport = data_api, provisioned cluster: its identifier. Leave empty for Serverless.", None),
            text(keys::WORKGROUP, "Serverless workgroup", false, "auth = iam or transport = data_api, Redshift Serverless: the workgroup name (the database user is the IAM identity, or the secret's with secret_arn). Leave empty for a provisioned cluster.", None),
            text(keys::DB_USER, "Database user (IAM)", false, "auth = iam or transport = data_api, provisioned: the database user GetClusterCredentials signs in as; empty (and no user) = GetClusterCredentialsWithIAM, signing in as the IAM identity.", None),
            auto_create,
            text(keys::DB_GROUPS, "Database groups (IAM)", false, "auth = iam, provisioned, with db_user: comma-separated groups the user joins for the session (needs redshift:JoinGroup).", None),
            text(keys::AWS_ENDPOINT_URL, "AWS API endpoint", false, "auth = iam or secret, or transport = data_api: an endpoint for the Redshift, Redshift Data or Secrets Manager API other than the region's (e.g. a VPC interface endpoint). Empty = the region's.", None),
            text(keys::SECRET_ARN, "Secret ARN", false, "auth = secret, or transport = data_api: the ARN of the Secrets Manager secret holding the user and password, in the JSON AWS writes for Redshift (username, password, and optionally host, port, dbname, used on the direct transport when host, port or database are empty). Needs secretsmanager:GetSecretValue on it.", None),
            sslmode,
            text(keys::SSLROOTCERT, "Root certificate", false, "PEM text of the CA to trust for verify-ca/verify-full, or the path of a PEM file (at most 1 MiB); empty = the system roots (which trust Redshift's certificates).", None),
            text(keys::SSH_HOST, "SSH bastion", false, "For clusters reachable only through a bastion host: its name or address. Every session then goes through an SSH tunnel (the host and port above are then as the bastion sees them). Empty = connect directly.", None),
            text(keys::SSH_PORT, "SSH port", false, "The bastion's SSH port.", Some("22")),
            text(keys::SSH_USER, "SSH user", false, "With a bastion: the user to log in as (key authentication; the user needs TCP forwarding to the cluster, nothing else).", None),
            secret(keys::SSH_PRIVATE_KEY, "SSH private key", "With a bastion: the text of a private key (OpenSSH or PEM; Ed25519, ECDSA or RSA) whose public key is in the user's authorized_keys on the bastion."),
            secret(keys::SSH_PRIVATE_KEY_PASSPHRASE, "SSH key passphrase", "With a bastion: the passphrase of an encrypted private key."),
            text(keys::SSH_HOST_KEY, "SSH host key", false, "With a bastion, required: the bastion's public host key (e.g. the contents of its /etc/ssh/ssh_host_ed25519_key.pub, or a line of ssh-keyscan). A bastion presenting any other key is refused: the key is never trusted on first use.", None),
            text(keys::SCHEMAS, "Schemas", false, "Comma-separated schemas to sync; empty = every schema but the system ones. Names resolve as in SQL: unquoted names are lower case, \"Quoted\" names keep their case.", None),
            text(keys::TABLES, "Tables", false, "Comma-separated schema.table names to sync; empty = every readable table of the schemas. Quote names with capitals, dots or commas: \"Sales\".\"Order.Items\".", None),
            text(keys::CURSOR_COLUMN, "Cursor column", false, "The column that tells when a row changed, and per-table overrides: updated_at, public.orders:modified_at. Tables without it are re-synced in full each time.", Some("updated_at")),
            text(keys::CURSOR_LAG_S, "Cursor lag (s)", false, "Leave rows whose TIMESTAMP/TIMESTAMPTZ cursor is newer than this many seconds for the next sync, so rows that commit late with an older updated_at (e.g. stamped with SYSDATE in a long load) are not skipped. Set it to your longest load transaction. Even at 0, rows dated after the database's clock wait for their time.", Some("0")),
            text(keys::PRIMARY_KEY, "Primary keys", false, "Per-table key columns where the declared primary key is missing or not unique (Redshift does not enforce keys): public.events:event_id, sales.lines:order_id+line_no. The destination keys the table's rows by them, and delete_capture = keys can then see its deleted rows.", None),
            text(keys::DELETED_COLUMN, "Soft-delete column", false, "A column that marks rows deleted, and per-table overrides in the cursor column's syntax: is_deleted, public.orders:deleted_at. A BOOLEAN (true = deleted) or a TIMESTAMP/TIMESTAMPTZ (set = deleted): such rows reach the destination as deletes. Tables with a primary key only; tables without the column are synced as usual.", None),
            text(keys::DELETE_CAPTURE, "Delete capture", false, "none (the default): rows deleted in Redshift stay in the destination. resync: every resync_interval_h hours each table is re-synced from scratch (a TRUNCATE, then every row; through UNLOAD where configured), so the rows no longer in Redshift are marked deleted; needs no grant beyond SELECT and costs a full read of each table per interval. keys: each sync compares a snapshot of every table's primary keys, kept in work_schema, with the keys there now, inside Redshift, and sends the keys that vanished as deletes; needs CREATE on work_schema and costs a read of the key columns per table and sync.", Some("none")),
            text(keys::RESYNC_INTERVAL_H, "Re-sync interval (h)", false, "With delete_capture = resync: hours between a table's re-syncs from scratch (0 = every sync).", Some("24")),
            text(keys::WORK_SCHEMA, "Work schema", false, "With delete_capture = keys: a schema where the user may CREATE tables (GRANT CREATE ON SCHEMA ... TO ...); it holds one key snapshot per table, and is never synced.", None),
            text(keys::NEW_COLUMN_BACKFILL, "Backfill new columns", false, "true (the default): when a selected column appears in a table, the table is re-synced from scratch (through UNLOAD where configured) so that rows synced before carry its values. false: only rows changed afterwards carry it; the others keep NULL there.", Some("true")),
            text(keys::BATCH_SIZE, "Batch size", false, "Rows fetched per round trip; a checkpoint follows each batch.", Some(&batch)),
            text(keys::MAX_BATCH_BYTES, "Batch size in bytes", false, "A batch also ends (and a checkpoint follows) after this many bytes of records: wide rows are checkpointed by size. Memory stays bounded whatever the row width.", Some(&batch_bytes)),
            text(keys::MAX_ROWS_PER_QUERY, "Rows per query", false, "auto (the default): each query reads as many rows as fit 1 GiB of results (shared by the tables synced at once; 100 MB a query through the Data API), so most tables are one query. A number: no query reads more rows than that, a larger table is read by consecutive queries; set one below a query monitoring rule that aborts queries by returned rows.", Some("auto")),
            text(keys::MAX_PARALLEL_TABLES, "Parallel tables", false, "Tables synced at once, each on its own connection and WLM query slot (1 to 32).", Some("1")),
            text(keys::UNLOAD_S3_URI, "UNLOAD staging location", false, "s3://bucket/prefix/ where initial syncs and re-syncs of large tables are exported by UNLOAD (Redshift's compute nodes write Parquet files in parallel; the connector reads them back and deletes them). Empty = every table is read by queries. Give each connection a prefix of its own.", None),
            text(keys::UNLOAD_IAM_ROLE, "UNLOAD IAM role", false, "With a staging location: the ARN of a role associated with the cluster that may write to it (s3:PutObject, s3:ListBucket), or default for the cluster's default role.", None),
            text(keys::UNLOAD_REGION, "UNLOAD bucket region", false, "With a staging location: the bucket's region when it is not the cluster's.", None),
            text(keys::UNLOAD_MIN_ROWS, "UNLOAD from rows", false, &format!("With a staging location: tables of at least this many rows (COUNT(*)) are exported; smaller ones are read by queries. Empty = {}.", crate::config::DEFAULT_UNLOAD_MIN_ROWS), None),
            text(keys::UNLOAD_S3_ENDPOINT_URL, "S3 endpoint", false, "With a staging location: an S3 endpoint for the connector's reads other than AWS's (a VPC endpoint, an S3-compatible store). Empty = AWS's.", None),
            text(keys::CONNECT_TIMEOUT_S, "Connect timeout (s)", false, "Seconds to wait for a connection.", Some("30")),
            text(keys::QUERY_TIMEOUT_S, "Query timeout (s)", false, "statement_timeout in seconds (includes WLM queue time on Redshift); 0 = none.", Some("0")),
            text(keys::RETRY_TIMEOUT_S, "Retry for (s)", false, "How long a sync keeps reconnecting and resuming after transient failures (a reboot, failover, resize or maintenance window) before it fails; the time starts over whenever rows arrive. 0 = fail at the first one.", Some("1800")),
        ];
    ConfigurationFormResponse {
        schema_selection_supported: true,
        table_selection_supported: true,
        fields: with_direct_fields_grouped(fields),
        tests: vec![
            ConfigurationTest {
                name: TEST_CONNECT.to_string(),
                label: "Connect: reach the cluster, negotiate TLS, authenticate".to_string(),
            },
            ConfigurationTest {
                name: TEST_SELECT.to_string(),
                label: "Select: read the catalog and at least one table".to_string(),
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the form, those inside groups in their place.
    fn leaf_fields(fields: &[FormField]) -> Vec<&FormField> {
        let mut leaves = Vec::new();
        for field in fields {
            match &field.r#type {
                Some(form_field::Type::ConditionalFields(group)) => {
                    leaves.extend(leaf_fields(&group.fields));
                }
                _ => leaves.push(field),
            }
        }
        leaves
    }

    #[test]
    fn every_configuration_key_is_on_the_form() {
        let form = configuration_form();
        let leaves = leaf_fields(&form.fields);
        let names: Vec<&str> = leaves.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, keys::ALL);
        let password = leaves.iter().find(|f| f.name == keys::PASSWORD).unwrap();
        assert_eq!(
            password.r#type,
            Some(form_field::Type::TextField(TextField::Password as i32))
        );
    }

    #[test]
    fn the_direct_transports_fields_show_only_with_it() {
        let form = configuration_form();
        let names: Vec<&str> = form.fields.iter().map(|f| f.name.as_str()).collect();
        let transport = names.iter().position(|n| *n == keys::TRANSPORT).unwrap();
        assert_eq!(names[transport + 1], DIRECT_TRANSPORT_GROUP);
        assert!(!keys::ALL.contains(&DIRECT_TRANSPORT_GROUP));
        let Some(form_field::Type::ConditionalFields(group)) = &form.fields[transport + 1].r#type
        else {
            panic!("the group is not conditional");
        };
        let condition = group.condition.as_ref().unwrap();
        assert_eq!(condition.condition_field, keys::TRANSPORT);
        assert_eq!(
            condition.visible_when,
            Some(visibility_condition::VisibleWhen::StringValue(
                "direct".into()
            ))
        );
        let grouped: Vec<&str> = group.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(grouped, DIRECT_ONLY);
        // What the Data API needs stays in view.
        for key in [
            keys::REGION,
            keys::CLUSTER_IDENTIFIER,
            keys::WORKGROUP,
            keys::DATABASE,
        ] {
            assert!(names.contains(&key), "{key}");
        }
    }
}

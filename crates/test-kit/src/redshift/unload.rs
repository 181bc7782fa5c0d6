//! `UNLOAD` as Redshift runs it, for the proxy: the statement's syntax and role are checked,
//! the inner SELECT runs on PostgreSQL, and its rows go to S3 (moto) as several Parquet part
//! files, as slices write them, with Redshift's Parquet types, plus the `MANIFEST VERBOSE`
//! JSON. The files are written with the credentials of the cluster's role (an IAM user in
//! moto), so moto's own policy check answers whether the role may write the bucket.
//!
//! Types as Redshift writes them: SMALLINT/INTEGER/BIGINT as INT16/INT32/INT64, REAL and
//! DOUBLE PRECISION as FLOAT/DOUBLE, BOOLEAN, NUMERIC(p,s) as DECIMAL(38,s), DATE, TIMESTAMP
//! as microseconds, TIMESTAMPTZ as microseconds in UTC with no zone, everything else
//! (text, and what the connector casts to VARCHAR) as UTF-8 strings.

use std::sync::Arc;

use crate::local_postgres::LocalPostgres;
use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, PrimitiveBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::types::{Float32Type, Float64Type, Int16Type, Int32Type, Int64Type};
use arrow_array::{ArrayRef, ArrowPrimitiveType, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use aws_sdk_s3::error::ProvideErrorMetadata;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// The cluster side of UNLOAD.
#[derive(Debug, Clone)]
pub struct UnloadEmulation {
    /// moto's S3 endpoint.
    pub s3_endpoint: String,
    /// The access key of the IAM user standing in for the cluster's roles.
    pub role_key: (String, String),
    /// Role ARNs associated with the cluster.
    pub roles: Vec<String>,
    /// The cluster's default role, if one is set.
    pub default_role: Option<String>,
    pub cluster_region: String,
    /// Buckets in another region than the cluster's, and their region.
    pub bucket_regions: Vec<(String, String)>,
    /// Slices writing in parallel (files `<slice>_part_<n>`).
    pub slices: usize,
    /// Rows a part file holds at most (standing in for MAXFILESIZE).
    pub rows_per_file: usize,
    /// The manifest claims one row more for its first file than the file holds.
    pub miscount: bool,
}

/// The parts of an UNLOAD statement.
#[derive(Debug, PartialEq)]
struct Statement {
    query: String,
    to: String,
    role: Option<String>,
    region: Option<String>,
    options: Vec<String>,
}

/// An error as Redshift reports it: SQLSTATE and message.
pub type Refusal = (&'static str, String);

pub fn is_unload(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("UNLOAD"))
}

/// Runs the UNLOAD `sql` against `database`.
pub async fn run(
    emulation: &UnloadEmulation,
    postgres: &LocalPostgres,
    database: &str,
    sql: &str,
) -> Result<(), Refusal> {
    let statement =
        parse(sql).map_err(|at| ("42601", format!("syntax error at or near \"{at}\"")))?;
    for required in ["FORMAT", "PARQUET", "MANIFEST", "VERBOSE"] {
        if !statement
            .options
            .iter()
            .any(|o| o.eq_ignore_ascii_case(required))
        {
            return Err((
                "0A000",
                format!("the tests' UNLOAD emulation expects {required}"),
            ));
        }
    }
    match &statement.role {
        None if emulation.default_role.is_none() => {
            return Err((
                "XX000",
                "The default IAM role is not set for this cluster. Set a default IAM role or specify an IAM role ARN.".to_string(),
            ))
        }
        Some(arn) if !emulation.roles.contains(arn) => {
            return Err((
                "XX000",
                format!("User arn:aws:redshift:{}:123456789012:dbuser:sync-cluster/admin is not authorized to assume IAM Role {arn}", emulation.cluster_region),
            ))
        }
        _ => {}
    }
    let Some((bucket, prefix)) = statement
        .to
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Err(("XX000", format!("Invalid S3 path: {}", statement.to)));
    };
    let bucket_region = emulation
        .bucket_regions
        .iter()
        .find(|(b, _)| b == bucket)
        .map_or(emulation.cluster_region.as_str(), |(_, r)| r.as_str());
    let writing_region = statement
        .region
        .as_deref()
        .unwrap_or(&emulation.cluster_region);
    if writing_region != bucket_region {
        return Err(("XX000", s3_exception(
            "The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.",
            301,
            "PermanentRedirect",
        )));
    }

    let client = postgres
        .connect(database)
        .await
        .map_err(|err| ("XX000", err.to_string()))?;
    client
        .batch_execute("SET TIME ZONE 'UTC'")
        .await
        .map_err(|err| ("XX000", err.to_string()))?;
    let prepared = client
        .prepare(&statement.query)
        .await
        .map_err(|err| ("XX000", db_text(&err)))?;
    let oids: Vec<u32> = prepared.columns().iter().map(|c| c.type_().oid()).collect();
    let names: Vec<String> = prepared
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    for message in client
        .simple_query(&statement.query)
        .await
        .map_err(|err| ("XX000", db_text(&err)))?
    {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            );
        }
    }

    let s3 = s3_client(emulation);
    let max_file_bytes = max_file_bytes(&statement.options)?;
    // Contiguous ranges per slice, each cut into files of at most `rows_per_file` rows and,
    // as Redshift cuts them, of about MAXFILESIZE at most (a file may pass it by a row group).
    let per_slice = rows.len().div_ceil(emulation.slices.max(1)).max(1);
    let mut entries = Vec::new();
    for (slice, slice_rows) in rows.chunks(per_slice).enumerate() {
        let mut rest = slice_rows;
        let mut part = 0usize;
        while !rest.is_empty() {
            let mut take = rest.len().min(emulation.rows_per_file.max(1));
            let mut file = parquet_file(&names, &oids, &rest[..take])?;
            while file.len() as u64 > max_file_bytes + ROW_GROUP_BYTES_SLACK && take > 1 {
                // Rows of about the same width: scale down, a little under the limit.
                take =
                    ((take as u64 * max_file_bytes * 9 / 10) / file.len() as u64).max(1) as usize;
                file = parquet_file(&names, &oids, &rest[..take])?;
            }
            let file_rows = &rest[..take];
            rest = &rest[take..];
            let key = format!("{prefix}{slice:04}_part_{part:02}.parquet");
            part += 1;
            put(&s3, bucket, &key, file.clone()).await?;
            let claimed = file_rows.len() + usize::from(emulation.miscount && entries.is_empty());
            entries.push(serde_json::json!({
                "url": format!("s3://{bucket}/{key}"),
                "meta": {"content_length": file.len(), "record_count": claimed},
            }));
        }
    }
    let manifest = serde_json::json!({
        "entries": entries,
        "schema": {"elements": names.iter().map(|n| serde_json::json!({"name": n, "type": {"base": "varchar"}})).collect::<Vec<_>>()},
        "meta": {"record_count": rows.len()},
        "author": {"name": "Amazon Redshift", "version": "1.0.0"},
    });
    put(
        &s3,
        bucket,
        &format!("{prefix}manifest"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .await
}

/// How far past MAXFILESIZE a part file may run: Redshift closes a file after the row group
/// that passes the limit; the emulation's row groups are much smaller than Redshift's 32 MB.
const ROW_GROUP_BYTES_SLACK: u64 = 1024 * 1024;

/// The statement's `MAXFILESIZE n MB|GB` (Redshift's default is 6.2 GB).
fn max_file_bytes(options: &[String]) -> Result<u64, Refusal> {
    let Some(at) = options
        .iter()
        .position(|o| o.eq_ignore_ascii_case("MAXFILESIZE"))
    else {
        return Ok(6200 * 1024 * 1024);
    };
    let mut rest = options[at + 1..].iter();
    let mut size = rest.next().map(String::as_str);
    if size.is_some_and(|s| s.eq_ignore_ascii_case("AS")) {
        size = rest.next().map(String::as_str);
    }
    let size: u64 = size.and_then(|s| s.parse().ok()).ok_or((
        "42601",
        "syntax error at or near \"MAXFILESIZE\"".to_string(),
    ))?;
    let unit = match rest.next() {
        Some(u) if u.eq_ignore_ascii_case("GB") => 1024 * 1024 * 1024,
        _ => 1024 * 1024,
    };
    if !(5..=6200).contains(&(size * unit / (1024 * 1024))) {
        return Err((
            "XX000",
            "MAXFILESIZE must be between 5 MB and 6.2 GB".to_string(),
        ));
    }
    Ok(size * unit)
}

fn db_text(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map_or_else(|| err.to_string(), |db| db.message().to_string())
}

/// Redshift's text for an S3 error during UNLOAD.
fn s3_exception(message: &str, status: u16, code: &str) -> String {
    format!("S3ServiceException:{message},Status {status},Error {code},Rid 4442587FB7D0A2F9,ExtRid kTx0sELc9IJpFyNfvrRfpeK1kn5pPzNr+3gqhmlb1q8=,CanRetry 1")
}

fn s3_client(emulation: &UnloadEmulation) -> aws_sdk_s3::Client {
    s3_client_as(
        &emulation.s3_endpoint,
        &emulation.role_key.0,
        &emulation.role_key.1,
        &emulation.cluster_region,
    )
}

/// An S3 client for moto at `endpoint` with an IAM user's access key (path-style addressing,
/// rustls with ring as in the connector).
pub fn s3_client_as(
    endpoint: &str,
    key_id: &str,
    secret: &str,
    region: &str,
) -> aws_sdk_s3::Client {
    let credentials = aws_credential_types::Credentials::new(key_id, secret, None, None, "test");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(region.to_string()))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .http_client(http)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<(), Refusal> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .map(|_| ())
        .map_err(|err| {
            let status = err.raw_response().map_or(0, |r| r.status().as_u16());
            let code = err.code().unwrap_or("Unknown").to_string();
            let message = err.message().unwrap_or("Access Denied").to_string();
            ("XX000", s3_exception(&message, status, &code))
        })
}

/// One part file of `rows` (text values as PostgreSQL gives them, in UTC).
fn parquet_file(
    names: &[String],
    oids: &[u32],
    rows: &[Vec<Option<String>>],
) -> Result<Vec<u8>, Refusal> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (column, (name, &oid)) in names.iter().zip(oids).enumerate() {
        let values = rows.iter().map(|row| row[column].as_deref());
        let bad = |v: &str| {
            (
                "XX000",
                format!("the emulation cannot write `{v}` of type {oid}"),
            )
        };
        let (data_type, array): (DataType, ArrayRef) = match oid {
            21 => parsed::<Int16Type>(values, bad)?,
            23 => parsed::<Int32Type>(values, bad)?,
            20 => parsed::<Int64Type>(values, bad)?,
            700 => parsed::<Float32Type>(values, bad)?,
            701 => parsed::<Float64Type>(values, bad)?,
            16 => {
                let mut b = BooleanBuilder::new();
                for v in values {
                    b.append_option(v.map(|v| v == "t"));
                }
                (DataType::Boolean, Arc::new(b.finish()))
            }
            1700 if uniform_scale(rows, column).is_some() => {
                let scale = uniform_scale(rows, column).unwrap();
                let mut b = Decimal128Builder::new();
                for v in values {
                    b.append_option(
                        v.map(|v| v.replace('.', "").parse::<i128>().map_err(|_| bad(v)))
                            .transpose()?,
                    );
                }
                let data_type = DataType::Decimal128(38, scale as i8);
                (
                    data_type.clone(),
                    Arc::new(b.finish().with_data_type(data_type)),
                )
            }
            1082 => {
                let mut b = Date32Builder::new();
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
                for v in values {
                    b.append_option(
                        v.map(|v| {
                            chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                                .map(|d| (d - epoch).num_days() as i32)
                                .map_err(|_| bad(v))
                        })
                        .transpose()?,
                    );
                }
                (DataType::Date32, Arc::new(b.finish()))
            }
            1114 | 1184 => {
                let mut b = TimestampMicrosecondBuilder::new();
                for v in values {
                    b.append_option(
                        v.map(|v| {
                            let naive = v.strip_suffix("+00").unwrap_or(v);
                            chrono::NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S%.f")
                                .map(|t| t.and_utc().timestamp_micros())
                                .map_err(|_| bad(v))
                        })
                        .transpose()?,
                    );
                }
                (
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                    Arc::new(b.finish()),
                )
            }
            _ => {
                let mut b = StringBuilder::new();
                for v in values {
                    b.append_option(v);
                }
                (DataType::Utf8, Arc::new(b.finish()))
            }
        };
        fields.push(Field::new(name, data_type, true));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays)
        .map_err(|err| ("XX000", err.to_string()))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_size(1000)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(properties))
        .map_err(|err| ("XX000", err.to_string()))?;
    writer
        .write(&batch)
        .map_err(|err| ("XX000", err.to_string()))?;
    writer.close().map_err(|err| ("XX000", err.to_string()))?;
    Ok(out)
}

/// A column of numbers from their text, as Parquet's type for `T`.
fn parsed<'a, T: ArrowPrimitiveType>(
    values: impl Iterator<Item = Option<&'a str>>,
    bad: impl Fn(&str) -> Refusal,
) -> Result<(DataType, ArrayRef), Refusal>
where
    T::Native: std::str::FromStr,
{
    let mut builder = PrimitiveBuilder::<T>::new();
    for value in values {
        builder.append_option(value.map(|v| v.parse().map_err(|_| bad(v))).transpose()?);
    }
    Ok((T::DATA_TYPE, Arc::new(builder.finish())))
}

/// The scale every non-NULL decimal of the column has (NUMERIC(p,s) prints `s` digits), if
/// they agree and fit DECIMAL(38).
fn uniform_scale(rows: &[Vec<Option<String>>], column: usize) -> Option<usize> {
    let mut scale = None;
    for value in rows.iter().filter_map(|row| row[column].as_deref()) {
        if value.len() > 40 || value.contains(['e', 'N', 'I']) {
            return None;
        }
        let this = value.split_once('.').map_or(0, |(_, f)| f.len());
        if *scale.get_or_insert(this) != this {
            return None;
        }
    }
    Some(scale.unwrap_or(0))
}

/// `UNLOAD ('<query>') TO '<url>' IAM_ROLE {default | '<arn>'} [REGION '<r>'] options...`;
/// the error is the text where the syntax broke.
fn parse(sql: &str) -> Result<Statement, String> {
    let mut rest = sql.trim();
    let keyword = |rest: &mut &str, word: &str| -> Result<(), String> {
        let trimmed = rest.trim_start();
        match trimmed.get(..word.len()) {
            Some(w) if w.eq_ignore_ascii_case(word) => {
                *rest = &trimmed[word.len()..];
                Ok(())
            }
            _ => Err(trimmed.chars().take(20).collect()),
        }
    };
    keyword(&mut rest, "UNLOAD")?;
    keyword(&mut rest, "(")?;
    let query = literal(&mut rest)?;
    keyword(&mut rest, ")")?;
    keyword(&mut rest, "TO")?;
    let to = literal(&mut rest)?;
    keyword(&mut rest, "IAM_ROLE")?;
    let role = if keyword(&mut rest, "default").is_ok() {
        None
    } else {
        Some(literal(&mut rest)?)
    };
    let mut region = None;
    let mut options = Vec::new();
    loop {
        let trimmed = rest.trim_start();
        if trimmed.is_empty() {
            break;
        }
        if keyword(&mut rest, "REGION").is_ok() {
            region = Some(literal(&mut rest)?);
            continue;
        }
        let word: String = trimmed
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if word.is_empty() {
            return Err(trimmed.chars().take(20).collect());
        }
        rest = &trimmed[word.len()..];
        options.push(word);
    }
    Ok(Statement {
        query,
        to,
        role,
        region,
        options,
    })
}

/// A single-quoted literal with `''` for a quote.
fn literal(rest: &mut &str) -> Result<String, String> {
    let trimmed = rest.trim_start();
    let Some(body) = trimmed.strip_prefix('\'') else {
        return Err(trimmed.chars().take(20).collect());
    };
    let mut out = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().map(|(_, c)| *c) == Some('\'') {
                chars.next();
                out.push('\'');
            } else {
                *rest = &body[i + 1..];
                return Ok(out);
            }
        } else {
            out.push(c);
        }
    }
    Err("end of statement".to_string())
}

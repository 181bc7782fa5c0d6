//! SQL as Redshift would take it, judged by PostgreSQL's own parser (libpg_query).
//!
//! [`judge`] does what the proxy needs before a statement reaches PostgreSQL:
//! - translates the Redshift-only syntax the connector uses: `COLLATE(expr, 'case_sensitive')`
//!   (a function call on Redshift, a reserved word on PostgreSQL) and the session setting
//!   `enable_case_sensitive_identifier` (kept by PostgreSQL as a custom setting);
//! - gives Redshift's meaning to what means something else on PostgreSQL: quoted identifiers
//!   fold to lower case unless that setting is on, and a plain `NUMERIC` is `NUMERIC(18,0)`;
//! - finds what Redshift rejects: row constructors in comparisons, arrays and `ANY(array)`,
//!   `VALUES` lists, `now()`/`CURRENT_TIMESTAMP` in a query that reads user tables, `COPY`, an
//!   empty query, `LIMIT $n` without a cast, and casts from VARCHAR to BOOLEAN.

use pg_query::protobuf::{node, AExprKind, SqlValueFunctionOp, Token};
use pg_query::NodeRef;

/// Why Redshift would refuse a statement: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    fn unsupported(what: &str) -> Self {
        Rejection {
            code: "0A000",
            message: format!(
                "{what} is not supported by Amazon Redshift (redshift-shaped test server)"
            ),
        }
    }
}

/// A statement after translation, and what Redshift would make of it.
#[derive(Debug, Clone, Default)]
pub struct Judged {
    /// The SQL to send to PostgreSQL.
    pub sql: String,
    pub rejection: Option<Rejection>,
    /// `(schema, name)` of every relation the statement reads; schema empty if unqualified.
    pub relations: Vec<(String, String)>,
    /// The value it sets `enable_case_sensitive_identifier` to, if it sets it.
    pub sets_case_sensitive: Option<bool>,
}

/// The custom setting that stands for Redshift's `enable_case_sensitive_identifier`.
pub const CASE_SENSITIVE_SETTING: &str = "redshift.enable_case_sensitive_identifier";

pub fn judge(sql: &str, case_sensitive: bool) -> Judged {
    let Ok(scan) = pg_query::scan(sql) else {
        // PostgreSQL will say what is wrong with it.
        return Judged {
            sql: sql.to_string(),
            ..Judged::default()
        };
    };
    if scan.tokens.is_empty() {
        return Judged {
            sql: sql.to_string(),
            rejection: Some(Rejection {
                code: "42601",
                message: "an empty query is not supported by Amazon Redshift".to_string(),
            }),
            ..Judged::default()
        };
    }
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let tokens = &scan.tokens;
    let text = |i: usize| &sql[tokens[i].start as usize..tokens[i].end as usize];
    let mut sets_case_sensitive = None;
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i].token;
        if token == Token::Collate as i32
            && tokens.get(i + 1).map(|t| t.token) == Some(Token::Ascii40 as i32)
        {
            if let Some((end, edit)) = translate_collate(sql, tokens, i) {
                edits.push(edit);
                i = end + 1;
                continue;
            }
        }
        let next = tokens.get(i + 1).map(|t| t.token);
        if [
            Token::Numeric as i32,
            Token::DecimalP as i32,
            Token::Dec as i32,
        ]
        .contains(&token)
            && next != Some(Token::Ascii40 as i32)
        {
            // Redshift's plain NUMERIC has precision 18 and scale 0: it rounds.
            edits.push((
                tokens[i].start as usize,
                tokens[i].end as usize,
                "NUMERIC(18,0)".to_string(),
            ));
        }
        if token == Token::Ident as i32 {
            let ident = text(i);
            if let Some(end) = table_attribute_end(sql, tokens, i) {
                // Redshift's physical table attributes, which PostgreSQL has no use for.
                edits.push((
                    tokens[i].start as usize,
                    tokens[end].end as usize,
                    String::new(),
                ));
                i = end + 1;
                continue;
            }
            if ident.eq_ignore_ascii_case("enable_case_sensitive_identifier") {
                edits.push((
                    tokens[i].start as usize,
                    tokens[i].end as usize,
                    CASE_SENSITIVE_SETTING.to_string(),
                ));
                // SET enable_case_sensitive_identifier TO|= value
                let value = (i + 2 < tokens.len()).then(|| text(i + 2).trim_matches('\''));
                sets_case_sensitive =
                    value.map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "on" | "1"));
            } else if !case_sensitive
                && ident.starts_with('"')
                && ident.bytes().any(|b| b.is_ascii_uppercase())
            {
                // Redshift folds even quoted identifiers unless the setting is on.
                edits.push((
                    tokens[i].start as usize,
                    tokens[i].end as usize,
                    ident.to_ascii_lowercase(),
                ));
            }
        }
        i += 1;
    }
    let mut translated = sql.to_string();
    edits.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    for (start, end, replacement) in edits {
        translated.replace_range(start..end, &replacement);
    }
    let mut judged = Judged {
        sql: translated,
        sets_case_sensitive,
        ..Judged::default()
    };
    if let Ok(parsed) = pg_query::parse(&judged.sql) {
        inspect(&parsed, &mut judged);
    }
    judged
}

/// Where a Redshift table attribute of `CREATE TABLE` that starts at token `i` ends (its
/// last token): `BACKUP YES|NO`, `DISTSTYLE <style>`, `DISTKEY (column)`,
/// `[COMPOUND | INTERLEAVED] SORTKEY (columns)`; `None` if none starts there.
fn table_attribute_end(
    sql: &str,
    tokens: &[pg_query::protobuf::ScanToken],
    i: usize,
) -> Option<usize> {
    let text = |i: usize| &sql[tokens[i].start as usize..tokens[i].end as usize];
    let creates_table = tokens
        .first()
        .is_some_and(|t| t.token == Token::Create as i32)
        || tokens[..i]
            .iter()
            .rposition(|t| t.token == Token::Ascii59 as i32)
            .is_some_and(|semicolon| {
                tokens.get(semicolon + 1).map(|t| t.token) == Some(Token::Create as i32)
            });
    if !creates_table {
        return None;
    }
    let word = text(i).to_ascii_uppercase();
    let parenthesized_from = |open: usize| {
        (tokens.get(open)?.token == Token::Ascii40 as i32).then_some(())?;
        (open..tokens.len()).find(|&j| tokens[j].token == Token::Ascii41 as i32)
    };
    match word.as_str() {
        "BACKUP" | "DISTSTYLE" => (i + 1 < tokens.len()).then_some(i + 1),
        "DISTKEY" | "SORTKEY" => parenthesized_from(i + 1),
        "COMPOUND" | "INTERLEAVED"
            if tokens
                .get(i + 1)
                .is_some_and(|_| text(i + 1).eq_ignore_ascii_case("SORTKEY")) =>
        {
            parenthesized_from(i + 2)
        }
        _ => None,
    }
}

/// `COLLATE(expr, 'case_sensitive')` -> `(expr COLLATE "C")`; returns the index of the closing
/// parenthesis and the edit.
fn translate_collate(
    sql: &str,
    tokens: &[pg_query::protobuf::ScanToken],
    at: usize,
) -> Option<(usize, (usize, usize, String))> {
    let mut depth = 0;
    let mut last_comma = None;
    for (i, token) in tokens.iter().enumerate().skip(at + 1) {
        match token.token {
            t if t == Token::Ascii40 as i32 => depth += 1,
            t if t == Token::Ascii41 as i32 => {
                depth -= 1;
                if depth == 0 {
                    let comma = last_comma?;
                    let comma: usize = comma;
                    let expr = &sql[tokens[at + 1].end as usize..tokens[comma].start as usize];
                    let name = sql[tokens[comma].end as usize..token.start as usize]
                        .trim()
                        .trim_matches('\'')
                        .to_ascii_lowercase();
                    let collation = match name.as_str() {
                        "case_sensitive" | "cs" => "\"C\"",
                        "case_insensitive" | "ci" => "case_insensitive",
                        _ => return None,
                    };
                    let replacement = format!("(({expr}) COLLATE {collation})");
                    return Some((
                        i,
                        (tokens[at].start as usize, token.end as usize, replacement),
                    ));
                }
            }
            t if t == Token::Ascii44 as i32 && depth == 1 => last_comma = Some(i),
            _ => {}
        }
    }
    None
}

fn inspect(parsed: &pg_query::ParseResult, judged: &mut Judged) {
    let mut reads_user_tables = false;
    let mut uses_clock = false;
    let reject = |judged: &mut Judged, rejection: Rejection| {
        judged.rejection.get_or_insert(rejection);
    };
    for (node, _, _, _) in parsed.protobuf.nodes() {
        match node {
            NodeRef::AExpr(expr) => {
                let kind = AExprKind::try_from(expr.kind).ok();
                if matches!(kind, Some(AExprKind::AexprOpAny | AExprKind::AexprOpAll)) {
                    reject(judged, Rejection::unsupported("ANY/ALL over an array"));
                }
                let is_row = |operand: &Option<Box<pg_query::protobuf::Node>>| {
                    matches!(
                        operand.as_deref().and_then(|n| n.node.as_ref()),
                        Some(node::Node::RowExpr(_))
                    )
                };
                if is_row(&expr.lexpr) || is_row(&expr.rexpr) {
                    reject(
                        judged,
                        Rejection::unsupported("a row constructor in a comparison"),
                    );
                }
            }
            NodeRef::AArrayExpr(_) => reject(judged, Rejection::unsupported("an array")),
            NodeRef::TypeCast(cast) => {
                if cast
                    .type_name
                    .as_ref()
                    .is_some_and(|t| !t.array_bounds.is_empty())
                {
                    reject(judged, Rejection::unsupported("an array type"));
                }
                let from_text = match cast.arg.as_deref().and_then(|n| n.node.as_ref()) {
                    Some(node::Node::TypeCast(inner)) => {
                        matches!(type_name(inner).as_str(), "varchar" | "text" | "bpchar")
                    }
                    _ => false,
                };
                if from_text && type_name(cast) == "bool" {
                    // Redshift descends from PostgreSQL 8.0, which had no such cast.
                    reject(
                        judged,
                        Rejection {
                            code: "42846",
                            message: "cannot cast type character varying to boolean".to_string(),
                        },
                    );
                }
            }
            NodeRef::SelectStmt(select) => {
                if !select.values_lists.is_empty() {
                    reject(judged, Rejection::unsupported("a VALUES list"));
                }
                for limit in [&select.limit_count, &select.limit_offset] {
                    if let Some(node::Node::ParamRef(param)) =
                        limit.as_deref().and_then(|n| n.node.as_ref())
                    {
                        reject(
                            judged,
                            Rejection {
                                code: "42P18",
                                message: format!(
                                    "could not determine data type of parameter ${} in LIMIT: Redshift wants an explicit cast ($n::BIGINT)",
                                    param.number
                                ),
                            },
                        );
                    }
                }
            }
            NodeRef::CopyStmt(_) => {
                reject(judged, Rejection::unsupported("COPY to or from a client"));
            }
            NodeRef::FuncCall(call) => {
                let name = call
                    .funcname
                    .last()
                    .and_then(|n| match n.node.as_ref() {
                        Some(node::Node::String(s)) => Some(s.sval.to_ascii_lowercase()),
                        _ => None,
                    })
                    .unwrap_or_default();
                if matches!(
                    name.as_str(),
                    "now" | "statement_timestamp" | "clock_timestamp" | "transaction_timestamp"
                ) {
                    uses_clock = true;
                }
            }
            NodeRef::SqlvalueFunction(function) => {
                let op = SqlValueFunctionOp::try_from(function.op).ok();
                if matches!(
                    op,
                    Some(
                        SqlValueFunctionOp::SvfopCurrentTimestamp
                            | SqlValueFunctionOp::SvfopCurrentTimestampN
                            | SqlValueFunctionOp::SvfopLocaltimestamp
                            | SqlValueFunctionOp::SvfopLocaltimestampN
                    )
                ) {
                    uses_clock = true;
                }
            }
            NodeRef::RangeVar(range) => {
                if !is_catalog(&range.schemaname, &range.relname) {
                    reads_user_tables = true;
                }
                judged
                    .relations
                    .push((range.schemaname.clone(), range.relname.clone()));
            }
            _ => {}
        }
    }
    if uses_clock && reads_user_tables {
        // Redshift's own text: these run on the leader node only.
        reject(
            judged,
            Rejection {
                code: "0A000",
                message: "Specified types or functions (one per INFO message) not supported on Redshift tables.".to_string(),
            },
        );
    }
}

/// The last part of a cast's type name (`pg_catalog.varchar` -> `varchar`).
fn type_name(cast: &pg_query::protobuf::TypeCast) -> String {
    cast.type_name
        .as_ref()
        .and_then(|t| t.names.last())
        .and_then(|n| match n.node.as_ref() {
            Some(node::Node::String(s)) => Some(s.sval.to_ascii_lowercase()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Catalog relations, which Redshift serves from the leader node.
pub fn is_catalog(schema: &str, name: &str) -> bool {
    matches!(schema, "pg_catalog" | "information_schema")
        || (schema.is_empty()
            && ["pg_", "svv_", "stv_", "stl_", "svl_", "sys_"]
                .iter()
                .any(|prefix| name.starts_with(prefix)))
        || name == "information_schema"
}

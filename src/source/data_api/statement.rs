//! A statement as the Data API takes it: the connector's positional parameters (`$1`, written
//! for the PostgreSQL protocol) become named ones (`:p1`), whose values travel apart from the
//! SQL text as they do on the wire, so no value is ever spliced into a statement.
//!
//! One exception: an empty value. The Data API refuses a parameter without a value, so an empty
//! text is written as the literal `''`, which needs no escaping and carries nothing.
//!
//! `$n` is replaced only where it is a parameter: not inside a string literal, a quoted
//! identifier (a table may be called `"a$1"`) or a comment.

/// The SQL text with named parameters, and the (name, value) pairs to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataApiStatement {
    pub sql: String,
    pub parameters: Vec<(String, String)>,
}

/// Rewrites `sql`'s `$n` parameters for the Data API, `params[n - 1]` being each one's value.
pub fn with_named_parameters(sql: &str, params: &[String]) -> DataApiStatement {
    if params.is_empty() {
        return DataApiStatement {
            sql: sql.to_string(),
            parameters: Vec::new(),
        };
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut used = vec![false; params.len()];
    let mut at = 0;
    let mut copied = 0;
    while at < bytes.len() {
        match bytes[at] {
            quote @ (b'\'' | b'"') => {
                // To the closing quote; a doubled quote stays inside.
                at += 1;
                while at < bytes.len() {
                    if bytes[at] == quote {
                        if bytes.get(at + 1) == Some(&quote) {
                            at += 2;
                            continue;
                        }
                        break;
                    }
                    at += 1;
                }
                at += 1;
            }
            b'-' if bytes.get(at + 1) == Some(&b'-') => {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
            }
            b'/' if bytes.get(at + 1) == Some(&b'*') => {
                at = sql[at + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |end| at + 2 + end + 2);
            }
            b'$' => {
                let digits = bytes[at + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let number = sql[at + 1..at + 1 + digits].parse::<usize>().ok();
                match number.filter(|n| (1..=params.len()).contains(n)) {
                    Some(n) => {
                        out.push_str(&sql[copied..at]);
                        if params[n - 1].is_empty() {
                            out.push_str("''");
                        } else {
                            out.push_str(&format!(":p{n}"));
                            used[n - 1] = true;
                        }
                        at += 1 + digits;
                        copied = at;
                    }
                    None => at += 1,
                }
            }
            _ => at += 1,
        }
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    let parameters = params
        .iter()
        .enumerate()
        .filter(|(index, _)| used[*index])
        .map(|(index, value)| (format!("p{}", index + 1), value.clone()))
        .collect();
    DataApiStatement {
        sql: out,
        parameters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn positional_parameters_become_named_ones_with_their_values_apart() {
        let statement = with_named_parameters(
            "SELECT x FROM t WHERE a > $1::VARCHAR(65535) AND b = $2 LIMIT $10::BIGINT",
            &strings(&["it's; DROP TABLE t", "b", "", "", "", "", "", "", "", "7"]),
        );
        assert_eq!(
            statement.sql,
            "SELECT x FROM t WHERE a > :p1::VARCHAR(65535) AND b = :p2 LIMIT :p10::BIGINT"
        );
        assert_eq!(
            statement.parameters,
            vec![
                ("p1".to_string(), "it's; DROP TABLE t".to_string()),
                ("p2".to_string(), "b".to_string()),
                ("p10".to_string(), "7".to_string()),
            ]
        );
    }

    #[test]
    fn quoted_names_literals_and_comments_keep_their_dollars() {
        let sql = "SELECT \"a$1\", 'cost $1', x -- $1\n FROM \"t\"\"$1\" /* $1 */ WHERE y = $1";
        let statement = with_named_parameters(sql, &strings(&["v"]));
        assert_eq!(
            statement.sql,
            "SELECT \"a$1\", 'cost $1', x -- $1\n FROM \"t\"\"$1\" /* $1 */ WHERE y = :p1"
        );
    }

    #[test]
    fn an_empty_value_is_the_empty_literal() {
        let statement = with_named_parameters("SELECT $1::VARCHAR(65535)", &strings(&[""]));
        assert_eq!(statement.sql, "SELECT ''::VARCHAR(65535)");
        assert!(statement.parameters.is_empty());
    }

    #[test]
    fn unterminated_quotes_and_stray_dollars_do_not_panic() {
        let statement = with_named_parameters("SELECT '$1", &strings(&["v"]));
        assert_eq!(statement.sql, "SELECT '$1");
        let statement = with_named_parameters("SELECT $ $99 $1", &strings(&["v"]));
        assert_eq!(statement.sql, "SELECT $ $99 :p1");
        let statement = with_named_parameters("SELECT /* open", &strings(&["v"]));
        assert_eq!(statement.sql, "SELECT /* open");
    }
}

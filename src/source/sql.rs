//! Writing SQL text: identifiers and string literals, each by one function, so that no
//! statement the connector sends is built by hand from a value.
//!
//! Values that can travel as bind parameters do (positions, bounds, names in catalog queries).
//! A literal is written only where Redshift takes no parameter: an `UNLOAD` (its query, its
//! destination, its role and region) and the constant parts of a few statements. Redshift
//! reads a backslash in a string literal as an escape (it descends from PostgreSQL 8.0, before
//! standard-conforming strings) while PostgreSQL does not, so no doubling is right for both:
//! a literal that would hold one is refused instead, and the caller takes another way.

use super::session::Flavour;
use super::types::SqlType;

/// Quotes an identifier (double quotes, inner quotes doubled): every name in SQL goes through
/// here, whatever it holds.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The expressions whose values, compared term by term with `=` or in order, tell two values
/// of `sql_type` apart exactly as their bytes differ: the one rule for comparing keys, shared
/// by the scan's order and the key snapshots' set difference. Redshift ignores trailing
/// blanks when comparing VARCHARs and may compare a column case-insensitively, so a text
/// value is compared case-sensitively and then (VARCHAR, TEXT) by its byte length, which
/// tells `'a'` from `'a '`; other types compare exactly as they are.
pub fn exact_terms(flavour: Flavour, sql_type: &SqlType, expr: &str) -> Vec<String> {
    if !sql_type.is_text() {
        return vec![expr.to_string()];
    }
    let mut terms = vec![case_sensitive(flavour, expr)];
    if sql_type.keeps_trailing_blanks() {
        terms.push(octet_length(expr));
    }
    terms
}

/// `expr` compared case-sensitively: Redshift's `COLLATE` function, PostgreSQL's byte-wise
/// collation.
pub fn case_sensitive(flavour: Flavour, expr: &str) -> String {
    match flavour {
        Flavour::Redshift => format!("COLLATE({expr}, 'case_sensitive')"),
        Flavour::PostgreSql => format!("({expr} COLLATE \"C\")"),
    }
}

/// The byte length of a text `expr`.
pub fn octet_length(expr: &str) -> String {
    format!("OCTET_LENGTH({expr})")
}

/// Why a text cannot be written as a string literal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` holds a {what}, which a string literal cannot carry the same way on Redshift and PostgreSQL", crate::config::shorten(.text))]
pub struct UnsafeLiteral {
    pub text: String,
    pub what: &'static str,
}

/// `'text'`, inner quotes doubled; a backslash or NUL is refused (see the module's note).
pub fn quote_literal(text: &str) -> Result<String, UnsafeLiteral> {
    let refuse = |what| {
        Err(UnsafeLiteral {
            text: text.to_string(),
            what,
        })
    };
    if text.contains('\\') {
        return refuse("backslash");
    }
    if text.contains('\0') {
        return refuse("NUL character");
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_keep_anything_quoted() {
        assert_eq!(quote_ident("Order Items"), "\"Order Items\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_ident("a\\b"), "\"a\\b\"");
    }

    #[test]
    fn literals_double_quotes_and_refuse_escapes() {
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(
            quote_literal("x'); DROP TABLE t; --").unwrap(),
            "'x''); DROP TABLE t; --'"
        );
        assert!(quote_literal("a\\'b").is_err());
        assert!(quote_literal("a\0b").is_err());
    }
}

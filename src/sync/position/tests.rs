//! Every table shape against a model of the database: queries answered from rows in memory,
//! rows that tie on the scan order returned in a new order by every query (as a database may),
//! checkpoints after every batch, and resumes from every checkpoint.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

/// A row of the model: an identity (never read by the scan), a cursor and a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    id: usize,
    cursor: Option<i64>,
    key: Option<i64>,
}

/// A table of the model and how it is read.
#[derive(Debug, Clone)]
struct Table {
    rows: Vec<Row>,
    shape: Shape,
}

/// A tiny deterministic generator for tie orders.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn number(text: &str) -> i64 {
    text.parse().expect("positions of the model are integers")
}

impl Table {
    fn keyed(&self) -> bool {
        matches!(self.shape, Shape::KeyedIncremental | Shape::KeyedFull)
    }

    fn has_cursor(&self) -> bool {
        matches!(
            self.shape,
            Shape::KeyedIncremental | Shape::KeylessIncremental
        )
    }

    /// The rows a query returns, in the order the database sends them.
    fn query(&self, query: &NextQuery, rng: &mut Lcg) -> Vec<Row> {
        let after_key = |row: &Row, key: &[String]| row.key > Some(number(&key[0]));
        let mut rows: Vec<Row> = self
            .rows
            .iter()
            .copied()
            .filter(|row| match &query.resume {
                Resume::FromStart => true,
                Resume::AfterKey(key) => after_key(row, key),
                Resume::AfterNullCursor(key) => row.cursor.is_some() || after_key(row, key),
                Resume::AfterRow { cursor, key } => {
                    let c = number(cursor);
                    row.cursor > Some(c) || (row.cursor == Some(c) && after_key(row, key))
                }
                Resume::AtCursor(cursor) => row.cursor >= Some(number(cursor)),
                Resume::AfterCursor(Some(cursor)) => row.cursor > Some(number(cursor)),
                Resume::AfterCursor(None) => row.cursor.is_some(),
                Resume::OnlyCursor(cursor) => row.cursor == cursor.as_deref().map(number),
            })
            .collect();
        // A new order among ties on every query; then the scan order (None < Some).
        for i in (1..rows.len()).rev() {
            rows.swap(i, rng.next() as usize % (i + 1));
        }
        let ordered = !matches!(query.resume, Resume::OnlyCursor(_));
        if ordered {
            let has_cursor = self.has_cursor();
            let keyed = self.keyed();
            rows.sort_by_key(|row| {
                (
                    if has_cursor { Some(row.cursor) } else { None },
                    if keyed { row.key } else { None },
                )
            });
        }
        if let Some(limit) = query.limit {
            rows.truncate(limit as usize);
        }
        rows
    }
}

/// What one attempt did: rows in the order sent, and a checkpoint after every batch.
#[derive(Debug, Default)]
struct Attempt {
    sent: Vec<Row>,
    /// (rows sent before it, the position it records).
    checkpoints: Vec<(usize, Option<Position>)>,
    queries: Vec<NextQuery>,
    completed: bool,
}

/// The group key of a cursor: a tag for NULL, distinct from every value.
fn key_of(cursor: Option<i64>) -> Vec<u8> {
    match cursor {
        None => vec![0],
        Some(c) => [&[1u8][..], &c.to_be_bytes()].concat(),
    }
}

/// Runs a pass the way `sync::table` does, from `position`: rows fetched `batch` at a time, a
/// checkpoint after every fetch and at the end of every query, at most `hold` rows held back;
/// until it completes or `fail_after` checkpoints have been taken.
fn run(
    table: &Table,
    position: Option<Position>,
    limit: u64,
    batch: usize,
    hold: u64,
    seed: u64,
) -> Attempt {
    let mut rng = Lcg(seed);
    let mut progress = Progress::new(table.shape, position);
    let mut attempt = Attempt::default();
    // Far more than any correct pass needs: twice the distinct values plus one, and a query
    // per `limit` rows.
    let most_queries = 2 * table.rows.len() + 3;
    let limits = HoldLimits {
        rows: hold,
        bytes: u64::MAX,
    };
    let checkpoint = |attempt: &mut Attempt, progress: &mut Progress, last: Option<Row>| {
        if let Some(row) = last {
            progress.sent(
                row.cursor.map(|c| c.to_string()),
                row.key.iter().map(i64::to_string).collect(),
            );
        }
        attempt
            .checkpoints
            .push((attempt.sent.len(), progress.position().cloned()));
    };
    loop {
        let query = progress.start_query(limit, limits);
        attempt.queries.push(query.clone());
        assert!(
            attempt.queries.len() <= most_queries,
            "{:?}: no end in sight after {} queries: {:?}",
            table.shape,
            attempt.queries.len(),
            attempt.queries
        );
        let rows = table.query(&query, &mut rng);
        let mut held: Vec<Row> = Vec::new();
        for chunk in rows.chunks(batch) {
            let mut last_sent = None;
            for row in chunk {
                let action =
                    progress.row(&key_of(row.cursor), 1, || row.cursor.map(|c| c.to_string()));
                match action {
                    RowAction::Send => {
                        attempt.sent.push(*row);
                        last_sent = Some(*row);
                    }
                    RowAction::Hold => held.push(*row),
                    RowAction::SendHeldThenHold => {
                        attempt.sent.append(&mut held);
                        held.push(*row);
                    }
                    RowAction::DropHeld => held.clear(),
                    RowAction::Skip => {}
                }
            }
            checkpoint(&mut attempt, &mut progress, last_sent);
            if progress.stopping() {
                break;
            }
        }
        let end = match progress.query_ended() {
            Ok(end) => end,
            Err(err) => panic!("{:?}: {err}", table.shape),
        };
        if end.send_held {
            attempt.sent.append(&mut held);
        }
        checkpoint(&mut attempt, &mut progress, None);
        if end.after == AfterQuery::Done {
            attempt.completed = true;
            return attempt;
        }
    }
}

fn ids(rows: &[Row]) -> BTreeSet<usize> {
    rows.iter().map(|r| r.id).collect()
}

/// Everything a pass must do for this table, limit, batch size and hold limit.
fn check(table: &Table, limit: u64, batch: usize, hold: u64, seed: u64) {
    let all: BTreeSet<usize> = table.rows.iter().map(|r| r.id).collect();
    let first = run(table, None, limit, batch, hold, seed);
    assert!(first.completed);
    let context = format!("{table:?} limit {limit} batch {batch} hold {hold}");
    assert_eq!(ids(&first.sent), all, "{context}: rows lost");
    // Every shape sends every row exactly once in a pass that does not fail.
    assert_eq!(
        first.sent.len(),
        table.rows.len(),
        "{context}: rows repeated: {:?}",
        first.sent
    );
    // No two queries of a pass start at the same place.
    let starts: BTreeSet<String> = first
        .queries
        .iter()
        .map(|q| format!("{:?}", q.resume))
        .collect();
    assert_eq!(
        starts.len(),
        first.queries.len(),
        "{context}: a query start repeats: {:?}",
        first.queries
    );

    // A host that failed after any checkpoint resumes from it: nothing is lost; a table with a
    // key gets nothing twice, one without gets again only rows of the cursor value the
    // checkpoint names (a group read by a query of its own, or the last value of the pass).
    for (i, (before, position)) in first.checkpoints.iter().enumerate() {
        if table.shape == Shape::KeylessFull {
            // Nothing names a place: a new pass (tested by `attempt_failed`).
            continue;
        }
        let resumed = run(table, position.clone(), limit, batch, hold, seed ^ i as u64);
        assert!(resumed.completed);
        let delivered = &first.sent[..*before];
        let union: BTreeSet<usize> = ids(delivered).union(&ids(&resumed.sent)).copied().collect();
        assert_eq!(
            union, all,
            "{context}: resumed from checkpoint {i} ({position:?}), rows lost"
        );
        let twice: Vec<Row> = delivered
            .iter()
            .filter(|row| ids(&resumed.sent).contains(&row.id))
            .copied()
            .collect();
        let allowed = match (table.shape, position) {
            (Shape::KeylessIncremental, Some(p)) if p.kind != PositionKind::AfterCursor => {
                Some(p.cursor.as_deref().map(number))
            }
            _ => None,
        };
        assert!(
            twice.iter().all(|row| Some(row.cursor) == allowed),
            "{context}: resumed from checkpoint {i} ({position:?}), rows sent twice: {twice:?}"
        );
    }
}

/// Rows with these cursors (and keys 1..; `keyed` or not) in the given shape.
fn table(shape: Shape, cursors: &[Option<i64>]) -> Table {
    let keyed = matches!(shape, Shape::KeyedIncremental | Shape::KeyedFull);
    let has_cursor = matches!(shape, Shape::KeyedIncremental | Shape::KeylessIncremental);
    Table {
        rows: cursors
            .iter()
            .enumerate()
            .map(|(id, &cursor)| Row {
                id,
                cursor: if has_cursor { cursor } else { None },
                key: keyed.then_some(id as i64 * 7 % 101),
            })
            .collect(),
        shape,
    }
}

const SHAPES: [Shape; 4] = [
    Shape::KeyedIncremental,
    Shape::KeyedFull,
    Shape::KeylessIncremental,
    Shape::KeylessFull,
];

/// The shapes the issue names, at limits below, at and above their row counts.
#[test]
fn the_shapes_that_used_to_loop_end_with_every_row() {
    let cases: &[(&str, Vec<Option<i64>>)] = &[
        ("five rows, distinct cursors", (1..=5).map(Some).collect()),
        ("five rows, one cursor value", vec![Some(7); 5]),
        ("five rows, all cursors NULL", vec![None; 5]),
        (
            "three rows per cursor value",
            (0..9).map(|i| Some(i / 3)).collect(),
        ),
        (
            "more NULLs and ties than the limit, then distinct values",
            vec![
                None,
                None,
                None,
                Some(1),
                Some(1),
                Some(1),
                Some(2),
                Some(3),
            ],
        ),
        ("no rows", vec![]),
    ];
    for (name, cursors) in cases {
        for shape in SHAPES {
            let table = table(shape, cursors);
            for limit in 1..=cursors.len() as u64 + 1 {
                for batch in [1, 2, 100] {
                    for hold in [1, 2, 1000] {
                        check(&table, limit, batch, hold, limit * 31 + batch as u64);
                    }
                }
            }
            let _ = name;
        }
    }
}

const HOLD_ALL: HoldLimits = HoldLimits {
    rows: u64::MAX,
    bytes: u64::MAX,
};

#[test]
fn a_table_without_key_or_cursor_is_one_query_and_a_failure_starts_it_over() {
    let mut progress = Progress::new(Shape::KeylessFull, None);
    let query = progress.start_query(2, HOLD_ALL);
    assert_eq!(
        query,
        NextQuery {
            resume: Resume::FromStart,
            limit: None
        }
    );
    for _ in 0..3 {
        assert_eq!(progress.row(&[], 10, || None), RowAction::Send);
    }
    progress.sent(None, Vec::new());
    assert_eq!(progress.position(), None);
    assert!(progress.attempt_failed(3), "a new pass, with a TRUNCATE");
    assert!(!progress.attempt_failed(0), "nothing sent: nothing to undo");
    assert!(!Progress::new(Shape::KeyedFull, None).attempt_failed(3));
}

#[test]
fn ties_beyond_the_limit_are_read_as_a_group_and_then_passed() {
    let five = || Some("5".to_string());
    let mut progress = Progress::new(Shape::KeylessIncremental, None);
    progress.start_query(2, HOLD_ALL);
    assert_eq!(progress.row(b"5", 1, five), RowAction::Hold);
    assert_eq!(progress.row(b"5", 1, five), RowAction::Hold);
    // The query filled its limit with one value: its rows are dropped and read as a group.
    assert_eq!(
        progress.query_ended(),
        Ok(QueryEnd {
            send_held: false,
            after: AfterQuery::Next
        })
    );
    assert_eq!(progress.position(), Some(&Position::tied(five())));
    let group = progress.start_query(2, HOLD_ALL);
    assert_eq!(
        group,
        NextQuery {
            resume: Resume::OnlyCursor(five()),
            limit: None
        }
    );
    for _ in 0..9 {
        assert_eq!(progress.row(b"5", 1, five), RowAction::Send);
    }
    // Checkpoints inside the group keep the group's position.
    progress.sent(five(), vec![]);
    assert_eq!(progress.position(), Some(&Position::tied(five())));
    assert_eq!(
        progress.query_ended().map(|end| end.after),
        Ok(AfterQuery::Next)
    );
    assert_eq!(
        progress.next_query(2),
        NextQuery {
            resume: Resume::AfterCursor(five()),
            limit: Some(2)
        }
    );
}

#[test]
fn a_group_larger_than_may_be_held_ends_the_query_for_a_query_of_its_own() {
    let seven = || Some("7".to_string());
    let mut progress = Progress::new(Shape::KeylessIncremental, None);
    let limits = HoldLimits {
        rows: 2,
        bytes: u64::MAX,
    };
    progress.start_query(100, limits);
    assert_eq!(progress.row(b"1", 1, || Some("1".into())), RowAction::Hold);
    assert_eq!(progress.row(b"7", 1, seven), RowAction::SendHeldThenHold);
    assert_eq!(
        progress.position(),
        Some(&Position::after_cursor(Some("1".into())))
    );
    assert_eq!(progress.row(b"7", 1, seven), RowAction::Hold);
    assert_eq!(progress.row(b"7", 1, seven), RowAction::DropHeld);
    assert!(progress.stopping());
    assert_eq!(progress.row(b"8", 1, || None), RowAction::Skip);
    assert_eq!(progress.query_ended().map(|end| end.send_held), Ok(false));
    assert_eq!(progress.position(), Some(&Position::tied(seven())));
}

#[test]
fn queries_are_sized_by_the_setting_or_the_result_budget() {
    assert_eq!(rows_per_query(RowsPerQuery::AtMost(90), 4, 1000, None), 90);
    assert_eq!(
        rows_per_query(RowsPerQuery::Auto, 1, 128, None),
        QUERY_RESULT_BUDGET / 128
    );
    // The budget is shared by the tables read at once, down to a floor.
    assert_eq!(
        rows_per_query(RowsPerQuery::Auto, 4, 128, None),
        QUERY_RESULT_BUDGET / 4 / 128
    );
    assert_eq!(
        rows_per_query(RowsPerQuery::Auto, 32, 1 << 20, None),
        MIN_QUERY_RESULT_BUDGET >> 20
    );
    // Rows larger than the whole budget still go, one a query.
    assert_eq!(rows_per_query(RowsPerQuery::Auto, 1, 1 << 40, None), 1);
    // The Data API's cap on a statement's result bounds every query, shared or not.
    assert_eq!(
        rows_per_query(RowsPerQuery::Auto, 1, 128, Some(DATA_API_RESULT_CAP)),
        DATA_API_RESULT_CAP / 128
    );
    assert_eq!(
        rows_per_query(RowsPerQuery::Auto, 32, 128, Some(DATA_API_RESULT_CAP)),
        MIN_QUERY_RESULT_BUDGET / 128
    );
    // A setting is the user's: kept as it is.
    assert_eq!(
        rows_per_query(
            RowsPerQuery::AtMost(1 << 30),
            1,
            128,
            Some(DATA_API_RESULT_CAP)
        ),
        1 << 30
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Random tables of every shape: few distinct cursor values (many ties), NULLs, every
    /// limit and batch size.
    #[test]
    fn every_shape_ends_loses_nothing_and_never_restarts_a_query(
        cursors in proptest::collection::vec(proptest::option::weighted(0.8, 0i64..4), 0..24),
        shape in 0usize..4,
        limit in 1u64..8,
        batch in 1usize..5,
        hold in 1u64..6,
        seed in any::<u64>(),
    ) {
        check(&table(SHAPES[shape], &cursors), limit, batch, hold, seed);
    }
}

/// When a table read by its cursor re-syncs from scratch, as a table: none recorded, one under
/// way (never restarted), one complete and recent, one complete and old, an unreadable time.
#[test]
fn a_resync_is_due_when_the_last_is_complete_and_old_enough() {
    use crate::state::ResyncState;
    let now = chrono::DateTime::parse_from_rfc3339("2024-06-02T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let day = std::time::Duration::from_secs(24 * 3600);
    let state = |started_at: &str, done| ResyncState {
        started_at: started_at.to_string(),
        done,
    };
    let cases: Vec<(Option<ResyncState>, std::time::Duration, bool)> = vec![
        (None, day, true),
        (Some(state("2024-05-01T00:00:00Z", false)), day, false),
        (Some(state("2024-06-02T00:00:00Z", true)), day, false),
        (Some(state("2024-06-01T12:00:00Z", true)), day, true),
        (Some(state("2024-06-01T11:00:00Z", true)), day, true),
        (
            Some(state("2024-06-02T12:00:00Z", true)),
            std::time::Duration::ZERO,
            true,
        ),
        (Some(state("not a time", true)), day, true),
    ];
    for (resync, every, due) in cases {
        assert_eq!(
            resync_due(resync.as_ref(), every, now),
            due,
            "{resync:?} every {every:?}"
        );
    }
}

//! The links' anonymous counters: the clicks that name no reader.

use diesel::prelude::*;

use crate::foundation::db::schema::issue_links;
use crate::foundation::db::DbConnection;

/// Adds reader and machine clicks to a link's anonymous counters.
pub(super) fn add(
    conn: &mut DbConnection,
    issue_id: i64,
    position: i32,
    reader: i64,
    machine: i64,
) -> QueryResult<usize> {
    diesel::update(issue_links::table.find((issue_id, position)))
        .set((
            issue_links::clicks.eq(issue_links::clicks + reader),
            issue_links::machine_clicks.eq(issue_links::machine_clicks + machine),
        ))
        .execute(conn)
}

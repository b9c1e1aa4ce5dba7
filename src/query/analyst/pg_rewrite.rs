//! Rewrites of catalog SQL that clients send and DataFusion cannot plan as written, each
//! into SQL with the same answer over this catalog.
//!
//! - `information_schema._pg_expandarray(a)` (PgJDBC's primary keys and indexes): a
//!   set-returning function of Postgres, rows `(x, n)` of an array's elements and their
//!   positions. Here `unnest(_pg_expandarray(a))`, over a list of such structs, so
//!   `(… ).n` and `(keys).x` read their fields.
//! - A scalar subquery on the catalog that returns its one column without aggregating
//!   (PgJDBC's `getTypeInfo`: `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid =
//!   t.typrelid)`; SQLAlchemy's column defaults): Postgres fails at run time if it finds
//!   two rows, DataFusion refuses to plan a correlated one at all. Over the catalog, where
//!   these look a row up by its oid, `max(…)` of the one row is the same value.
//!
//! Both run on the statements after the sandbox's parse and depth check, so the trees are
//! shallow; the kind check runs on their output.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Query, SelectItem,
    SetExpr, Statement, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Functions that aggregate: a subquery that uses one already returns one row.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "first_value",
];

fn expr(text: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// Whether every relation the query reads is a catalog table.
fn reads_only_catalog(q: &Query) -> bool {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return false;
    };
    !s.from.is_empty()
        && s.from.iter().all(|t| {
            std::iter::once(&t.relation)
                .chain(t.joins.iter().map(|j| &j.relation))
                .all(|r| match r {
                    TableFactor::Table { name, .. } => {
                        let n = name.to_string().to_lowercase();
                        n.starts_with("pg_catalog.") || n.starts_with("pg_")
                    }
                    _ => false,
                })
        })
}

fn aggregates(e: &Expr) -> bool {
    let text = e.to_string().to_lowercase();
    AGGREGATES.iter().any(|a| text.contains(&format!("{a}(")))
}

/// `array(SELECT 'prefix' || x FROM unnest(a) x)` (psql's `\d+`, for the options of a
/// table's TOAST table): `prefix_elements('prefix', a)`, the same list without a
/// correlated subquery.
fn prefixed_elements(q: &Query) -> Option<Expr> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let ([item], [from]) = (s.projection.as_slice(), s.from.as_slice()) else {
        return None;
    };
    let SelectItem::UnnamedExpr(Expr::BinaryOp { left, op, right }) = item else {
        return None;
    };
    if *op != BinaryOperator::StringConcat || !from.joins.is_empty() || s.selection.is_some() {
        return None;
    }
    let (Expr::Value(prefix), Expr::Identifier(x)) = (left.as_ref(), right.as_ref()) else {
        return None;
    };
    let TableFactor::Function {
        name, args, alias, ..
    } = &from.relation
    else {
        return None;
    };
    let unnest = name.to_string().to_lowercase();
    let alias = alias.as_ref()?;
    if !(unnest == "unnest" || unnest == "pg_catalog.unnest") || alias.name.value != x.value {
        return None;
    }
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] = args.as_slice() else {
        return None;
    };
    expr(&format!("prefix_elements({prefix}, {array})"))
}

struct Rewrite;

impl VisitorMut for Rewrite {
    type Break = ();

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f)
                if f.name.to_string().eq_ignore_ascii_case("array")
                    && let FunctionArguments::Subquery(q) = &f.args
                    && let Some(new) = prefixed_elements(q) =>
            {
                *e = new;
            }
            Expr::Function(f) => {
                let name = f.name.to_string().to_lowercase();
                if (name == "information_schema._pg_expandarray" || name == "_pg_expandarray")
                    && let Some(new) = expr(&format!("unnest(_pg_expandarray({}))", f.args))
                {
                    *e = new;
                }
            }
            // `(record).field`, as PgJDBC reads `_pg_expandarray`'s rows: DataFusion reads a
            // struct's field with `get_field`.
            Expr::CompoundFieldAccess { root, access_chain } if access_chain.len() == 1 => {
                if let datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(field)) =
                    &access_chain[0]
                    && let Expr::Nested(inner) = root.as_ref()
                    && let Some(new) = expr(&format!(
                        "get_field({inner}, '{}')",
                        field.value.replace('\'', "''")
                    ))
                {
                    *e = new;
                }
            }
            Expr::Subquery(q) if reads_only_catalog(q) => {
                if let SetExpr::Select(s) = q.body.as_mut()
                    && s.projection.len() == 1
                    && matches!(
                        s.group_by,
                        datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(ref g, _) if g.is_empty()
                    )
                {
                    let item = &mut s.projection[0];
                    let inner = match item {
                        SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } => x,
                        _ => return ControlFlow::Continue(()),
                    };
                    if !aggregates(inner)
                        && let Some(wrapped) = expr(&format!("max({inner})"))
                    {
                        *inner = wrapped;
                        q.limit_clause = None;
                        q.order_by = None;
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Applies the rewrites to one statement.
pub fn rewrite(mut statement: Statement) -> Statement {
    let _ = statement.visit(&mut Rewrite);
    statement
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> String {
        let s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        rewrite(s).to_string()
    }

    #[test]
    fn expandarray_becomes_unnest() {
        let out = one(
            "SELECT (information_schema._pg_expandarray(i.indkey)).n FROM pg_catalog.pg_index i",
        );
        assert!(out.contains("unnest(_pg_expandarray(i.indkey))"), "{out}");
    }

    #[test]
    fn psql_toast_options() {
        let out = one(
            "SELECT pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x \
             from pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_catalog.pg_class c \
             LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)",
        );
        assert!(out.contains("prefix_elements('toast.', tc.reloptions)"), "{out}");
    }

    #[test]
    fn catalog_lookups_aggregate_their_row() {
        let out = one(
            "SELECT t.typname FROM pg_catalog.pg_type t WHERE t.typrelid = 0 OR \
             (SELECT c.relkind = 'c' FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid)",
        );
        assert!(out.contains("SELECT max(c.relkind = 'c') FROM"), "{out}");
        // A subquery on the lake's tables is left as written.
        let lake = "SELECT (SELECT kind FROM events e WHERE e.event_id = x.event_id) FROM events x";
        assert_eq!(one(lake), lake);
        // One that aggregates already is too.
        let agg = "SELECT (SELECT count(*) FROM pg_catalog.pg_class c WHERE c.oid = t.oid) FROM pg_catalog.pg_type t";
        assert_eq!(one(agg), agg);
    }
}

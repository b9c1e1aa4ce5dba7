//! Rewrites of catalog SQL that clients send and DataFusion cannot plan as written, each
//! into SQL with the same answer over this catalog.
//!
//! - `information_schema._pg_expandarray(a)` (PgJDBC's primary keys and indexes): a
//!   set-returning function of Postgres, rows `(x, n)` of an array's elements and their
//!   positions. Here `unnest(_pg_expandarray(a))`, over a list of such structs, so
//!   `(… ).n` and `(keys).x` read their fields.
//! - A scalar subquery on the catalog that looks a row up (PgJDBC's `getTypeInfo`:
//!   `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid)`; SQLAlchemy's
//!   column defaults, identity options and collations): Postgres fails at run time if it
//!   finds two rows, DataFusion refuses to plan a correlated one unless it aggregates, is
//!   tied to the outer row by equalities only, and selects nothing of the outer row.
//!   [`catalog_lookup`] reshapes such lookups into ones DataFusion plans, with the same
//!   value: `max(…)` of the one row, conditions on the outer row alone in front of the
//!   subquery, outer values in what it selects outside it.
//! - `generate_subscripts(a, dim)` in a select list (SQLAlchemy's primary keys and
//!   indexes), another set-returning function: `unnest(array_subscripts(a, dim))`, which
//!   DataFusion unnests in step with `unnest(a)` beside it, as Postgres does.
//! - `array(SELECT 'prefix' || x FROM unnest(a) x)` (psql's `\d+`): a list function.
//! - Functions in FROM as PostgreSQL reads them (Grafana's search-path lookup:
//!   `FROM generate_series(…) AS i, string_to_array(…) s`): a function that returns one
//!   value is a table of one row, here a derived table; a set-returning function of one
//!   column names that column after its alias, as `i` above.
//! - `x IN (SELECT …)` where DataFusion plans no subquery (a select-list item, ORDER BY,
//!   a CASE; Grafana sorts the tables of its search path first so): `pg_in_list(x,
//!   (SELECT array_agg(…) …))`, one scalar subquery, with IN's three-valued answer.
//! - `x::regclass` of an expression (Metabase's `format('%I.%I', schema, table)::regclass`;
//!   datafusion-postgres resolves literals only): `regclass_oid(x, <the relations of
//!   pg_class>)`, the name looked up as PostgreSQL looks it up.
//! - `current_user`, `session_user`, `user`, `current_role`: the connection's user,
//!   put in by [`session_user`] when the statement is planned for a connection, and
//!   their select-list columns named as PostgreSQL names them ([`name_session_users`]).
//!
//! All run on the statements after the sandbox's parse and depth check, so the trees are
//! shallow; the kind check runs on their output.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident,
    LimitClause, ObjectName, OrderByKind, Query, Select, SelectItem, SetExpr, Statement,
    TableAlias, TableAliasColumnDef, TableFactor, Value, VisitMut, VisitorMut, visit_expressions,
    visit_expressions_mut,
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

/// How a name reads in SQL: folded to lower case unless quoted.
fn folded(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The names by which a query's columns can be qualified: each relation's alias, or the
/// table's name with and without its schema.
fn relation_names(s: &Select) -> Vec<String> {
    let mut names = Vec::new();
    for t in &s.from {
        for r in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            match r {
                TableFactor::Table { alias: Some(a), .. }
                | TableFactor::Derived { alias: Some(a), .. }
                | TableFactor::Function { alias: Some(a), .. } => names.push(folded(&a.name)),
                TableFactor::Table { name, .. } => {
                    let parts: Vec<String> = name
                        .0
                        .iter()
                        .filter_map(|p| p.as_ident().map(folded))
                        .collect();
                    for start in 0..parts.len() {
                        names.push(parts[start..].join("."));
                    }
                }
                _ => {}
            }
        }
    }
    names
}

/// Whether a column reference is qualified by a name the subquery's FROM does not give,
/// so it reads the enclosing query's row. `None` for an expression that is no column.
/// An unqualified name is taken for the subquery's own column, which is what it reads
/// when the subquery has one of that name; where it is the outer query's, the rewrite
/// that relies on this leaves a correlation DataFusion refuses, as before, never a
/// different answer.
fn outer_column(e: &Expr, inner: &[String]) -> Option<bool> {
    match e {
        Expr::Identifier(_) => Some(false),
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let qualifier = parts[..parts.len() - 1]
                .iter()
                .map(folded)
                .collect::<Vec<_>>()
                .join(".");
            Some(!inner.contains(&qualifier))
        }
        _ => None,
    }
}

fn is_subquery(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
    ) || matches!(e, Expr::Function(f) if matches!(f.args, FunctionArguments::Subquery(_)))
}

/// Whether `e` reads the enclosing query's row and nothing of the subquery's own: every
/// column it names is an outer one, and it holds no subquery.
fn outer_only(e: &Expr, inner: &[String]) -> bool {
    visit_expressions(e, |x| {
        if is_subquery(x) || outer_column(x, inner) == Some(false) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_continue()
}

/// Whether `e` names any column of the enclosing query.
fn reads_outer(e: &Expr, inner: &[String]) -> bool {
    visit_expressions(e, |x| {
        if outer_column(x, inner) == Some(true) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

fn contains_subquery(e: &Expr) -> bool {
    visit_expressions(e, |x| {
        if is_subquery(x) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// The conditions ANDed together in `e`.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut out = conjuncts(left);
            out.extend(conjuncts(right));
            out
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(inner)
        }
        other => vec![other],
    }
}

/// A scalar subquery that looks a row of the catalog up, as an expression DataFusion can
/// plan; `None` leaves it as written. DataFusion decorrelates a scalar subquery into a
/// join only when it aggregates, its conditions on the outer row are equalities between
/// one of its own columns and an outer expression, and what it selects reads none of the
/// outer row. Catalog lookups are written without those in mind, so:
///
/// - what it selects is aggregated: `max(x)`, or `first_value(x ORDER BY …)` when it
///   keeps the first row of an order with `LIMIT` — the same value as the one row a lookup
///   finds (Postgres fails on two rows unless limited);
/// - conditions on the outer row alone (`WHERE a.atthasdef AND d.adrelid = a.attrelid`)
///   move in front of it: `CASE WHEN a.atthasdef THEN (SELECT … WHERE d.adrelid =
///   a.attrelid) END`, NULL when false, as no row would be found;
/// - when what it selects also reads the outer row (SQLAlchemy's
///   `json_build_object('always', a.attidentity = 'a', 'start', s.seqstart, …)`), each of
///   its own columns becomes a lookup of its own, under a test that there is a row:
///   `CASE WHEN (SELECT count(*) …) > 0 THEN json_build_object('always', a.attidentity =
///   'a', 'start', (SELECT max(s.seqstart) …), …) END`.
///
/// Only subqueries that read the catalog alone are touched: they are small, and the joins
/// these become cost nothing there.
fn catalog_lookup(q: &Query) -> Option<Expr> {
    if !reads_only_catalog(q) || q.with.is_some() || q.fetch.is_some() {
        return None;
    }
    let limit = match &q.limit_clause {
        None => None,
        Some(LimitClause::LimitOffset {
            limit,
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => limit.as_ref(),
        Some(_) => return None,
    };
    if limit.is_some_and(|l| l.to_string() == "0") {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let ([item], GroupByExpr::Expressions(group, _)) = (s.projection.as_slice(), &s.group_by)
    else {
        return None;
    };
    let (value, alias) = match item {
        SelectItem::UnnamedExpr(x) => (x, None),
        SelectItem::ExprWithAlias { expr: x, alias } => (x, Some(folded(alias))),
        _ => return None,
    };
    if !group.is_empty() || s.having.is_some() || aggregates(value) {
        return None;
    }
    let inner = relation_names(s);
    let (guards, rest): (Vec<&Expr>, Vec<&Expr>) = s
        .selection
        .iter()
        .flat_map(conjuncts)
        .partition(|c| outer_only(c, &inner));
    // The order that picks the row, when a LIMIT keeps the first of several.
    // `ORDER BY 1` and `ORDER BY <its alias>` name the selected value.
    let order = match (&q.order_by, limit) {
        (Some(o), Some(_)) => match &o.kind {
            OrderByKind::Expressions(exprs) if !exprs.is_empty() => {
                let mut keys = Vec::new();
                for x in exprs {
                    let mut x = x.clone();
                    match &x.expr {
                        Expr::Value(v) if v.to_string() == "1" => x.expr = value.clone(),
                        Expr::Value(_) => return None,
                        Expr::Identifier(i) if Some(folded(i)) == alias => x.expr = value.clone(),
                        _ => {}
                    }
                    keys.push(x.to_string());
                }
                Some(keys.join(", "))
            }
            _ => return None,
        },
        _ => None,
    };
    let from = s
        .from
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let filter = if rest.is_empty() {
        String::new()
    } else {
        let all: Vec<String> = rest.iter().map(|c| format!("({c})")).collect();
        format!(" WHERE {}", all.join(" AND "))
    };
    let lookup = |x: &Expr| match &order {
        Some(order) => format!("(SELECT first_value({x} ORDER BY {order}) FROM {from}{filter})"),
        None => format!("(SELECT max({x}) FROM {from}{filter})"),
    };
    let found = if reads_outer(value, &inner) {
        if contains_subquery(value) {
            return None;
        }
        let mut value = value.clone();
        let mut failed = false;
        let _ = visit_expressions_mut(&mut value, |x| {
            if outer_column(x, &inner) == Some(false) {
                match expr(&lookup(x)) {
                    Some(new) => *x = new,
                    None => failed = true,
                }
            }
            ControlFlow::<()>::Continue(())
        });
        if failed {
            return None;
        }
        format!("CASE WHEN (SELECT count(*) FROM {from}{filter}) > 0 THEN {value} END")
    } else {
        lookup(value)
    };
    if guards.is_empty() {
        expr(&found)
    } else {
        let guards: Vec<String> = guards.iter().map(|c| format!("({c})")).collect();
        expr(&format!(
            "CASE WHEN {} THEN {found} END",
            guards.join(" AND ")
        ))
    }
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
    // The parser gives `FROM unnest(a) x` as a table with arguments (`Function` is the
    // `LATERAL` form); either will do.
    let (name, args, alias) = match &from.relation {
        TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } => (name, &args.args, alias),
        TableFactor::Function {
            name, args, alias, ..
        } => (name, args, alias),
        _ => return None,
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

/// PostgreSQL's set-returning functions: in FROM, tables of rows. Any other function in
/// FROM returns one value, and is a table of one row.
const SET_RETURNING: &[&str] = &[
    "generate_series",
    "generate_subscripts",
    "unnest",
    "range",
    "pg_get_keywords",
    "regexp_matches",
    "regexp_split_to_table",
    "string_to_table",
    "json_each",
    "json_each_text",
    "jsonb_each",
    "jsonb_each_text",
    "json_array_elements",
    "json_array_elements_text",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "json_object_keys",
    "jsonb_object_keys",
    "json_populate_recordset",
    "jsonb_populate_recordset",
    "json_to_recordset",
    "jsonb_to_recordset",
    "jsonb_path_query",
    "pg_options_to_table",
    "aclexplode",
    "_pg_expandarray",
];

/// Set-returning functions DataFusion has whose rows are one column: PostgreSQL names it
/// after the table alias (`generate_series(1, 3) AS i` has a column `i`), or after the
/// function when there is no alias; DataFusion names it otherwise.
const ONE_COLUMN: &[&str] = &["generate_series", "range", "unnest"];

/// A function's name without its schema, as it reads in SQL.
fn function_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(folded)
        .unwrap_or_default()
}

/// A relation of a FROM clause written in SQL.
fn relation(text: &str) -> Option<TableFactor> {
    let statement = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("SELECT * FROM {text}"))
        .and_then(|mut p| p.parse_statement())
        .ok()?;
    let Statement::Query(q) = statement else {
        return None;
    };
    let SetExpr::Select(s) = *q.body else {
        return None;
    };
    let mut from = s.from.into_iter();
    match (from.next(), from.next()) {
        (Some(t), None) if t.joins.is_empty() => Some(t.relation),
        _ => None,
    }
}

/// The alias that names a one-column function's column as PostgreSQL does; `None` when
/// the alias already names its columns.
fn one_column_alias(alias: Option<&TableAlias>, function: &str) -> Option<TableAlias> {
    match alias {
        Some(a) if a.columns.is_empty() => Some(TableAlias {
            columns: vec![TableAliasColumnDef {
                name: a.name.clone(),
                data_type: None,
            }],
            ..a.clone()
        }),
        Some(_) => None,
        None => Some(TableAlias {
            explicit: true,
            name: Ident::new(function),
            columns: vec![TableAliasColumnDef::from_name(function)],
            at: None,
        }),
    }
}

/// A function in FROM as PostgreSQL reads it ([`SET_RETURNING`], [`ONE_COLUMN`]); `None`
/// leaves it as written.
fn from_function(t: &TableFactor) -> Option<TableFactor> {
    match t {
        TableFactor::Table {
            name,
            alias,
            args: Some(args),
            with_ordinality: false,
            ..
        } if args.settings.is_none() => {
            let function = function_name(name);
            if ONE_COLUMN.contains(&function.as_str()) {
                if function == "unnest" && args.args.len() != 1 {
                    return None;
                }
                let alias = one_column_alias(alias.as_ref(), &function)?;
                let mut named = t.clone();
                if let TableFactor::Table { alias: a, .. } = &mut named {
                    *a = Some(alias);
                }
                return Some(named);
            }
            if SET_RETURNING.contains(&function.as_str()) {
                return None;
            }
            let table = alias
                .as_ref()
                .map_or_else(|| Ident::new(&function), |a| a.name.clone());
            let column = match alias.as_ref().map(|a| a.columns.as_slice()) {
                None | Some([]) => table.clone(),
                Some([c]) if c.data_type.is_none() => c.name.clone(),
                Some(_) => return None,
            };
            let args: Vec<String> = args.args.iter().map(|a| a.to_string()).collect();
            relation(&format!(
                "(SELECT {name}({}) AS {column}) AS {table}",
                args.join(", ")
            ))
        }
        TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset: false,
            with_offset_alias: None,
            with_ordinality: false,
        } if array_exprs.len() == 1 => {
            let alias = one_column_alias(alias.as_ref(), "unnest")?;
            let mut named = t.clone();
            if let TableFactor::UNNEST { alias: a, .. } = &mut named {
                *a = Some(alias);
            }
            Some(named)
        }
        _ => None,
    }
}

/// Whether a cast is to `regclass`.
fn is_regclass(t: &datafusion::sql::sqlparser::ast::DataType) -> bool {
    let name = t.to_string().to_lowercase();
    name == "regclass" || name == "pg_catalog.regclass"
}

/// The `(schema, name, oid)` of every relation, for `regclass_oid`.
const RELATIONS: &str = "(SELECT array_agg(struct(_n.nspname, _c.relname, _c.oid)) FROM \
                         pg_catalog.pg_class _c JOIN pg_catalog.pg_namespace _n ON _n.oid = \
                         _c.relnamespace)";

/// `x::regclass` for an `x` that is an expression, not a column (an oid) nor a literal
/// (datafusion-postgres resolves those): `regclass_oid(x, <relations>)`.
fn regclass_cast(operand: &Expr) -> Option<Expr> {
    match operand {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_) => None,
        x => expr(&format!("regclass_oid({x}, {RELATIONS})")),
    }
}

/// The session-user functions and the names PostgreSQL gives their columns.
fn session_user_call(e: &Expr) -> Option<&'static str> {
    let name = match e {
        Expr::Function(f)
            if f.name.0.len() == 1
                && match &f.args {
                    FunctionArguments::None => true,
                    FunctionArguments::List(l) => l.args.is_empty(),
                    FunctionArguments::Subquery(_) => false,
                } =>
        {
            f.name.0[0].as_ident().filter(|i| i.quote_style.is_none())?
        }
        Expr::Identifier(i) if i.quote_style.is_none() => i,
        _ => return None,
    };
    let lower = name.value.to_lowercase();
    let function = matches!(e, Expr::Function(_));
    ["current_user", "session_user", "user", "current_role"]
        .into_iter()
        .find(|n| *n == lower && (function || *n == "current_role"))
}

/// Names the select-list items that are `current_user`, `session_user`, `user` or
/// `current_role` alone as PostgreSQL does (`SELECT current_user` has a column
/// `current_user`), before datafusion-postgres renames `current_user` and
/// [`session_user`] puts the user in. Whether any was named.
pub fn name_session_users(statement: &mut Statement) -> bool {
    struct Names(bool);
    impl VisitorMut for Names {
        type Break = ();
        fn pre_visit_select(&mut self, s: &mut Select) -> ControlFlow<()> {
            for item in &mut s.projection {
                if let SelectItem::UnnamedExpr(e) = item
                    && let Some(name) = session_user_call(e)
                {
                    *item = SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias: Ident::with_quote('"', name),
                    };
                    self.0 = true;
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names(false);
    let _ = statement.visit(&mut names);
    names.0
}

/// Puts the connection's user in for `current_user`, `session_user`, `user` and
/// `current_role` (one value for the connection's life: there is no `SET ROLE`).
pub fn session_user(statement: &mut Statement, user: &str) {
    let _ = visit_expressions_mut(statement, |e| {
        if session_user_call(e).is_some() {
            *e = Expr::Value(Value::SingleQuotedString(user.to_owned()).into());
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The `IN (SELECT …)` tests among a condition's conjuncts (in parentheses or not).
fn membership_conjuncts(condition: &Expr, out: &mut Vec<*const Expr>) {
    for c in conjuncts(condition) {
        let mut c = c;
        while let Expr::Nested(inner) = c {
            c = inner;
        }
        if matches!(c, Expr::InSubquery { .. }) {
            out.push(c as *const Expr);
        }
    }
}

#[derive(Default)]
struct Rewrite {
    /// Subqueries that are the right side of `ANY`/`ALL`: sets of rows, not scalars, so not
    /// lookups. Known by address, which stays put while the tree is walked.
    sets: Vec<*const Expr>,
    /// `IN (SELECT …)` tests that are conditions of a WHERE or HAVING, which DataFusion
    /// plans as they are (as semi joins); by address too.
    filters: Vec<*const Expr>,
}

impl VisitorMut for Rewrite {
    type Break = ();

    fn pre_visit_select(&mut self, s: &mut Select) -> ControlFlow<()> {
        for condition in s.selection.iter().chain(s.having.iter()) {
            membership_conjuncts(condition, &mut self.filters);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        if let Some(new) = from_function(t) {
            *t = new;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = e
            && matches!(right.as_ref(), Expr::Subquery(_))
        {
            self.sets.push(right.as_ref() as *const Expr);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let here = e as *const Expr;
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
                    && let Some(new) = expr(&format!("unnest(_pg_expandarray{})", f.args))
                {
                    *e = new;
                } else if (name == "pg_catalog.generate_subscripts"
                    || name == "generate_subscripts")
                    && let Some(new) = expr(&format!("unnest(array_subscripts{})", f.args))
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
            Expr::Subquery(q)
                if !self.sets.contains(&here)
                    && let Some(new) = catalog_lookup(q) =>
            {
                *e = new;
            }
            Expr::InSubquery {
                expr: x,
                subquery,
                negated,
            } if !self.filters.contains(&here)
                && let Some(new) = expr(&format!(
                    "({}pg_in_list({x}, (SELECT array_agg(_set._member) FROM ({subquery}) AS \
                     _set(_member))))",
                    if *negated { "NOT " } else { "" }
                )) =>
            {
                *e = new;
            }
            Expr::Cast {
                expr: operand,
                data_type,
                ..
            } if is_regclass(data_type)
                && let Some(new) = regclass_cast(operand) =>
            {
                *e = new;
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Applies the rewrites to one statement.
pub fn rewrite(mut statement: Statement) -> Statement {
    let _ = statement.visit(&mut Rewrite::default());
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
        assert!(
            out.contains("prefix_elements('toast.', tc.reloptions)"),
            "{out}"
        );
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
        // One under ANY is a set of rows, not a lookup.
        let any = "SELECT t.typname FROM pg_catalog.pg_type t WHERE t.oid = ANY(SELECT a.atttypid FROM pg_catalog.pg_attribute a)";
        assert_eq!(one(any), any);
        // One that aggregates already is too.
        let agg = "SELECT (SELECT count(*) FROM pg_catalog.pg_class c WHERE c.oid = t.oid) FROM pg_catalog.pg_type t";
        assert_eq!(one(agg), agg);
    }

    #[test]
    fn conditions_on_the_outer_row_go_in_front() {
        let out = one(
            "SELECT (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d \
             WHERE a.atthasdef AND d.adrelid = a.attrelid) FROM pg_catalog.pg_attribute a",
        );
        assert_eq!(
            out,
            "SELECT CASE WHEN (a.atthasdef) THEN (SELECT max(pg_get_expr(d.adbin, d.adrelid)) \
             FROM pg_catalog.pg_attrdef d WHERE (d.adrelid = a.attrelid)) END FROM \
             pg_catalog.pg_attribute a"
        );
    }

    #[test]
    fn outer_values_in_what_is_selected_stay_outside() {
        let out = one(
            "SELECT (SELECT json_build_object('always', pg_catalog.pg_attribute.attidentity = 'a', \
             'start', pg_catalog.pg_sequence.seqstart) FROM pg_catalog.pg_sequence WHERE \
             pg_catalog.pg_sequence.seqrelid = pg_catalog.pg_attribute.attrelid) FROM \
             pg_catalog.pg_attribute",
        );
        let from = "FROM pg_catalog.pg_sequence WHERE (pg_catalog.pg_sequence.seqrelid = \
                    pg_catalog.pg_attribute.attrelid)";
        assert_eq!(
            out,
            format!(
                "SELECT CASE WHEN (SELECT count(*) {from}) > 0 THEN json_build_object('always', \
                 pg_catalog.pg_attribute.attidentity = 'a', 'start', (SELECT \
                 max(pg_catalog.pg_sequence.seqstart) {from})) END FROM pg_catalog.pg_attribute"
            )
        );
    }

    #[test]
    fn a_limited_order_keeps_its_first_row() {
        let out = one(
            "SELECT (SELECT t.typname AS n FROM pg_catalog.pg_type t WHERE t.typelem = x.oid \
             ORDER BY n DESC LIMIT 1) FROM pg_catalog.pg_type x",
        );
        assert!(
            out.contains("SELECT first_value(t.typname ORDER BY t.typname DESC) FROM"),
            "{out}"
        );
        // An offset or LIMIT 0 is not a lookup.
        for q in [
            "SELECT (SELECT t.typname FROM pg_catalog.pg_type t ORDER BY 1 LIMIT 1 OFFSET 1)",
            "SELECT (SELECT t.typname FROM pg_catalog.pg_type t LIMIT 0)",
        ] {
            assert_eq!(one(q), q);
        }
    }

    #[test]
    fn functions_in_from_read_as_postgres_reads_them() {
        // A function of one value is a table of one row, its column named after the alias.
        let out = one("SELECT s[1] FROM string_to_array('a,b', ',') s");
        assert_eq!(
            out,
            "SELECT s[1] FROM (SELECT string_to_array('a,b', ',') AS s) AS s"
        );
        let out = one("SELECT * FROM upper('a') AS u(x), lower('B')");
        assert_eq!(
            out,
            "SELECT * FROM (SELECT upper('a') AS x) AS u, (SELECT lower('B') AS lower) AS lower"
        );
        // A one-column set-returning function names its column after the alias.
        let out = one("SELECT i FROM generate_series(1, 3) AS i, unnest(ARRAY[1]) u");
        assert_eq!(
            out,
            "SELECT i FROM generate_series(1, 3) AS i (i), UNNEST(ARRAY[1]) u (u)"
        );
        // Named columns, several arrays and other set-returning functions are left alone.
        for q in [
            "SELECT * FROM generate_series(1, 3) AS g (n)",
            "SELECT * FROM UNNEST(ARRAY[1], ARRAY[2]) AS u",
            "SELECT * FROM json_each('{}') AS j",
            "SELECT * FROM events e",
        ] {
            assert_eq!(one(q), q);
        }
    }

    #[test]
    fn in_subquery_outside_a_condition_becomes_one_list() {
        let out = one("SELECT CASE WHEN s IN (SELECT 'public') THEN 0 END FROM t \
             ORDER BY s NOT IN (SELECT 'x')");
        assert_eq!(
            out,
            "SELECT CASE WHEN (pg_in_list(s, (SELECT array_agg(_set._member) FROM (SELECT \
             'public') AS _set (_member)))) THEN 0 END FROM t ORDER BY (NOT pg_in_list(s, \
             (SELECT array_agg(_set._member) FROM (SELECT 'x') AS _set (_member))))"
        );
        // A condition of WHERE or HAVING stays a semi join, in parentheses or not; one
        // under OR is not a condition of its own.
        let kept = "SELECT a FROM t WHERE (a IN (SELECT b FROM u)) AND a NOT IN (SELECT c FROM v) \
                    GROUP BY a HAVING a IN (SELECT 1)";
        assert_eq!(one(kept), kept);
        let out = one("SELECT a FROM t WHERE a = 1 OR a IN (SELECT b FROM u)");
        assert!(out.contains("OR (pg_in_list(a, (SELECT array_agg"), "{out}");
    }

    #[test]
    fn regclass_of_an_expression_is_looked_up() {
        let out = one(
            "SELECT col_description(format('%I.%I', c.table_schema, c.table_name)::regclass::oid, 1) \
             FROM information_schema.columns c",
        );
        assert!(
            out.contains(
                "col_description(regclass_oid(format('%I.%I', c.table_schema, c.table_name), \
                 (SELECT array_agg(struct(_n.nspname, _c.relname, _c.oid)) FROM \
                 pg_catalog.pg_class _c JOIN pg_catalog.pg_namespace _n ON _n.oid = \
                 _c.relnamespace))::oid, 1)"
            ),
            "{out}"
        );
        // A column is an oid already; a literal is datafusion-postgres's.
        for q in [
            "SELECT c.oid::REGCLASS FROM pg_catalog.pg_class c",
            "SELECT attrelid::pg_catalog.regclass FROM pg_catalog.pg_attribute",
            "SELECT 'events'::REGCLASS",
        ] {
            assert_eq!(one(q), q);
        }
    }

    #[test]
    fn session_users_are_the_connections() {
        let mut s = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT current_user, session_user, user, current_role, upper(user) AS u, \
             \"user\" FROM t WHERE has_table_privilege(current_user, 'events', 'select')",
        )
        .unwrap()
        .remove(0);
        assert!(name_session_users(&mut s));
        session_user(&mut s, "it's me");
        assert_eq!(
            s.to_string(),
            "SELECT 'it''s me' AS \"current_user\", 'it''s me' AS \"session_user\", 'it''s me' \
             AS \"user\", 'it''s me' AS \"current_role\", upper('it''s me') AS u, \"user\" \
             FROM t WHERE has_table_privilege('it''s me', 'events', 'select')"
        );
    }

    #[test]
    fn generate_subscripts_becomes_unnest() {
        let out = one(
            "SELECT unnest(i.indkey), generate_subscripts(i.indkey, 1) FROM pg_catalog.pg_index i",
        );
        assert!(
            out.contains("unnest(array_subscripts(i.indkey, 1))"),
            "{out}"
        );
    }
}

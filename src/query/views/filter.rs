//! `column = 'text'`, `column <> 'text'` and `column [NOT] IN ('a', 'b', …)` over a string
//! view column, answered from the views.
//!
//! A view is 16 bytes: the length, the first four bytes, and either the rest of the value
//! (values of at most 12 bytes are held whole) or where the value lies in a data buffer. So
//! a short literal is equal to a row exactly when the two views are equal, one 128-bit
//! comparison; a long literal differs from every row whose length or first four bytes
//! differ, one 64-bit comparison. Only a row that agrees on both is compared byte for byte,
//! and since a column decoded from a Parquet dictionary repeats the same view for every
//! row of one value, the last view found equal (and the last found different) is
//! remembered: one byte comparison per distinct value and batch instead of one per row.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringViewArray};
use arrow::buffer::{BooleanBuffer, Buffer};
use arrow::datatypes::{DataType, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, InListExpr, Literal};

/// One literal of the comparison, as its view parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Wanted {
    bytes: Vec<u8>,
    /// The view of the literal when it is held whole (at most 12 bytes).
    inline: Option<u128>,
    /// Length and first four bytes: the low 64 bits of any view of the literal.
    head: u64,
}

impl Wanted {
    fn new(text: &str) -> Option<Self> {
        let bytes = text.as_bytes().to_vec();
        let len = u32::try_from(bytes.len()).ok()?;
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&len.to_le_bytes());
        let prefix = bytes.len().min(4);
        head[4..4 + prefix].copy_from_slice(&bytes[..prefix]);
        let inline = (bytes.len() <= 12).then(|| {
            let mut view = [0u8; 16];
            view[..4].copy_from_slice(&len.to_le_bytes());
            view[4..4 + bytes.len()].copy_from_slice(&bytes);
            u128::from_le_bytes(view)
        });
        Some(Wanted {
            bytes,
            inline,
            head: u64::from_le_bytes(head),
        })
    }
}

impl Wanted {
    /// Whether `view` (of a non-null row of an array with these `buffers`) is this
    /// literal; `memo` holds the last view found equal and the last found different.
    #[inline(always)]
    fn matches(&self, view: u128, memo: &mut (u128, u128), buffers: &[Buffer]) -> bool {
        if let Some(v) = self.inline {
            return view == v;
        }
        // Without branching on the row's value: rows of different values alternate at
        // random, so only the rare row that needs its bytes read takes a branch.
        let head = view as u64 == self.head;
        let known_equal = view == memo.0;
        let known_different = view == memo.1;
        if head & !known_equal & !known_different {
            return self.compare_bytes(view, memo, buffers);
        }
        head & known_equal
    }

    /// The byte comparison, remembered in `memo`.
    #[cold]
    #[inline(never)]
    fn compare_bytes(&self, view: u128, memo: &mut (u128, u128), buffers: &[Buffer]) -> bool {
        let same = long_value(buffers, view) == Some(self.bytes.as_slice());
        if same {
            memo.0 = view;
        } else {
            memo.1 = view;
        }
        same
    }
}

/// Whether a string view column equals one of some literals (or, negated, none of them);
/// `NULL` where the column is `NULL`, as `=`, `<>` and `IN` give.
#[derive(Debug, Clone)]
pub struct ViewEquals {
    column: Arc<dyn PhysicalExpr>,
    wanted: Vec<Wanted>,
    negated: bool,
}

impl PartialEq for ViewEquals {
    fn eq(&self, other: &Self) -> bool {
        self.column.as_ref() == other.column.as_ref()
            && self.wanted == other.wanted
            && self.negated == other.negated
    }
}

impl Eq for ViewEquals {}

impl Hash for ViewEquals {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.column.hash(state);
        self.wanted.hash(state);
        self.negated.hash(state);
    }
}

impl ViewEquals {
    /// `expr` in this form when it is a comparison this can answer over `schema`.
    pub fn from_expr(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<Self> {
        if let Some(b) = expr.downcast_ref::<BinaryExpr>() {
            let negated = match b.op() {
                Operator::Eq => false,
                Operator::NotEq => true,
                _ => return None,
            };
            let (column, text) = match (literal_text(b.right()), literal_text(b.left())) {
                (Some(t), _) => (b.left(), t),
                (None, Some(t)) => (b.right(), t),
                _ => return None,
            };
            return Self::new(column, &[text], negated, schema);
        }
        if let Some(list) = expr.downcast_ref::<InListExpr>() {
            let texts = list
                .list()
                .iter()
                .map(literal_text)
                .collect::<Option<Vec<_>>>()?;
            return Self::new(list.expr(), &texts, list.negated(), schema);
        }
        None
    }

    fn new(
        column: &Arc<dyn PhysicalExpr>,
        texts: &[&str],
        negated: bool,
        schema: &Schema,
    ) -> Option<Self> {
        if texts.is_empty() || column.data_type(schema).ok()? != DataType::Utf8View {
            return None;
        }
        // A literal itself has no column under it.
        if column.is::<Literal>() {
            return None;
        }
        Some(ViewEquals {
            column: Arc::clone(column),
            wanted: texts
                .iter()
                .map(|t| Wanted::new(t))
                .collect::<Option<_>>()?,
            negated,
        })
    }

    fn matches(&self, array: &StringViewArray) -> BooleanArray {
        let views = array.views();
        let buffers = array.data_buffers();
        // Per literal: the last view found equal and the last found different, both
        // known to have the literal's length and prefix (0, the view of "", never has
        // the length of a literal held in a buffer, so it stands for none).
        let mut memo = vec![(0u128, 0u128); self.wanted.len()];
        let negated = self.negated;
        let views: &[u128] = views;
        let rows = views.len();
        let values = match (self.wanted.as_slice(), memo.as_mut_slice()) {
            ([w], [m]) => match w.inline {
                Some(v) => BooleanBuffer::collect_bool(rows, |i| (views[i] == v) != negated),
                None => BooleanBuffer::collect_bool(rows, |i| {
                    w.matches(views[i], m, buffers) != negated
                }),
            },
            (wanted, memo) => BooleanBuffer::collect_bool(rows, |i| {
                let view = views[i];
                let hit = wanted
                    .iter()
                    .zip(memo.iter_mut())
                    .any(|(w, m)| w.matches(view, m, buffers));
                hit != negated
            }),
        };
        BooleanArray::new(values, array.nulls().cloned())
    }
}

/// The bytes of a view of a value longer than 12 bytes (`None` if it points outside the
/// buffers, which a valid array never does).
fn long_value(buffers: &[Buffer], view: u128) -> Option<&[u8]> {
    let len = view as u32 as usize;
    let buffer = (view >> 64) as u32 as usize;
    let offset = (view >> 96) as u32 as usize;
    buffers.get(buffer)?.get(offset..offset.checked_add(len)?)
}

/// The text of a non-null string literal.
fn literal_text(expr: &Arc<dyn PhysicalExpr>) -> Option<&str> {
    match expr.downcast_ref::<Literal>()?.value() {
        ScalarValue::Utf8View(Some(s))
        | ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.as_str()),
        _ => None,
    }
}

impl fmt::Display for ViewEquals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<_> = self
            .wanted
            .iter()
            .map(|w| String::from_utf8_lossy(&w.bytes).into_owned())
            .collect();
        let not = if self.negated { "NOT " } else { "" };
        write!(f, "{} {not}IN VIEWS ({})", self.column, texts.join(", "))
    }
}

impl PhysicalExpr for ViewEquals {
    fn data_type(&self, _schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, schema: &Schema) -> Result<bool> {
        self.column.nullable(schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        match self.column.evaluate(batch)? {
            ColumnarValue::Array(a) => match a.as_string_view_opt() {
                Some(views) => Ok(ColumnarValue::Array(Arc::new(self.matches(views)))),
                None => exec_err!("{self}: the column is {}, not Utf8View", a.data_type()),
            },
            ColumnarValue::Scalar(s) => {
                let value = match &s {
                    ScalarValue::Utf8View(v) | ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) => {
                        v.as_ref().map(|v| {
                            self.wanted.iter().any(|w| w.bytes == v.as_bytes()) != self.negated
                        })
                    }
                    other => return exec_err!("{self}: the column is {}", other.data_type()),
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean(value)))
            }
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.column]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [column] = <[_; 1]>::try_from(children)
            .map_err(|_| datafusion::error::DataFusionError::Internal("one child".into()))?;
        Ok(Arc::new(ViewEquals {
            column,
            ..(*self).clone()
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// `predicate` with its string view comparisons (and `AND`s of them) in these forms.
pub fn rewrite(
    predicate: Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Transformed<Arc<dyn PhysicalExpr>>> {
    predicate.transform_up(|e| {
        if let Some(v) = ViewEquals::from_expr(&e, schema) {
            return Ok(Transformed::yes(Arc::new(v) as Arc<dyn PhysicalExpr>));
        }
        Ok(match ViewAll::from_expr(&e) {
            Some(v) => Transformed::yes(Arc::new(v) as Arc<dyn PhysicalExpr>),
            None => Transformed::no(e),
        })
    })
}

/// `a AND b AND …` of [`ViewEquals`] comparisons, each over the whole batch and the
/// results combined. DataFusion's `AND` evaluates its right side only on the rows its left
/// side keeps, by copying those rows of every column of the batch first; for comparisons
/// this cheap the copy costs more than comparing every row.
#[derive(Debug, Clone)]
pub struct ViewAll {
    parts: Vec<Arc<dyn PhysicalExpr>>,
}

impl ViewAll {
    /// `expr` in this form when it is an `AND` of view comparisons (or of such `AND`s).
    pub fn from_expr(expr: &Arc<dyn PhysicalExpr>) -> Option<Self> {
        let b = expr.downcast_ref::<BinaryExpr>()?;
        if *b.op() != Operator::And {
            return None;
        }
        let mut parts = Vec::new();
        for side in [b.left(), b.right()] {
            if side.is::<ViewEquals>() {
                parts.push(Arc::clone(side));
            } else if let Some(all) = side.downcast_ref::<ViewAll>() {
                parts.extend(all.parts.iter().cloned());
            } else {
                return None;
            }
        }
        Some(ViewAll { parts })
    }
}

impl PartialEq for ViewAll {
    fn eq(&self, other: &Self) -> bool {
        self.parts.len() == other.parts.len()
            && self
                .parts
                .iter()
                .zip(&other.parts)
                .all(|(a, b)| a.as_ref() == b.as_ref())
    }
}

impl Eq for ViewAll {}

impl Hash for ViewAll {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts.hash(state);
    }
}

impl fmt::Display for ViewAll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.parts.iter().map(|p| p.to_string()).collect();
        f.write_str(&parts.join(" AND "))
    }
}

impl PhysicalExpr for ViewAll {
    fn data_type(&self, _schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, schema: &Schema) -> Result<bool> {
        for p in &self.parts {
            if p.nullable(schema)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let mut all: Option<BooleanArray> = None;
        for p in &self.parts {
            let part = p.evaluate(batch)?.into_array(rows)?;
            let part = part.as_boolean();
            all = Some(match all {
                None => part.clone(),
                // SQL's AND: false wins over NULL.
                Some(a) => arrow::compute::and_kleene(&a, part)?,
            });
        }
        match all {
            Some(a) => Ok(ColumnarValue::Array(Arc::new(a))),
            None => exec_err!("an AND of no comparisons"),
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        self.parts.iter().collect()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(ViewAll { parts: children }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringViewBuilder};
    use arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::{col, lit};
    use proptest::prelude::*;

    /// A string view column with its long values spread over several small data buffers
    /// (the same value appended again gets a view of its own, as a Parquet dictionary
    /// page gives the same view to every row of one value).
    fn column(values: &[Option<&str>], repeat_views: bool) -> StringViewArray {
        let mut b = StringViewBuilder::new().with_fixed_block_size(64);
        if repeat_views {
            b = b.with_deduplicate_strings();
        }
        for v in values {
            b.append_option(*v);
        }
        b.finish()
    }

    fn eval(expr: &Arc<dyn PhysicalExpr>, array: StringViewArray) -> BooleanArray {
        let schema = Schema::new(vec![Field::new("s", DataType::Utf8View, true)]);
        let batch =
            RecordBatch::try_new(Arc::new(schema), vec![Arc::new(array) as ArrayRef]).unwrap();
        expr.evaluate(&batch)
            .unwrap()
            .into_array(batch.num_rows())
            .unwrap()
            .as_boolean()
            .clone()
    }

    fn schema() -> Schema {
        Schema::new(vec![Field::new("s", DataType::Utf8View, true)])
    }

    /// DataFusion's own expression and this one, on the same column.
    fn both(
        op: Operator,
        literal: &str,
        values: &[Option<&str>],
        repeat: bool,
    ) -> (BooleanArray, BooleanArray) {
        let s = schema();
        let plain: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            col("s", &s).unwrap(),
            op,
            lit(ScalarValue::Utf8View(Some(literal.to_string()))),
        ));
        let fast: Arc<dyn PhysicalExpr> =
            Arc::new(ViewEquals::from_expr(&plain, &s).expect("a view comparison"));
        (
            eval(&plain, column(values, repeat)),
            eval(&fast, column(values, repeat)),
        )
    }

    #[test]
    fn long_and_short_literals_nulls_and_near_misses() {
        // 'message_status' (14 bytes) is held in a buffer; 'message_stat_s' has its
        // length and first four bytes, so only the byte comparison tells them apart.
        let values = [
            Some("message_status"),
            Some("message_in"),
            None,
            Some("message_stat_s"),
            Some("message_status"),
            Some(""),
            Some("message_statuses"),
        ];
        for literal in ["message_status", "message_in", "", "message_stat_s"] {
            for op in [Operator::Eq, Operator::NotEq] {
                for repeat in [false, true] {
                    let (want, got) = both(op, literal, &values, repeat);
                    assert_eq!(got, want, "{op} {literal:?} (repeated views: {repeat})");
                }
            }
        }
        let (_, got) = both(Operator::Eq, "message_status", &values, true);
        assert_eq!(
            got,
            BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(false),
                Some(true),
                Some(false),
                Some(false)
            ])
        );
    }

    #[test]
    fn in_lists_and_literal_on_the_left() {
        let s = schema();
        let values = [
            Some("message_in"),
            Some("message_out"),
            Some("csat_submitted"),
            None,
            Some("agent_status"),
        ];
        for negated in [false, true] {
            let plain: Arc<dyn PhysicalExpr> = Arc::new(
                InListExpr::try_new(
                    col("s", &s).unwrap(),
                    vec![
                        lit(ScalarValue::Utf8View(Some("message_out".into()))),
                        lit(ScalarValue::Utf8View(Some("csat_submitted".into()))),
                    ],
                    negated,
                    &s,
                )
                .unwrap(),
            );
            let fast: Arc<dyn PhysicalExpr> = Arc::new(ViewEquals::from_expr(&plain, &s).unwrap());
            assert_eq!(
                eval(&fast, column(&values, true)),
                eval(&plain, column(&values, true)),
                "NOT IN: {negated}"
            );
        }
        let left: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            lit(ScalarValue::Utf8View(Some("csat_submitted".into()))),
            Operator::Eq,
            col("s", &s).unwrap(),
        ));
        let fast: Arc<dyn PhysicalExpr> = Arc::new(ViewEquals::from_expr(&left, &s).unwrap());
        assert_eq!(
            eval(&fast, column(&values, false)),
            BooleanArray::from(vec![
                Some(false),
                Some(false),
                Some(true),
                None,
                Some(false)
            ])
        );
    }

    #[test]
    fn other_comparisons_are_left_alone() {
        let s = schema();
        let less: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            col("s", &s).unwrap(),
            Operator::Lt,
            lit(ScalarValue::Utf8View(Some("m".into()))),
        ));
        assert!(ViewEquals::from_expr(&less, &s).is_none());
        let null: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            col("s", &s).unwrap(),
            Operator::Eq,
            lit(ScalarValue::Utf8View(None)),
        ));
        assert!(ViewEquals::from_expr(&null, &s).is_none());
        let ints = Schema::new(vec![Field::new("s", DataType::Int64, true)]);
        let int_eq: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            col("s", &ints).unwrap(),
            Operator::Eq,
            lit(ScalarValue::Int64(Some(1))),
        ));
        assert!(ViewEquals::from_expr(&int_eq, &ints).is_none());
    }

    proptest! {
        /// `s = … AND t <> … AND s <> …` over two random columns with nulls (so the
        /// `AND` of NULL and false): rewritten, the same answer as DataFusion's `AND`.
        #[test]
        fn and_of_comparisons_the_same_as_datafusion(
            pairs in proptest::collection::vec(
                (proptest::option::weighted(0.8, 0usize..4), proptest::option::weighted(0.8, 0usize..4)),
                0..400),
            first in 0usize..4,
            second in 0usize..4,
            third in 0usize..4,
        ) {
            const WORDS: [&str; 4] = ["message_status", "failed", "message_in", "a_value_longer_than_twelve"];
            let schema = Schema::new(vec![
                Field::new("s", DataType::Utf8View, true),
                Field::new("t", DataType::Utf8View, true),
            ]);
            let s: Vec<Option<&str>> = pairs.iter().map(|p| p.0.map(|i| WORDS[i])).collect();
            let t: Vec<Option<&str>> = pairs.iter().map(|p| p.1.map(|i| WORDS[i])).collect();
            let batch = RecordBatch::try_new(
                Arc::new(schema.clone()),
                vec![Arc::new(column(&s, true)) as ArrayRef, Arc::new(column(&t, false))],
            )
            .unwrap();
            let cmp = |c: &str, op, w: usize| -> Arc<dyn PhysicalExpr> {
                Arc::new(BinaryExpr::new(
                    col(c, &schema).unwrap(),
                    op,
                    lit(ScalarValue::Utf8View(Some(WORDS[w].to_string()))),
                ))
            };
            let plain: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
                Arc::new(BinaryExpr::new(cmp("s", Operator::Eq, first), Operator::And, cmp("t", Operator::NotEq, second))),
                Operator::And,
                cmp("s", Operator::NotEq, third),
            ));
            let fast = rewrite(Arc::clone(&plain), &schema).unwrap();
            prop_assert!(fast.transformed);
            prop_assert!(fast.data.is::<ViewAll>(), "{}", fast.data);
            let run = |e: &Arc<dyn PhysicalExpr>| {
                e.evaluate(&batch).unwrap().into_array(batch.num_rows()).unwrap().as_boolean().clone()
            };
            prop_assert_eq!(run(&fast.data), run(&plain));
        }

        /// Over random columns of values sharing prefixes and lengths, with and without
        /// repeated views: the same answer as DataFusion's comparison.
        #[test]
        fn the_same_answer_as_the_plain_comparison(
            picks in proptest::collection::vec(proptest::option::weighted(0.9, 0usize..8), 0..300),
            literal in 0usize..8,
            not_equal in any::<bool>(),
            repeat in any::<bool>(),
        ) {
            const WORDS: [&str; 8] = [
                "message_status", "message_statux", "message_in", "message_out",
                "mess", "", "a_rather_long_value_kept_in_a_buffer", "a_rather_long_value_kept_in_a_buffeR",
            ];
            let values: Vec<Option<&str>> = picks.iter().map(|p| p.map(|i| WORDS[i])).collect();
            let op = if not_equal { Operator::NotEq } else { Operator::Eq };
            let (want, got) = both(op, WORDS[literal], &values, repeat);
            prop_assert_eq!(got, want);
        }
    }
}

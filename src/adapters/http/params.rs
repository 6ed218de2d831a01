//! Path and query parameters as dbt Cloud clients send them, documented with their real
//! types (integers as integers). A query value left empty counts as absent; a malformed one
//! fails with a reason that [`super::error`] renders as the contract's 400 naming the
//! parameter. Lists are accepted the ways clients spell them: `[1, 2]` (a JSON list, as
//! `__in` filters arrive), `1,2`, or repeated.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromParameter, ParseResult, Type};
use serde_json::{Value, json};

use crate::domain::catalog::Timestamp;
use crate::domain::paging::{Order, OrderField, Page, TimeRange};

/// Implements [`Type`] for a parameter type documented by an inline schema.
macro_rules! parameter {
    ($ty:ty, $name:literal, $required:literal, $schema:expr) => {
        impl Type for $ty {
            const IS_REQUIRED: bool = $required;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> Cow<'static, str> {
                $name.into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new($schema))
            }

            fn as_raw_value(&self) -> Option<&Self> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
                Box::new(std::iter::once(self))
            }
        }
    };
}

/// The first value of a parameter, trimmed; `None` when absent or empty.
fn first<I: IntoIterator<Item = A>, A: AsRef<str>>(values: I) -> Option<String> {
    values.into_iter().next().map(|v| v.as_ref().trim().to_owned()).filter(|v| !v.is_empty())
}

fn fail<T: Type>(reason: String) -> ParseError<T> {
    ParseError::custom(reason)
}

/// `[a, b]`, `["a","b"]` or `a,b` to its items (quotes and blanks dropped).
fn items(text: &str) -> Vec<String> {
    let text = text.trim();
    let inner = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    inner
        .split(',')
        .map(|part| part.trim().trim_matches(['"', '\'']).trim().to_owned())
        .filter(|part| !part.is_empty())
        .collect()
}

/// A path id: an integer in the document. Any text is taken here and the route decides what
/// it names (an `account_id` the token may not read is a 401, an id that names nothing a 404).
#[derive(Debug)]
pub struct PathId(pub String);

parameter!(PathId, "path_id", true, MetaSchema::new_with_format("integer", "int64"));

impl ParseFromParameter for PathId {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(PathId(value.to_owned()))
    }
}

impl std::ops::Deref for PathId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// An optional integer.
#[derive(Debug)]
pub struct Int(pub Option<i64>);

parameter!(Int, "integer_parameter", false, MetaSchema::new_with_format("integer", "int64"));

impl ParseFromParameter for Int {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse_from_parameters([value])
    }

    fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(values: I) -> ParseResult<Self> {
        match first(values) {
            None => Ok(Int(None)),
            Some(text) => {
                text.parse().map(|n| Int(Some(n))).map_err(|_| fail(format!("must be an integer, not {text:?}")))
            }
        }
    }
}

/// An optional count: `limit`, `offset`.
#[derive(Debug)]
pub struct Count(pub Option<u64>);

parameter!(
    Count,
    "count_parameter",
    false,
    MetaSchema { minimum: Some(0.0), ..MetaSchema::new_with_format("integer", "int64") }
);

impl ParseFromParameter for Count {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse_from_parameters([value])
    }

    fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(values: I) -> ParseResult<Self> {
        match first(values) {
            None => Ok(Count(None)),
            Some(text) => match text.parse::<i64>() {
                Ok(n) if n < 0 => Err(fail(format!("must not be negative, not {n}"))),
                Ok(n) => Ok(Count(Some(n as u64))),
                Err(_) => Err(fail(format!("must be an integer, not {text:?}"))),
            },
        }
    }
}

/// An optional list of integers, as `__in` filters send it: `[1, 2]` or `1,2`.
#[derive(Debug)]
pub struct Ints(pub Option<Vec<i64>>);

parameter!(
    Ints,
    "integer_list_parameter",
    false,
    MetaSchema {
        description: Some("A JSON list of integers such as `[1,2]` (or `1,2`)."),
        ..MetaSchema::new("string")
    }
);

impl ParseFromParameter for Ints {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse_from_parameters([value])
    }

    fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(values: I) -> ParseResult<Self> {
        let Some(text) = first(values) else { return Ok(Ints(None)) };
        items(&text)
            .iter()
            .map(|item| item.parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
            .map(|list| Ints(Some(list)))
            .map_err(|_| fail(format!("must be a list of integers such as [1,2], not {text:?}")))
    }
}

/// An optional list of names, as `__in` filters send it: `["a", "b"]` or `a,b`.
#[derive(Debug)]
pub struct Names(pub Option<Vec<String>>);

parameter!(
    Names,
    "name_list_parameter",
    false,
    MetaSchema {
        description: Some("A JSON list of names such as `[\"production\"]` (or `a,b`)."),
        ..MetaSchema::new("string")
    }
);

impl ParseFromParameter for Names {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse_from_parameters([value])
    }

    fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(values: I) -> ParseResult<Self> {
        Ok(Names(first(values).map(|text| items(&text))))
    }
}

/// An optional text filter (`name__icontains`, `name`, `type`).
#[derive(Debug)]
pub struct Text(pub Option<String>);

parameter!(Text, "text_parameter", false, MetaSchema::new("string"));

impl ParseFromParameter for Text {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse_from_parameters([value])
    }

    fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(values: I) -> ParseResult<Self> {
        Ok(Text(first(values)))
    }
}

/// `include_related`: repeated, comma-separated, a JSON list, or empty; names Jade does not
/// embed are accepted and ignored.
#[derive(Debug)]
pub struct Related(pub Vec<String>);

parameter!(
    Related,
    "related_parameter",
    false,
    MetaSchema {
        description: Some(
            "What to embed: `job`, `run_steps` (also accepted: `environment`, `trigger`); repeated, \
         comma-separated or a JSON list.",
        ),
        items: Some(Box::new(MetaSchemaRef::Inline(Box::new(MetaSchema::new("string"))))),
        ..MetaSchema::new("array")
    }
);

impl ParseFromParameter for Related {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse_from_parameters([value])
    }

    fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(values: I) -> ParseResult<Self> {
        Ok(Related(values.into_iter().flat_map(|v| items(v.as_ref())).collect()))
    }
}

impl Related {
    /// What a run answer embeds: `job` and `run_steps` (the other names dbt Cloud knows are
    /// accepted and ignored).
    pub fn of_runs(&self) -> crate::app::Embed {
        let named = |wanted: &str| self.0.iter().any(|name| name == wanted);
        crate::app::Embed { job: named("job"), run_steps: named("run_steps") }
    }

    /// The names embedded, as the list's `extra.filters` echoes them.
    pub fn echoed(embed: crate::app::Embed) -> Option<Vec<&'static str>> {
        let names: Vec<&str> = [("job", embed.job), ("run_steps", embed.run_steps)]
            .into_iter()
            .filter_map(|(name, asked)| asked.then_some(name))
            .collect();
        (!names.is_empty()).then_some(names)
    }
}

/// `created_at__range`, `finished_at__range`: a JSON list of two ISO-8601 instants, both
/// included (an instant without an offset is UTC; a date is its midnight UTC).
#[derive(Debug)]
pub struct Range(pub Option<TimeRange>);

parameter!(
    Range,
    "range_parameter",
    false,
    MetaSchema {
        description: Some(
            "A JSON list of two ISO-8601 instants, both included: `[\"2024-01-01T00:00:00Z\", \"2024-02-01T00:00:00Z\"]`.",
        ),
        ..MetaSchema::new("string")
    }
);

fn instant(text: &str) -> Option<Timestamp> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.to_utc());
    }
    if let Ok(at) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(at.to_utc());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Some(at.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|at| at.and_utc())
}

impl ParseFromParameter for Range {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse_from_parameters([value])
    }

    fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(values: I) -> ParseResult<Self> {
        let Some(text) = first(values) else { return Ok(Range(None)) };
        let wrong = || fail(format!("must be a JSON list of two ISO-8601 instants, not {text:?}"));
        let bounds: Vec<Timestamp> = match serde_json::from_str::<Vec<String>>(&text) {
            Ok(list) => list.iter().map(|t| instant(t.trim())).collect::<Option<_>>().ok_or_else(wrong)?,
            Err(_) => items(&text).iter().map(|t| instant(t)).collect::<Option<_>>().ok_or_else(wrong)?,
        };
        match bounds[..] {
            [from, to] => Ok(Range(Some(TimeRange { from, to }))),
            _ => Err(wrong()),
        }
    }
}

/// `order_by`: a field, `-` first for descending; the allowed values are listed.
#[derive(Debug)]
pub struct OrderBy<F>(pub Option<Order<F>>);

impl<F: OrderField + Send + Sync> Type for OrderBy<F> {
    const IS_REQUIRED: bool = false;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "order_by_parameter".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let allowed = F::NAMES.iter().flat_map(|n| [json!(n), json!(format!("-{n}"))]).collect();
        MetaSchemaRef::Inline(Box::new(MetaSchema { enum_items: allowed, ..MetaSchema::new("string") }))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl<F: OrderField + Send + Sync> ParseFromParameter for OrderBy<F> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse_from_parameters([value])
    }

    fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(values: I) -> ParseResult<Self> {
        let Some(text) = first(values) else { return Ok(OrderBy(None)) };
        Order::parse(&text).map(|order| OrderBy(Some(order))).map_err(|_| {
            let allowed: Vec<String> = F::NAMES.iter().flat_map(|n| [n.to_string(), format!("-{n}")]).collect();
            ParseError::custom(format!("must be one of: {}", allowed.join(", ")))
        })
    }
}

impl<F: OrderField> OrderBy<F> {
    pub fn or_default(&self) -> Order<F>
    where
        Order<F>: Default,
    {
        self.0.unwrap_or_default()
    }
}

/// A page as dbt Cloud cuts it (`limit` at most 100, default 100).
pub fn page(offset: &Count, limit: &Count) -> Page {
    Page::new(offset.0, limit.0)
}

/// `extra.filters`: the effective page and the filters applied.
pub fn filters(account_id: Option<i64>, page: Page, given: &[(&str, Option<Value>)]) -> BTreeMap<String, Value> {
    let mut filters =
        BTreeMap::from([("offset".to_owned(), json!(page.offset)), ("limit".to_owned(), json!(page.limit))]);
    if let Some(account_id) = account_id {
        filters.insert("account_id".into(), json!(account_id));
    }
    for (name, value) in given {
        if let Some(value) = value {
            filters.insert((*name).to_owned(), value.clone());
        }
    }
    filters
}

/// A filter given both as `x` and `x__in` keeps what both allow.
pub fn both(single: Option<i64>, list: Option<Vec<i64>>) -> Option<Vec<i64>> {
    match (single, list) {
        (Some(one), Some(list)) => Some(if list.contains(&one) { vec![one] } else { Vec::new() }),
        (Some(one), None) => Some(vec![one]),
        (None, list) => list,
    }
}

/// Refuses a request whose path or query holds a control character once decoded (NUL
/// included, which PostgreSQL cannot even compare): 422 naming the parameter, before any
/// route reads it. No tag, filename, slug or id Jade stores can hold one.
pub async fn refuse_control_characters(request: poem::Request) -> poem::Result<poem::Request> {
    let path = percent_encoding::percent_decode_str(request.uri().path()).decode_utf8_lossy();
    plain_text("path", &path)?;
    for (name, value) in form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes()) {
        plain_text("query", &name)?;
        plain_text(&name, &value)?;
    }
    Ok(request)
}

/// A text parameter or body field must hold no control character: 422 naming it.
pub fn plain_text(field: &str, value: &str) -> Result<(), super::error::ApiError> {
    match value.chars().any(char::is_control) {
        true => Err(crate::domain::Error::invalid(field, "must not contain control characters").into()),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: ParseFromParameter>(values: &[&str]) -> Result<T, String> {
        T::parse_from_parameters(values.iter().copied()).map_err(|e| e.into_message())
    }

    #[test]
    fn lists_parse_as_dbt_cloud_clients_send_them() {
        assert_eq!(parse::<Ints>(&["[1, 2]"]).unwrap().0, Some(vec![1, 2]));
        assert_eq!(parse::<Ints>(&["3,4"]).unwrap().0, Some(vec![3, 4]));
        assert_eq!(parse::<Ints>(&["[]"]).unwrap().0, Some(vec![]));
        assert_eq!(parse::<Ints>(&[""]).unwrap().0, None);
        assert_eq!(parse::<Ints>(&[]).unwrap().0, None);
        assert!(parse::<Ints>(&["[a]"]).unwrap_err().contains("list of integers"));
        assert_eq!(parse::<Names>(&["[\"production\"]"]).unwrap().0, Some(vec!["production".to_owned()]));
        assert_eq!(both(Some(1), Some(vec![1, 2])), Some(vec![1]));
        assert_eq!(both(Some(3), Some(vec![1, 2])), Some(vec![]));
    }

    #[test]
    fn include_related_in_every_form() {
        for values in
            [&["job"][..], &["[\"trigger\", \"job\"]"], &["trigger,job"], &["trigger", "job"], &["run_steps,job"]]
        {
            assert!(parse::<Related>(values).unwrap().of_runs().job, "{values:?}");
        }
        for values in [&[""][..], &[], &["[]"], &["trigger"], &["jobs"]] {
            assert!(!parse::<Related>(values).unwrap().of_runs().job, "{values:?}");
        }
        // dbt-mcp sends a Python list; Airflow's hook "run_steps,job".
        for values in [&["['run_steps']"][..], &["run_steps,job"], &["[\"run_steps\"]"]] {
            assert!(parse::<Related>(values).unwrap().of_runs().run_steps, "{values:?}");
        }
        let both = parse::<Related>(&["run_steps,job"]).unwrap().of_runs();
        assert_eq!(Related::echoed(both), Some(vec!["job", "run_steps"]));
        assert_eq!(Related::echoed(parse::<Related>(&["trigger"]).unwrap().of_runs()), None);
    }

    #[test]
    fn integers_and_counts() {
        assert_eq!(parse::<Int>(&[" 7 "]).unwrap().0, Some(7));
        assert_eq!(parse::<Int>(&[""]).unwrap().0, None);
        assert!(parse::<Int>(&["x"]).unwrap_err().contains("must be an integer"));
        assert!(parse::<Count>(&["-1"]).unwrap_err().contains("negative"));
        assert_eq!(parse::<Count>(&["5"]).unwrap().0, Some(5));
    }

    #[test]
    fn ranges_are_two_instants() {
        let range = parse::<Range>(&["[\"2024-01-01T00:00:00Z\", \"2024-01-02T01:00:00+01:00\"]"]).unwrap().0.unwrap();
        assert_eq!(range.from.to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert_eq!(range.to.to_rfc3339(), "2024-01-02T00:00:00+00:00");
        let naive = parse::<Range>(&["[2024-01-01, 2024-01-02 10:00:00]"]).unwrap().0.unwrap();
        assert_eq!(naive.to.to_rfc3339(), "2024-01-02T10:00:00+00:00");
        assert_eq!(parse::<Range>(&[""]).unwrap().0, None);
        for bad in ["yesterday", "[\"2024-01-01T00:00:00Z\"]", "[\"2024-01-01T00:00:00Z\", \"soon\"]"] {
            assert!(parse::<Range>(&[bad]).unwrap_err().contains("two ISO-8601 instants"), "{bad}");
        }
    }

    #[test]
    fn order_by_lists_its_values() {
        use crate::domain::paging::{RunOrder, RunSort};
        let order = parse::<OrderBy<RunSort>>(&["-finished_at"]).unwrap().or_default();
        assert_eq!(order.as_param(), "-finished_at");
        assert_eq!(parse::<OrderBy<RunSort>>(&[""]).unwrap().or_default(), RunOrder::default());
        assert!(parse::<OrderBy<RunSort>>(&["name"]).unwrap_err().contains("-created_at"));
    }
}

//! Paging through an account's run list, and what a list in order looks like.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::TestJade;
use super::seed::ACME;

/// Every order of a run list.
pub const ORDERS: [&str; 6] = ["id", "-id", "created_at", "-created_at", "finished_at", "-finished_at"];

/// acme's runs in `order`, `limit` at a time, and every `total_count` the pages answered.
pub async fn walk(jade: &TestJade, order: &str, limit: usize) -> (Vec<Value>, HashSet<i64>) {
    let mut runs = Vec::new();
    let mut totals = HashSet::new();
    loop {
        let path = format!("/api/v2/accounts/1/runs?order_by={order}&limit={limit}&offset={}", runs.len());
        let page = jade.json(ACME, &path, 200).await;
        totals.insert(page["extra"]["pagination"]["total_count"].as_i64().unwrap());
        let items = page["data"].as_array().unwrap().clone();
        assert!(items.len() <= limit);
        if items.is_empty() {
            return (runs, totals);
        }
        runs.extend(items);
    }
}

/// A run's time as either compat mode writes it (`2024-03-01T08:10:00Z`,
/// `2024-03-01 08:10:00.000000+00:00`).
pub fn instant(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?;
    let parsed = DateTime::parse_from_rfc3339(&text.replacen(' ', "T", 1));
    Some(parsed.unwrap_or_else(|e| panic!("{text} is not a time: {e}")).with_timezone(&Utc))
}

/// Each run follows the one before it in `order` (ties and missing times by id).
pub fn assert_in_order(order: &str, runs: &[Value]) {
    let descending = order.starts_with('-');
    let ids: Vec<i64> = runs.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    for (i, pair) in runs.windows(2).enumerate() {
        let key = |run: &Value| match order.trim_start_matches('-') {
            "id" => None,
            "created_at" => instant(&run["created_at"]),
            _ => instant(&run["finished_at"]),
        };
        let by_id = if descending { ids[i] > ids[i + 1] } else { ids[i] < ids[i + 1] };
        let in_order = match (key(&pair[0]), key(&pair[1])) {
            (None, None) => by_id,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) if a == b => by_id,
            (Some(a), Some(b)) => (a > b) == descending,
        };
        assert!(in_order, "{order}: run {} before run {}", ids[i], ids[i + 1]);
    }
}

/// Walks every order two runs at a time: each of the `expected` runs exactly once, in order.
pub async fn assert_paging_exact(jade: &TestJade, expected: usize) {
    for order in ORDERS {
        let (runs, totals) = walk(jade, order, 2).await;
        assert_eq!(totals, HashSet::from([expected as i64]), "{order}");
        let unique: HashSet<(String, i64)> = runs
            .iter()
            .map(|r| (r["environment_slug"].as_str().unwrap().to_owned(), r["dag_run_id"].as_i64().unwrap()))
            .collect();
        assert_eq!((runs.len(), unique.len()), (expected, expected), "{order}: a run missing or twice");
        assert_in_order(order, &runs);
    }
}

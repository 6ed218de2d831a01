//! Limits, offsets, orderings and time ranges of the list routes.

use crate::domain::Error;
use crate::domain::catalog::Timestamp;

/// Most items a list answers with; also its default page size (dbt Cloud's).
pub const MAX_PAGE: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Page {
    pub offset: u64,
    /// `None`: everything from `offset` on.
    pub limit: Option<u64>,
}

impl Page {
    /// The page of a list as dbt Cloud cuts it: `limit` defaults to and is capped at
    /// [`MAX_PAGE`], `offset` defaults to 0.
    pub fn new(offset: Option<u64>, limit: Option<u64>) -> Self {
        Page { offset: offset.unwrap_or(0), limit: Some(limit.unwrap_or(MAX_PAGE).min(MAX_PAGE)) }
    }

    /// Cuts this page out of the full, ordered list.
    pub fn slice<T>(&self, items: Vec<T>) -> Vec<T> {
        let skipped = items.into_iter().skip(usize::try_from(self.offset).unwrap_or(usize::MAX));
        match self.limit {
            Some(limit) => skipped.take(usize::try_from(limit).unwrap_or(usize::MAX)).collect(),
            None => skipped.collect(),
        }
    }
}

/// One page of a list and the size of the whole list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub total_count: u64,
}

impl<T> Listing<T> {
    /// Pages an already complete, ordered list.
    pub fn paged(all: Vec<T>, page: Page) -> Self {
        let total_count = all.len() as u64;
        Listing { items: page.slice(all), total_count }
    }
}

/// An inclusive range of instants, as dbt Cloud's `created_at__range` and
/// `finished_at__range` filters name them (Django's `__range`: both ends included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl TimeRange {
    /// Whether an instant is in the range; no instant (a run not finished) never is.
    pub fn contains(&self, at: Option<Timestamp>) -> bool {
        at.is_some_and(|at| self.from <= at && at <= self.to)
    }
}

/// Case-insensitive substring match, as dbt Cloud's `__icontains` filters match; a missing
/// value never matches.
pub fn icontains(value: Option<&str>, needle: &str) -> bool {
    value.is_some_and(|value| value.to_lowercase().contains(&needle.to_lowercase()))
}

/// A sort key and its direction, as `order_by` spells it (`-` means descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order<F> {
    pub field: F,
    pub descending: bool,
}

impl<F: OrderField> Order<F> {
    pub fn parse(value: &str) -> Result<Self, Error> {
        let (descending, name) = match value.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, value),
        };
        F::from_name(name).map(|field| Order { field, descending }).ok_or_else(|| {
            let allowed: Vec<String> = F::NAMES.iter().flat_map(|n| [n.to_string(), format!("-{n}")]).collect();
            Error::BadRequest(format!("order_by must be one of: {}", allowed.join(", ")))
        })
    }

    /// The value as `order_by` spells it, for the response's `extra.order_by`.
    pub fn as_param(&self) -> String {
        let name = self.field.name();
        if self.descending { format!("-{name}") } else { name.to_owned() }
    }
}

pub trait OrderField: Sized + Copy {
    const NAMES: &'static [&'static str];
    fn from_name(name: &str) -> Option<Self>;
    fn name(self) -> &'static str;
}

/// What a run list can be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunSort {
    Id,
    /// The DAG run's `queued_at`.
    CreatedAt,
    /// The DAG run's `end_date`; runs not finished sort last either way.
    FinishedAt,
}

impl OrderField for RunSort {
    const NAMES: &'static [&'static str] = &["id", "created_at", "finished_at"];

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "id" => Some(RunSort::Id),
            "created_at" => Some(RunSort::CreatedAt),
            "finished_at" => Some(RunSort::FinishedAt),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            RunSort::Id => "id",
            RunSort::CreatedAt => "created_at",
            RunSort::FinishedAt => "finished_at",
        }
    }
}

pub type RunOrder = Order<RunSort>;

impl Default for RunOrder {
    fn default() -> Self {
        Order { field: RunSort::Id, descending: false }
    }
}

/// What a job list can be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSort {
    Id,
    Name,
    CreatedAt,
    UpdatedAt,
}

impl OrderField for JobSort {
    const NAMES: &'static [&'static str] = &["id", "name", "created_at", "updated_at"];

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "id" => Some(JobSort::Id),
            "name" => Some(JobSort::Name),
            "created_at" => Some(JobSort::CreatedAt),
            "updated_at" => Some(JobSort::UpdatedAt),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            JobSort::Id => "id",
            JobSort::Name => "name",
            JobSort::CreatedAt => "created_at",
            JobSort::UpdatedAt => "updated_at",
        }
    }
}

pub type JobOrder = Order<JobSort>;

impl Default for JobOrder {
    fn default() -> Self {
        Order { field: JobSort::Id, descending: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_default_to_and_cap_at_one_hundred() {
        assert_eq!(Page::new(None, None), Page { offset: 0, limit: Some(100) });
        assert_eq!(Page::new(Some(5), Some(500)), Page { offset: 5, limit: Some(100) });
    }

    #[test]
    fn ranges_include_both_ends_and_never_a_missing_instant() {
        use chrono::TimeZone;
        let at = |h| chrono::Utc.with_ymd_and_hms(2024, 1, 1, h, 0, 0).unwrap();
        let range = TimeRange { from: at(1), to: at(3) };
        assert!(range.contains(Some(at(1))) && range.contains(Some(at(2))) && range.contains(Some(at(3))));
        assert!(!range.contains(Some(at(4))) && !range.contains(None));
        assert!(icontains(Some("Hourly"), "OUR") && !icontains(None, "a") && !icontains(Some("daily"), "x"));
    }

    #[test]
    fn a_listing_keeps_the_total_and_cuts_the_page() {
        let listing = Listing::paged((1..=10).collect(), Page { offset: 7, limit: Some(5) });
        assert_eq!(listing.items, vec![8, 9, 10]);
        assert_eq!(listing.total_count, 10);
        let all = Listing::paged((1..=3).collect::<Vec<_>>(), Page::default());
        assert_eq!(all.items, vec![1, 2, 3]);
        let beyond = Listing::paged((1..=3).collect::<Vec<_>>(), Page { offset: 9, limit: None });
        assert!(beyond.items.is_empty());
        assert_eq!(beyond.total_count, 3);
    }

    #[test]
    fn order_by_parses_direction_and_rejects_unknown_fields() {
        assert_eq!(RunOrder::parse("-finished_at").unwrap(), Order { field: RunSort::FinishedAt, descending: true });
        assert_eq!(RunOrder::parse("id").unwrap(), RunOrder::default());
        assert_eq!(RunOrder::parse("-id").unwrap().as_param(), "-id");
        let Err(Error::BadRequest(message)) = RunOrder::parse("name") else {
            panic!("name is not a run order");
        };
        assert!(message.contains("-created_at"), "{message}");
        assert!(JobOrder::parse("-name").is_ok());
    }
}

//! The `/worker/stats` document, in the original fleet's shape, shared by the balancer's admin
//! endpoint (one entry per server, named by its address) and the backend (one entry: itself,
//! by its `--name`), so both write the same numbers the same way.
//!
//! Four arrays, each `{"total": n}` first, then one `{"NAME": n}` per server, in order:
//!
//! ```text
//! {"SuccessfulRequests":[{"total":39},{"127.0.0.1:9001":9},{"[::1]:9002":30}],
//!  "FailedRequests":[...],"TotalRequests":[...],
//!  "AverageResponseTime":[{"total":35.0},{"127.0.0.1:9001":20.0},{"[::1]:9002":40.0}]}
//! ```
//!
//! Counts are integers; the average response time is in milliseconds, rounded to the
//! microsecond, always written as a float. The total average is weighted by requests (all time
//! over all requests), not a mean of the servers' means.

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

/// One server's answered requests, the input of a `/worker/stats` entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Replies with a status below 400.
    pub successful: u64,
    /// Replies with a status of 400 or above, or no reply.
    pub failed: u64,
    /// Sum of response times, in microseconds.
    pub time_sum_us: u64,
}

impl Counts {
    /// Every answered request: successful or failed, nothing else.
    pub fn total(&self) -> u64 {
        self.successful.saturating_add(self.failed)
    }

    /// Mean response time in milliseconds; 0 when nothing was counted.
    pub fn average_ms(&self) -> f64 {
        match self.total() {
            0 => 0.0,
            n => self.time_sum_us as f64 / 1000.0 / n as f64,
        }
    }

    fn add(&mut self, o: &Counts) {
        self.successful = self.successful.saturating_add(o.successful);
        self.failed = self.failed.saturating_add(o.failed);
        self.time_sum_us = self.time_sum_us.saturating_add(o.time_sum_us);
    }
}

/// The document. Build it with `WorkerStats::new`, write it with `crate::common::json::to_string`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerStats {
    successful_requests: Column<u64>,
    failed_requests: Column<u64>,
    total_requests: Column<u64>,
    average_response_time: Column<f64>,
}

/// One array: the total, then each server's value under its name.
#[derive(Clone, Debug, PartialEq)]
struct Column<T> {
    total: T,
    each: Vec<(String, T)>,
}

impl<T: Serialize> Serialize for Column<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(1 + self.each.len()))?;
        seq.serialize_element(&Entry("total", &self.total))?;
        for (name, v) in &self.each {
            seq.serialize_element(&Entry(name, v))?;
        }
        seq.end()
    }
}

/// `{"name": value}`.
struct Entry<'a, T>(&'a str, &'a T);

impl<T: Serialize> Serialize for Entry<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(self.0, self.1)?;
        map.end()
    }
}

impl WorkerStats {
    /// The document for these servers, in this order (names as given, duplicates kept).
    pub fn new<'a>(servers: impl IntoIterator<Item = (&'a str, Counts)>) -> WorkerStats {
        let servers: Vec<(&str, Counts)> = servers.into_iter().collect();
        let mut sum = Counts::default();
        for (_, c) in &servers {
            sum.add(c);
        }
        let ms = |c: &Counts| crate::common::json::thousandths(c.average_ms());
        WorkerStats {
            successful_requests: Column::of(&sum, &servers, |c| c.successful),
            failed_requests: Column::of(&sum, &servers, |c| c.failed),
            total_requests: Column::of(&sum, &servers, Counts::total),
            average_response_time: Column::of(&sum, &servers, ms),
        }
    }
}

impl<T> Column<T> {
    fn of(sum: &Counts, servers: &[(&str, Counts)], f: impl Fn(&Counts) -> T) -> Column<T> {
        Column { total: f(sum), each: servers.iter().map(|(n, c)| (n.to_string(), f(c))).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::json::to_string;
    use serde_json::{Value, json};

    fn counts(successful: u64, failed: u64, avg_ms: u64) -> Counts {
        Counts { successful, failed, time_sum_us: (successful + failed) * avg_ms * 1000 }
    }

    #[test]
    fn the_fleet_shape_with_a_weighted_average() {
        let doc = WorkerStats::new([("127.0.0.1:9001", counts(9, 1, 20)), ("[::1]:9002", counts(30, 0, 40))]);
        let v: Value = serde_json::from_str(&to_string(&doc)).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 4, "{v}");
        assert_eq!(v["SuccessfulRequests"], json!([{"total": 39}, {"127.0.0.1:9001": 9}, {"[::1]:9002": 30}]));
        assert_eq!(v["FailedRequests"], json!([{"total": 1}, {"127.0.0.1:9001": 1}, {"[::1]:9002": 0}]));
        assert_eq!(v["TotalRequests"], json!([{"total": 40}, {"127.0.0.1:9001": 10}, {"[::1]:9002": 30}]));
        // (10 * 20 ms + 30 * 40 ms) / 40 requests = 35 ms, not the mean of means (30 ms).
        assert_eq!(v["AverageResponseTime"], json!([{"total": 35.0}, {"127.0.0.1:9001": 20.0}, {"[::1]:9002": 40.0}]));
    }

    #[test]
    fn exact_text_counts_are_integers_and_averages_floats() {
        let c = Counts { successful: 2, failed: 1, time_sum_us: 10_001 };
        assert_eq!(
            to_string(&WorkerStats::new([("w\"1", c)])),
            r#"{"SuccessfulRequests":[{"total":2},{"w\"1":2}],"FailedRequests":[{"total":1},{"w\"1":1}],"#.to_string()
                + r#""TotalRequests":[{"total":3},{"w\"1":3}],"AverageResponseTime":[{"total":3.334},{"w\"1":3.334}]}"#
        );
    }

    #[test]
    fn no_servers_and_no_requests() {
        let v: Value = serde_json::from_str(&to_string(&WorkerStats::new([]))).unwrap();
        assert_eq!(v["TotalRequests"], json!([{"total": 0}]));
        assert_eq!(v["AverageResponseTime"], json!([{"total": 0.0}]));
        assert_eq!(Counts::default().average_ms(), 0.0);
    }
}

//! The summary table: per span name, count, total, mean, p95 and share of wall time, overall and per lane.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::timeline::Timeline;

/// Statistics of one span name, over all lanes or one lane.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// Span name (overall rows) or lane label (per-lane rows).
    pub label: String,
    /// Number of spans.
    pub count: u64,
    /// Sum of durations, ns.
    pub total_ns: u64,
    /// Mean duration, ns.
    pub mean_ns: u64,
    /// 95th percentile of durations (nearest rank), ns.
    pub p95_ns: u64,
    /// Longest, ns.
    pub max_ns: u64,
    /// `total / wall time` (of the whole timeline for overall rows, of the lane's process per lane);
    /// above 1 when spans of that name run in parallel.
    pub share: f64,
}

/// One span name with its per-lane breakdown.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NameSummary {
    /// Totals over all lanes.
    pub all: Row,
    /// One row per lane holding spans of this name, largest total first.
    pub lanes: Vec<Row>,
}

/// Summary of every span name, largest total first.
pub fn summarize(tl: &Timeline) -> Vec<NameSummary> {
    // name → lane label → durations
    let mut by_name: BTreeMap<&str, BTreeMap<String, (Vec<u64>, u64)>> = BTreeMap::new();
    let multi = tl.processes.len() > 1;
    for p in &tl.processes {
        for l in &p.lanes {
            let label = if multi { format!("{} / {}", p.label, l.name) } else { l.name.clone() };
            for s in &l.spans {
                by_name
                    .entry(&s.name)
                    .or_default()
                    .entry(label.clone())
                    .or_insert_with(|| (Vec::new(), p.wall()))
                    .0
                    .push(s.dur());
            }
        }
    }
    let mut out: Vec<NameSummary> = by_name
        .into_iter()
        .map(|(name, lanes)| {
            let mut all: Vec<u64> = Vec::new();
            let mut rows: Vec<Row> = lanes
                .into_iter()
                .map(|(label, (mut durs, wall))| {
                    all.extend_from_slice(&durs);
                    row(label, &mut durs, wall)
                })
                .collect();
            rows.sort_by_key(|r| std::cmp::Reverse(r.total_ns));
            NameSummary { all: row(name.to_owned(), &mut all, tl.wall()), lanes: rows }
        })
        .collect();
    out.sort_by(|a, b| b.all.total_ns.cmp(&a.all.total_ns).then(a.all.label.cmp(&b.all.label)));
    out
}

fn row(label: String, durs: &mut [u64], wall: u64) -> Row {
    let count = durs.len() as u64;
    let total: u64 = durs.iter().sum();
    Row {
        label,
        count,
        total_ns: total,
        mean_ns: total.checked_div(count).unwrap_or(0),
        p95_ns: percentile(durs, 0.95),
        max_ns: durs.iter().copied().max().unwrap_or(0),
        share: total as f64 / wall.max(1) as f64,
    }
}

/// Nearest-rank percentile (`q` in 0..=1) of `values`, reordering them; 0 for none.
pub fn percentile(values: &mut [u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    *values.select_nth_unstable(rank - 1).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::tests::log_with;

    #[test]
    fn percentile_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 0.95), 95);
        assert_eq!(percentile(&mut [7], 0.95), 7);
        assert_eq!(percentile(&mut [], 0.95), 0);
    }

    #[test]
    fn summary_per_name_and_lane() {
        let log = log_with(
            &[(1, "main"), (2, "writer")],
            &[(1, "x.a", 0, 10), (1, "x.a", 10, 40), (2, "x.a", 0, 60), (2, "x.b", 60, 100)],
        );
        let s = summarize(&Timeline::from_logs(vec![log]));
        assert_eq!(s[0].all.label, "x.a");
        assert_eq!((s[0].all.count, s[0].all.total_ns, s[0].all.mean_ns, s[0].all.max_ns), (3, 100, 33, 60));
        assert!((s[0].all.share - 1.0).abs() < 1e-9, "wall is 100 ns");
        assert_eq!(s[0].lanes[0].label, "writer");
        assert_eq!(s[0].lanes[1].total_ns, 40);
        assert_eq!(s[1].all.label, "x.b");
        assert!((s[1].all.share - 0.4).abs() < 1e-9);
    }
}

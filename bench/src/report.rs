//! One figure per row of the table: the service's rounds, the same-run limit's rounds,
//! their per-round ratios, and the table that prints them.

use std::fmt::Write as _;

use crate::stats::{Spread, spread};

/// What a row's ratio must reach.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// The ratio must be at least this.
    AtLeast(f64),
    /// The ratio (or the figure, without a limit) must be at most this.
    AtMost(f64),
    /// Reported, no goal.
    Report,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The short id (`--rows` takes these).
    pub id: &'static str,
    /// What is measured.
    pub title: String,
    /// The unit of the service's and the limit's figures.
    pub unit: &'static str,
    /// The service's figure per round.
    pub service: Vec<f64>,
    /// What the limit is.
    pub limit_title: String,
    /// The limit's figure per round (empty when the row has none).
    pub limit: Vec<f64>,
    /// service ÷ limit per round (or the figure itself when the goal is on it).
    pub ratios: Vec<f64>,
    /// The goal on the ratio.
    pub goal: Goal,
    /// Further measurements of the row (latencies, set-up times).
    pub details: Vec<String>,
}

impl Figure {
    /// Whether the median ratio meets the goal; `None` for reported rows.
    pub fn met(&self) -> Option<bool> {
        let ratio = spread(&self.ratios)?.median;
        match self.goal {
            Goal::AtLeast(goal) => Some(ratio >= goal),
            Goal::AtMost(goal) => Some(ratio <= goal),
            Goal::Report => None,
        }
    }
}

/// A number with as many digits as it deserves.
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        let whole = format!("{value:.0}");
        let (sign, digits) = whole
            .strip_prefix('-')
            .map_or(("", whole.as_str()), |d| ("-", d));
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{sign}{grouped}")
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn with_range(spread: Option<Spread>, unit: &str) -> String {
    spread.map_or_else(
        || "–".to_owned(),
        |s| {
            format!(
                "{} {unit} ({}–{})",
                number(s.median),
                number(s.min),
                number(s.max)
            )
        },
    )
}

/// The table as Markdown.
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::new();
    out.push_str("| row | what | service: median (min–max) | limit in the same run | limit: median (min–max) | ratio: median (±half-range) | goal | met | rounds |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for figure in figures {
        let ratio = spread(&figure.ratios).map_or_else(
            || "–".to_owned(),
            |s| {
                format!(
                    "**{}** (±{:.0} %)",
                    number(s.median),
                    s.half_range_percent()
                )
            },
        );
        let goal = match figure.goal {
            Goal::AtLeast(goal) => format!("≥ {goal}"),
            Goal::AtMost(goal) => format!("≤ {goal}"),
            Goal::Report => "report".to_owned(),
        };
        let met = match figure.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let limit = if figure.limit.is_empty() {
            "–".to_owned()
        } else {
            with_range(spread(&figure.limit), figure.unit)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            figure.id,
            figure.title,
            with_range(spread(&figure.service), figure.unit),
            figure.limit_title,
            limit,
            ratio,
            goal,
            met,
            figure.service.len()
        );
    }
    out
}

/// Every figure's details as a Markdown list.
pub fn details(figures: &[Figure]) -> String {
    let mut out = String::new();
    for figure in figures.iter().filter(|f| !f.details.is_empty()) {
        let _ = writeln!(out, "- **{}**", figure.id);
        for line in &figure.details {
            let _ = writeln!(out, "  - {line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_rounded() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
        assert_eq!(number(0.1234), "0.123");
    }

    #[test]
    fn a_figure_meets_its_goal_by_its_median_ratio() {
        let figure = Figure {
            id: "x",
            title: "x".to_owned(),
            unit: "/s",
            service: vec![1.0, 2.0, 3.0],
            limit_title: "y".to_owned(),
            limit: vec![2.0, 2.0, 2.0],
            ratios: vec![0.5, 1.0, 1.5],
            goal: Goal::AtLeast(0.6),
            details: Vec::new(),
        };
        assert_eq!(figure.met(), Some(true));
        assert!(table(&[figure]).contains("| x | x |"));
    }
}

//! The status page's throughput chart: an inline SVG bar chart drawn from a slice of per-interval
//! counts, oldest first. Pure, so it is tested without a browser.

use super::html::count;
use std::fmt::Write as _;

/// Chart size and colours.
#[derive(Debug, Clone, Copy)]
pub struct ChartStyle {
    /// Width in CSS pixels.
    pub width: u32,
    /// Height in CSS pixels.
    pub height: u32,
    /// Bar colour.
    pub bar: &'static str,
    /// Colour of the stub drawn for an empty interval.
    pub empty: &'static str,
}

impl Default for ChartStyle {
    fn default() -> Self {
        ChartStyle {
            width: 132,
            height: 36,
            bar: "#3b82f6",
            empty: "#e2e8f0",
        }
    }
}

/// An SVG bar chart of `values` (records per `bucket_s`-second interval, oldest first): one bar
/// per interval scaled to the largest, a thin stub for an empty interval, and a tooltip on each
/// bar giving its count and when it was.
pub fn bar_chart(values: &[i64], bucket_s: i64, style: ChartStyle) -> String {
    let n = values.len().max(1) as f64;
    let (w, h) = (style.width as f64, style.height as f64);
    let slot = w / n;
    let gap = (slot * 0.2).clamp(1.0, 4.0);
    let bar_w = (slot - gap).max(1.0);
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let total: i64 = values.iter().sum();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="{} records in the last {} minutes">"#,
        style.width,
        style.height,
        style.width,
        style.height,
        count(total),
        values.len() as i64 * bucket_s / 60
    );
    for (i, &v) in values.iter().enumerate() {
        let x = i as f64 * slot + gap / 2.0;
        let (bh, colour) = if v > 0 {
            ((v.max(0) as f64 / max * (h - 2.0)).max(2.0), style.bar)
        } else {
            (2.0, style.empty)
        };
        let minutes_ago_end = (values.len() - 1 - i) as i64 * bucket_s / 60;
        let minutes_ago_start = minutes_ago_end + bucket_s / 60;
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="{bar_w:.1}" height="{bh:.1}" rx="1.5" fill="{colour}"><title>{} records, {}–{} min ago</title></rect>"#,
            h - bh,
            count(v),
            minutes_ago_start,
            minutes_ago_end,
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heights(svg: &str) -> Vec<f64> {
        svg.split(" height=\"")
            .skip(2) // the <svg> element's own height
            .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
            .collect()
    }

    #[test]
    fn one_bar_per_interval_scaled_to_the_largest() {
        let svg = bar_chart(&[0, 50, 100, 25], 300, ChartStyle::default());
        assert!(svg.starts_with("<svg"));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 4);
        let h = heights(&svg);
        assert_eq!(h, vec![2.0, 17.0, 34.0, 8.5]);
    }

    #[test]
    fn empty_intervals_draw_a_stub_in_the_empty_colour() {
        let style = ChartStyle::default();
        let svg = bar_chart(&[0, 0, 0], 300, style);
        assert_eq!(svg.matches(style.empty).count(), 3);
        assert_eq!(svg.matches(style.bar).count(), 0);
        assert!(svg.contains(r#"aria-label="0 records in the last 15 minutes""#));
    }

    #[test]
    fn tooltips_say_how_many_and_when() {
        let svg = bar_chart(&[1200, 7], 300, ChartStyle::default());
        assert!(svg.contains("<title>1,200 records, 10–5 min ago</title>"));
        assert!(svg.contains("<title>7 records, 5–0 min ago</title>"));
        assert!(svg.contains(r#"aria-label="1,207 records in the last 10 minutes""#));
    }

    #[test]
    fn bars_stay_inside_the_chart() {
        let style = ChartStyle::default();
        let svg = bar_chart(&[5; 12], 300, style);
        for part in svg.split("<rect x=\"").skip(1) {
            let x: f64 = part[..part.find('"').unwrap()].parse().unwrap();
            assert!(x >= 0.0 && x < style.width as f64);
        }
        assert!(heights(&svg)
            .iter()
            .all(|&h| h <= style.height as f64 - 2.0));
    }

    #[test]
    fn no_values_is_an_empty_chart() {
        let svg = bar_chart(&[], 300, ChartStyle::default());
        assert_eq!(svg.matches("<rect").count(), 0);
    }
}

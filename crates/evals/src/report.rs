//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no external
//! resources) with the headline table, accuracy per group as bar charts, and the robustness
//! heatmap (format x group accuracy).

use crate::log::ItemRecord;
use crate::results::Results;
use std::collections::BTreeMap;
use std::fmt::Write;

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}", 100.0 * x)
    } else {
        "-".into()
    }
}

/// Horizontal bars, one per (label, fraction of the full bar, text after the bar), in the
/// order given.
pub(crate) fn bars(rows: &[(String, f64, String)], reference: Option<f64>) -> String {
    let row_h = 16;
    let label_w = 300;
    let bar_w = 360;
    let h = row_h * rows.len() + 24;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h}" role="img">"#,
        label_w + bar_w + 160
    );
    for (i, (label, acc, note)) in rows.iter().enumerate() {
        let y = 4 + i * row_h;
        let w = (acc.clamp(0.0, 1.0) * bar_w as f64).round();
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end" font-size="11">{}</text><rect x="{}" y="{}" width="{w}" height="{}" fill="#4a7ab5"><title>{}: {}</title></rect><text x="{}" y="{}" font-size="11">{}</text>"##,
            label_w - 6,
            y + 11,
            esc(label),
            label_w,
            y + 2,
            row_h - 4,
            esc(label),
            esc(note),
            label_w as f64 + w + 4.0,
            y + 11,
            esc(note)
        );
    }
    if let Some(r) = reference {
        let x = label_w as f64 + r * bar_w as f64;
        let _ = write!(
            s,
            r##"<line x1="{x}" y1="0" x2="{x}" y2="{}" stroke="#c0392b" stroke-dasharray="4 3"/><text x="{x}" y="{}" font-size="10" fill="#c0392b">reference {}%</text>"##,
            h - 14,
            h - 3,
            pct(r)
        );
    }
    s.push_str("</svg>");
    s
}

/// Format x group heatmap of accuracy.
fn heatmap(formats: &[String], groups: &[String], acc: &BTreeMap<(String, String), f64>) -> String {
    let cell = 18;
    let left = 230;
    let top = 110;
    let w = left + cell * groups.len() + 10;
    let h = top + cell * formats.len() + 10;
    let mut s =
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">"#);
    for (j, g) in groups.iter().enumerate() {
        let x = left + j * cell + cell / 2;
        let _ = write!(
            s,
            r#"<text transform="translate({x},{}) rotate(-60)" font-size="10">{}</text>"#,
            top - 4,
            esc(g)
        );
    }
    for (i, f) in formats.iter().enumerate() {
        let y = top + i * cell;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="10">{}</text>"#,
            left - 4,
            y + 13,
            esc(f)
        );
        for (j, g) in groups.iter().enumerate() {
            let Some(&a) = acc.get(&(f.clone(), g.clone())) else {
                continue;
            };
            // White (0 %) to dark blue (100 %).
            let t = a.clamp(0.0, 1.0);
            let (r, gr, b) = (
                (255.0 - t * 200.0) as u8,
                (255.0 - t * 140.0) as u8,
                (255.0 - t * 60.0) as u8,
            );
            let _ = write!(
                s,
                r##"<rect x="{}" y="{y}" width="{cell}" height="{cell}" fill="rgb({r},{gr},{b})" stroke="#fff"><title>{} / {}: {}%</title></rect>"##,
                left + j * cell,
                esc(f),
                esc(g),
                pct(a)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// The page for `results` and the `records` behind it.
pub fn html(results: &Results, records: &[&ItemRecord]) -> String {
    let mut body = String::new();
    let model = model_source(&results.model);
    let _ = write!(
        body,
        "<h1>{} on {}</h1><p>{} items; {} tasks ({} resumed); {:.1} s; {:.0} tokens/s; ethos {}; model sha256 <code>{}</code>; data sha256 <code>{}</code>; bootstrap seed {}.</p>",
        esc(&results.benchmark),
        esc(model),
        results.items,
        results.tasks,
        results.resumed,
        results.wall_seconds,
        results.tokens_per_second,
        results.ethos_version,
        esc(results.model.get("sha256").and_then(|v| v.as_str()).unwrap_or("")),
        esc(&results.dataset_sha256),
        results.seed
    );
    body.push_str("<h2>Accuracy</h2><table><tr><th>condition</th><th>format</th><th>n</th><th>acc %</th><th>95 % CI</th><th>acc_norm %</th></tr>");
    for (c, fs) in &results.metrics {
        for (f, m) in fs {
            let (value, lo, hi) = match (m.acc, m.score) {
                (Some(a), _) => (pct(a.value), pct(a.ci95[0]), pct(a.ci95[1])),
                (None, Some(s)) => (
                    format!("score {:+.3}", s.value),
                    format!("{:+.3}", s.ci95[0]),
                    format!("{:+.3}", s.ci95[1]),
                ),
                (None, None) => ("-".into(), "-".into(), "-".into()),
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{value}</td><td>[{lo}, {hi}]</td><td>{}</td></tr>",
                esc(c),
                esc(f),
                m.n,
                m.acc_norm.map_or("-".into(), |a| pct(a.value))
            );
        }
    }
    body.push_str("</table>");
    let reference = results
        .reference
        .as_ref()
        .and_then(|r| r["accuracy"].as_f64());
    if let Some(r) = &results.reference {
        let _ = write!(
            body,
            "<p>Reference: {} {} %.</p>",
            esc(r["name"].as_str().unwrap_or("")),
            pct(reference.unwrap_or(f64::NAN))
        );
    }
    for (c, fs) in &results.metrics {
        for (f, m) in fs {
            for (kind, groups) in &m.by {
                // Accuracy, or a score in [-1, 1] shown on [0, 1].
                let mut rows: Vec<(String, f64, String)> = groups
                    .iter()
                    .map(|(g, a)| match (a.acc, a.score) {
                        (Some(acc), _) => (g.clone(), acc, format!("{}% (n={})", pct(acc), a.n)),
                        (None, Some(sc)) => {
                            (g.clone(), (sc + 1.0) / 2.0, format!("{sc:+.3} (n={})", a.n))
                        }
                        (None, None) => (g.clone(), f64::NAN, format!("n={}", a.n)),
                    })
                    .collect();
                rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let _ = write!(
                    body,
                    "<h2>By {} ({}, {})</h2>{}",
                    esc(kind),
                    esc(c),
                    esc(f),
                    bars(&rows, reference)
                );
            }
        }
    }
    for (c, rb) in &results.robustness {
        let _ = write!(
            body,
            "<h2>Robustness ({}): {} formats, {} items</h2><p>Spread of accuracy across formats {} points (95 % CI [{}, {}]); the answer changes with the format for {} % of items.</p>",
            esc(c),
            rb.formats.len(),
            rb.items,
            pct(rb.spread.value),
            pct(rb.spread.ci95[0]),
            pct(rb.spread.ci95[1]),
            pct(rb.changed_share)
        );
        // Heatmap over the first group kind (country for every benchmark here).
        let mut acc: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
        let mut groups: Vec<String> = Vec::new();
        for r in records
            .iter()
            .filter(|r| &r.condition == c && rb.formats.contains(&r.format))
        {
            if let Some(g) = r.groups.values().next().and_then(|v| v.first()) {
                let e = acc.entry((r.format.clone(), g.clone())).or_default();
                e.0 += 1;
                e.1 += r.judgement.correct as usize;
                if !groups.contains(g) {
                    groups.push(g.clone());
                }
            }
        }
        groups.sort();
        let acc = acc
            .into_iter()
            .map(|(k, (n, ok))| (k, ok as f64 / n as f64))
            .collect();
        body.push_str(&heatmap(&rb.formats, &groups, &acc));
    }
    for (f, c) in &results.consistency {
        let _ = write!(
            body,
            "<h2>Consistency ({}, {} items)</h2><p>Right every way it is asked ({}): {} % (95 % CI [{}, {}]).</p>",
            esc(f),
            c.items,
            esc(&c.conditions.join(", ")),
            pct(c.all_right.value),
            pct(c.all_right.ci95[0]),
            pct(c.all_right.ci95[1])
        );
    }
    for (f, g) in &results.gaps {
        let _ = write!(
            body,
            "<h2>Gap {} minus {} ({}, {} items)</h2><p>Mean difference of scores {:+.3} (95 % CI [{:+.3}, {:+.3}]).</p><table><tr><th>{}</th><th>mean difference</th><th>95 % CI</th></tr>",
            esc(&g.conditions[0]),
            esc(&g.conditions[1]),
            esc(f),
            g.items,
            g.overall.value,
            g.overall.ci95[0],
            g.overall.ci95[1],
            esc(&g.by_kind)
        );
        for (k, v) in &g.by {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{:+.3}</td><td>[{:+.3}, {:+.3}]</td></tr>",
                esc(k),
                v.value,
                v.ci95[0],
                v.ci95[1]
            );
        }
        body.push_str("</table>");
    }
    for (c, fs) in &results.metrics {
        for (f, m) in fs {
            if let Some(h) = &m.score_histogram {
                let rows: Vec<(String, f64, String)> = h
                    .iter()
                    .enumerate()
                    .map(|(b, &n)| {
                        let lo = -1.0 + 0.2 * b as f64;
                        (
                            format!("[{lo:+.1}, {:+.1})", lo + 0.2),
                            n as f64 / m.n.max(1) as f64,
                            format!("{n}"),
                        )
                    })
                    .collect();
                let _ = write!(
                    body,
                    "<h2>Distribution of scores ({}, {})</h2>{}",
                    esc(c),
                    esc(f),
                    bars(&rows, None)
                );
            }
        }
    }
    page(&results.benchmark, &body)
}

/// Where a run's model came from, as its identity records it.
pub(crate) fn model_source(identity: &serde_json::Value) -> &str {
    identity
        .get("source")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
}

/// A whole page around `body`, titled after the benchmark.
pub(crate) fn page(benchmark: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ethos eval: {}</title><style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}code{{font-size:90%}}</style></head><body>{body}</body></html>\n",
        esc(benchmark)
    )
}

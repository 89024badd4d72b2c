//! `personas.html`: one page for a persona comparison (`ethos eval ... --persona`): for every
//! condition and format, the accuracy (or mean graded score) without a persona and with each,
//! and each persona's shift from no persona with its paired bootstrap interval, as a table
//! and as a chart of intervals around zero; each run's own report is linked.

use crate::compare::Difference;
use crate::persona::Persona;
use crate::report::{esc, model_source, page};
use crate::results::Results;
use std::fmt::Write;

/// One persona's run: the persona, its folder (relative to the page), its results and its
/// shift from the run without a persona.
pub struct PersonaRun<'a> {
    pub persona: &'a Persona,
    pub folder: String,
    pub results: &'a Results,
    pub shift: &'a [Difference],
}

/// A value as the page prints it: accuracy in points, a score with its sign; a shift
/// (`signed`) always with its sign.
fn shown(metric: &str, x: f64, signed: bool) -> String {
    match (x.is_finite(), metric == "score", signed) {
        (false, _, _) => "-".into(),
        (true, true, _) => format!("{x:+.3}"),
        (true, false, true) => format!("{:+.1}", 100.0 * x),
        (true, false, false) => format!("{:.1}", 100.0 * x),
    }
}

fn shown_shift(metric: &str, x: f64) -> String {
    shown(metric, x, true)
}

/// Each persona's shift and interval as a horizontal interval around a zero line, the axis'
/// ends labelled in the table's units.
fn intervals(metric: &str, rows: &[(String, f64, f64, f64)]) -> String {
    let (row_h, label_w, plot_w) = (18.0, 300.0, 420.0);
    let reach = rows
        .iter()
        .flat_map(|r| [r.1.abs(), r.2.abs(), r.3.abs()])
        .filter(|x| x.is_finite())
        .fold(0.01f64, f64::max);
    let x_of = |v: f64| label_w + plot_w / 2.0 + v / reach * (plot_w / 2.0 - 10.0);
    let h = row_h * rows.len() as f64 + 20.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h}" role="img">"#,
        label_w + plot_w + 20.0
    );
    let zero = x_of(0.0);
    let _ = write!(
        s,
        r##"<line x1="{zero}" y1="0" x2="{zero}" y2="{}" stroke="#888"/><line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#ccc"/>"##,
        h - 14.0,
        x_of(-reach),
        h - 14.0,
        x_of(reach),
        h - 14.0
    );
    for (v, label) in [
        (-reach, shown_shift(metric, -reach)),
        (0.0, "0".into()),
        (reach, shown_shift(metric, reach)),
    ] {
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
            x_of(v),
            h - 3.0,
            esc(&label)
        );
    }
    for (i, (label, value, lo, hi)) in rows.iter().enumerate() {
        if !value.is_finite() {
            continue;
        }
        let y = 4.0 + i as f64 * row_h + row_h / 2.0;
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end" font-size="11">{}</text><line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#4a7ab5" stroke-width="2"/><circle cx="{}" cy="{y}" r="4" fill="#4a7ab5"><title>{}: {value:+.4} [{lo:+.4}, {hi:+.4}]</title></circle>"##,
            label_w - 6.0,
            y + 4.0,
            esc(label),
            x_of(*lo),
            x_of(*hi),
            x_of(*value),
            esc(label),
        );
    }
    s.push_str("</svg>");
    s
}

/// The page for the run without a persona (`base`, in folder `base_folder`) and `runs`.
pub fn html(base: &Results, base_folder: &str, runs: &[PersonaRun]) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}: personas, on {}</h1><p>The same items asked without a persona and as each of {} personas. A shift is the persona's run minus the run without one, item by item over the items both judged, with a paired bootstrap 95 % interval (seed {}). Accuracy and shifts in points; graded benchmarks show mean scores.</p>",
        esc(&base.benchmark),
        esc(model_source(&base.model)),
        runs.len(),
        base.seed
    );
    body.push_str("<table><tr><th>persona</th><th>instruction</th><th>report</th></tr>");
    let _ = write!(
        body,
        "<tr><td>none</td><td></td><td><a href=\"{0}/report.html\">{0}</a></td></tr>",
        esc(base_folder)
    );
    for r in runs {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td><a href=\"{2}/report.html\">{2}</a></td></tr>",
            esc(&r.persona.persona),
            esc(&r.persona.instruction),
            esc(&r.folder)
        );
    }
    body.push_str("</table>");
    for (c, fs) in &base.metrics {
        for (f, m) in fs {
            let (metric, without) = match (m.acc, m.score) {
                (Some(a), _) => ("accuracy", a),
                (None, Some(s)) => ("score", s),
                (None, None) => continue,
            };
            let _ = write!(
                body,
                "<h2>{} ({}, {})</h2><table><tr><th>persona</th><th>n</th><th>{metric}</th><th>95 % CI</th><th>shift from none</th><th>95 % CI</th></tr><tr><td>none</td><td>{}</td><td>{}</td><td>[{}, {}]</td><td></td><td></td></tr>",
                metric,
                esc(c),
                esc(f),
                m.n,
                shown(metric, without.value, false),
                shown(metric, without.ci95[0], false),
                shown(metric, without.ci95[1], false)
            );
            let mut chart = Vec::new();
            for r in runs {
                let Some(d) = r.shift.iter().find(|d| &d.condition == c && &d.format == f) else {
                    continue;
                };
                let own = r.results.metrics.get(c).and_then(|x| x.get(f));
                let value = own.and_then(|m| m.acc.or(m.score));
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>[{}, {}]</td></tr>",
                    esc(&r.persona.persona),
                    d.n,
                    shown(metric, d.steered, false),
                    value.map_or("-".into(), |v| format!(
                        "[{}, {}]",
                        shown(metric, v.ci95[0], false),
                        shown(metric, v.ci95[1], false)
                    )),
                    shown_shift(metric, d.difference.value),
                    shown_shift(metric, d.difference.ci95[0]),
                    shown_shift(metric, d.difference.ci95[1])
                );
                chart.push((
                    r.persona.persona.clone(),
                    d.difference.value,
                    d.difference.ci95[0],
                    d.difference.ci95[1],
                ));
            }
            body.push_str("</table>");
            body.push_str(&intervals(metric, &chart));
        }
    }
    page(&format!("{} personas", base.benchmark), &body)
}

//! The Utility Engineering run's page.

use super::UtilityResults;
use crate::report::{bars, esc, model_source, page, pct};
use std::fmt::Write;

/// The Utility Engineering page: fit quality, and every outcome's utility as a bar (the
/// means span about -3..3 after standardisation; bars show them on [0, 1] from -3 to 3).
pub fn html(r: &UtilityResults) -> String {
    let mut body = String::new();
    let model = model_source(&r.model);
    let _ = write!(
        body,
        "<h1>utility on {}</h1><p>{} outcomes, {} format; {} training pairs asked in both orders over {} rounds, {} pseudolabels; {:.1} s; ethos {}; model sha256 <code>{}</code>; outcomes sha256 <code>{}</code>; seed {}.</p>",
        esc(model),
        r.outcomes,
        r.format,
        r.training_edges_queried,
        r.rounds,
        r.pseudolabels,
        r.wall_seconds,
        r.ethos_version,
        esc(r.model.get("sha256").and_then(|v| v.as_str()).unwrap_or("")),
        esc(&r.dataset_sha256),
        r.seed
    );
    let _ = write!(
        body,
        "<table><tr><th></th><th>pairs</th><th>accuracy %</th><th>log loss</th></tr><tr><td>held out</td><td>{}</td><td>{}</td><td>{:.4}</td></tr><tr><td>training</td><td>{}</td><td>{}</td><td>{:.4}</td></tr></table>",
        r.holdout_edges,
        pct(r.holdout_accuracy),
        r.holdout_log_loss,
        r.training_edges_queried + r.pseudolabels,
        pct(r.train_accuracy),
        r.train_log_loss
    );
    let rows: Vec<(String, f64, String)> = r
        .utilities
        .iter()
        .map(|u| {
            let label: String = u.outcome.chars().take(48).collect();
            (
                label,
                ((u.mean + 3.0) / 6.0).clamp(0.0, 1.0),
                format!("{:+.3} (variance {:.3})", u.mean, u.variance),
            )
        })
        .collect();
    let _ = write!(
        body,
        "<h2>Utilities, best first (bar: mean from -3 to +3)</h2>{}",
        bars(&rows, None)
    );
    page("utility", &body)
}

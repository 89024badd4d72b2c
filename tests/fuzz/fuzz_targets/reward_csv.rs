//! A reward table (CSV), then the MAP solver on it: a quantile palette on every value,
//! solved exactly and by the reference's Adam, and the nearest feasible palette.
#![no_main]
use ethos_steer::palette::read_table;
use ethos_steer::palette::solver::{mean, nearest_feasible, quantile, solve, Objective, Solver};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

fuzz_target!(|data: &[u8]| {
    let path = ethos_fuzz::scratch("rewards.csv", data);
    let Ok(table) = read_table(&path) else {
        return;
    };
    if table.rows.len() > 2000 {
        return;
    }
    let m = table.values.len();
    let targets: Vec<(usize, f64)> = (0..m).map(|k| (k, quantile(&table, k, 0.7))).collect();
    let base: Vec<f64> = (0..m).map(|k| mean(&table, k)).collect();
    for objective in [Objective::Joint, Objective::PerPrompt] {
        let _ = solve(&table, &targets, Solver::Newton, objective, 0.0);
        let _ = solve(&table, &targets, Solver::Adam150, objective, 0.0);
        let _ = nearest_feasible(&table, &targets, &base, objective);
    }
});

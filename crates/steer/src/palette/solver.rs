//! The MAP dual (Wang et al., "MAP: Multi-Human-Value Alignment Palette", ICLR 2025): find
//! lambda >= 0 maximising g(lambda) = lambda.c - log mean_j exp(lambda.r_j) over base samples
//! r_j, so that the tilted distribution w_j ∝ exp(lambda.r_j) reaches every target c_i with
//! the least KL from the base model (min KL = g(lambda*)).
//!
//! Two solvers: projected Newton in f64 (the default: exact zeros for inactive values, KKT
//! residual below 1e-10), and `adam150`, the reference repository's own procedure (Adam, lr
//! 0.1, on tau = log lambda from lambda = 1, 150 steps, float32 `exp`, so any lambda.r_j above
//! 88.72 overflows and the palette is reported infeasible) for reproducing its numbers.
//! Two objectives: `joint` (one normaliser over all samples, what the paper optimises) and
//! `per-prompt` (one normaliser per prompt, what a per-prompt decoder realises).

use serde::Serialize;

/// Rewards of base samples: `rows[j][k]` is value k of sample j; `groups[j]` the prompt of
/// sample j (all 0 for the joint objective).
pub struct RewardTable {
    pub values: Vec<String>,
    pub rows: Vec<Vec<f64>>,
    pub groups: Vec<usize>,
    pub n_groups: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    Joint,
    PerPrompt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    Newton,
    Adam150,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Feasible,
    Infeasible,
    /// Feasible, but the effective sample size at lambda* is below the floor asked for.
    FeasibleLowEss,
}

#[derive(Clone, Debug)]
pub struct Solution {
    pub status: Status,
    /// One per value of the table (0 for values without a target).
    pub lambda: Vec<f64>,
    /// Predicted level of every value under the tilt (targeted or not).
    pub levels: Vec<f64>,
    /// The dual value at lambda: the KL from the base distribution, in nats.
    pub kl: f64,
    pub ess: f64,
    pub iterations: usize,
}

/// The dual and its gradient at lambda (over the targeted values), the tilted weights, the
/// predicted levels of every value and the ESS.
struct Eval {
    g: f64,
    grad: Vec<f64>,
    w: Vec<f64>,
    levels: Vec<f64>,
    ess: f64,
}

fn evaluate(
    table: &RewardTable,
    targets: &[(usize, f64)],
    lambda: &[f64],
    objective: Objective,
) -> Eval {
    let m = table.values.len();
    let s: Vec<f64> = table
        .rows
        .iter()
        .map(|r| targets.iter().map(|&(k, _)| lambda[k] * r[k]).sum())
        .collect();
    let n_groups = if objective == Objective::Joint {
        1
    } else {
        table.n_groups
    };
    let group_of = |j: usize| {
        if objective == Objective::Joint {
            0
        } else {
            table.groups[j]
        }
    };
    // Per group: max, normaliser, count.
    let mut gmax = vec![f64::NEG_INFINITY; n_groups];
    let mut count = vec![0usize; n_groups];
    for (j, &sj) in s.iter().enumerate() {
        let g = group_of(j);
        gmax[g] = gmax[g].max(sj);
        count[g] += 1;
    }
    let mut z = vec![0.0; n_groups];
    for (j, &sj) in s.iter().enumerate() {
        let g = group_of(j);
        z[g] += (sj - gmax[g]).exp();
    }
    let used: Vec<usize> = (0..n_groups).filter(|&g| count[g] > 0).collect();
    let ng = used.len() as f64;
    // log-normaliser averaged over groups; weights w_j = e^{s_j} / Z_g / (number of groups)
    let log_z: f64 = used
        .iter()
        .map(|&g| gmax[g] + (z[g] / count[g] as f64).ln())
        .sum::<f64>()
        / ng;
    let w: Vec<f64> = s
        .iter()
        .enumerate()
        .map(|(j, &sj)| {
            let g = group_of(j);
            (sj - gmax[g]).exp() / z[g] / ng
        })
        .collect();
    let mut levels = vec![0.0; m];
    for (j, r) in table.rows.iter().enumerate() {
        for k in 0..m {
            levels[k] += w[j] * r[k];
        }
    }
    let g = targets.iter().map(|&(k, c)| lambda[k] * c).sum::<f64>() - log_z;
    let grad = targets.iter().map(|&(k, c)| c - levels[k]).collect();
    let sum_w: f64 = w.iter().sum();
    let sum_w2: f64 = w.iter().map(|x| x * x).sum();
    Eval {
        g,
        grad,
        w,
        levels,
        ess: sum_w * sum_w / sum_w2,
    }
}

/// The Hessian of the dual over the targeted values: minus the (group-averaged) covariance of
/// their rewards under the tilted weights `w`. Only Newton's step needs it, not its line search.
fn hessian(
    table: &RewardTable,
    targets: &[(usize, f64)],
    objective: Objective,
    w: &[f64],
) -> Vec<Vec<f64>> {
    let n_groups = if objective == Objective::Joint {
        1
    } else {
        table.n_groups
    };
    let group_of = |j: usize| {
        if objective == Objective::Joint {
            0
        } else {
            table.groups[j]
        }
    };
    // Weights sum to 1/(groups used) within each group.
    let mut group_w = vec![0.0; n_groups];
    for (j, &wj) in w.iter().enumerate() {
        group_w[group_of(j)] += wj;
    }
    let t = targets.len();
    let mut group_mean = vec![vec![0.0; t]; n_groups];
    for (j, r) in table.rows.iter().enumerate() {
        let g = group_of(j);
        for (a, &(k, _)) in targets.iter().enumerate() {
            group_mean[g][a] += w[j] / group_w[g] * r[k];
        }
    }
    let mut hess = vec![vec![0.0; t]; t];
    for (j, r) in table.rows.iter().enumerate() {
        let g = group_of(j);
        for a in 0..t {
            let da = r[targets[a].0] - group_mean[g][a];
            for b in 0..t {
                let db = r[targets[b].0] - group_mean[g][b];
                hess[a][b] -= w[j] * da * db;
            }
        }
    }
    hess
}

/// Solves `a x = b` for a symmetric positive definite `a` (Cholesky), or None.
fn solve_spd(a: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i][j];
            for (lik, ljk) in l[i][..j].iter().zip(&l[j][..j]) {
                sum -= lik * ljk;
            }
            if i == j {
                if sum <= 0.0 {
                    return None;
                }
                l[i][i] = sum.sqrt();
            } else {
                l[i][j] = sum / l[j][j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    Some(x)
}

/// Largest lambda before the palette is called infeasible (the dual diverges there).
const LAMBDA_CAP: f64 = 1e3;
const KKT_TOL: f64 = 1e-10;

fn kkt_residual(lambda: &[f64], targets: &[(usize, f64)], grad: &[f64]) -> f64 {
    targets
        .iter()
        .zip(grad)
        .map(|(&(k, _), &g)| if lambda[k] > 0.0 { g.abs() } else { g.max(0.0) })
        .fold(0.0, f64::max)
}

fn newton(
    table: &RewardTable,
    targets: &[(usize, f64)],
    objective: Objective,
) -> (Vec<f64>, bool, usize) {
    let m = table.values.len();
    let mut lambda = vec![0.0; m];
    for it in 0..200 {
        let e = evaluate(table, targets, &lambda, objective);
        if kkt_residual(&lambda, targets, &e.grad) < KKT_TOL {
            return (lambda, true, it);
        }
        // Free set: positive lambda, or a gradient pushing up from zero.
        let free: Vec<usize> = (0..targets.len())
            .filter(|&a| lambda[targets[a].0] > 0.0 || e.grad[a] > 0.0)
            .collect();
        let hess = hessian(table, targets, objective, &e.w);
        let h: Vec<Vec<f64>> = free
            .iter()
            .map(|&a| free.iter().map(|&b| -hess[a][b]).collect())
            .collect();
        let gf: Vec<f64> = free.iter().map(|&a| e.grad[a]).collect();
        // Newton direction on the free set (gradient ascent if the covariance is singular).
        let dir = solve_spd(&h, &gf).unwrap_or_else(|| gf.clone());
        let mut step = 1.0;
        let mut moved = false;
        for _ in 0..60 {
            let mut trial = lambda.clone();
            for (i, &a) in free.iter().enumerate() {
                let k = targets[a].0;
                trial[k] = (lambda[k] + step * dir[i]).max(0.0);
            }
            if evaluate(table, targets, &trial, objective).g >= e.g - 1e-15 * e.g.abs().max(1.0) {
                lambda = trial;
                moved = true;
                break;
            }
            step *= 0.5;
        }
        if !moved || lambda.iter().any(|&l| l > LAMBDA_CAP || !l.is_finite()) {
            return (lambda, false, it);
        }
    }
    let e = evaluate(table, targets, &lambda, objective);
    let ok = kkt_residual(&lambda, targets, &e.grad) < 1e-6;
    (lambda, ok, 200)
}

/// The table with each column mapped to values of order one, `(r / top - mean) / spread`,
/// where `top` is the column's largest magnitude and `mean`, `spread` are the mean and
/// standard deviation of `r / top`. The tilt's weights and its KL do not change (a shift
/// cancels in the normaliser, a scale moves into lambda), but rewards and targets near the
/// float range no longer overflow lambda . r, and Newton's tolerances mean the same on every
/// column.
struct Standardized {
    table: RewardTable,
    top: Vec<f64>,
    mean: Vec<f64>,
    spread: Vec<f64>,
    max: Vec<f64>,
}

impl Standardized {
    fn new(table: &RewardTable) -> Self {
        let m = table.values.len();
        let n = table.rows.len() as f64;
        let (mut top, mut mean, mut spread, mut max) = (
            vec![1.0; m],
            vec![0.0; m],
            vec![1.0; m],
            vec![f64::NEG_INFINITY; m],
        );
        for k in 0..m {
            let col = || table.rows.iter().map(move |r| r[k]);
            max[k] = col().fold(f64::NEG_INFINITY, f64::max);
            let t = col().fold(0.0, |a: f64, x| a.max(x.abs()));
            if t > 0.0 {
                top[k] = t;
            }
            mean[k] = col().map(|x| x / top[k]).sum::<f64>() / n;
            let var = col().map(|x| (x / top[k] - mean[k]).powi(2)).sum::<f64>() / n;
            if var > 0.0 {
                spread[k] = var.sqrt();
            }
        }
        let rows = table
            .rows
            .iter()
            .map(|r| {
                (0..m)
                    .map(|k| (r[k] / top[k] - mean[k]) / spread[k])
                    .collect()
            })
            .collect();
        Self {
            table: RewardTable {
                values: table.values.clone(),
                rows,
                groups: table.groups.clone(),
                n_groups: table.n_groups,
            },
            top,
            mean,
            spread,
            max,
        }
    }

    fn targets(&self, targets: &[(usize, f64)]) -> Vec<(usize, f64)> {
        targets
            .iter()
            .map(|&(k, c)| (k, (c / self.top[k] - self.mean[k]) / self.spread[k]))
            .collect()
    }

    /// Newton on the standardized table, lambda in the table's own units. A target above
    /// its column's largest reward is out of reach of any tilt (and, near the float range,
    /// would not even be finite once standardized).
    fn newton(&self, targets: &[(usize, f64)], objective: Objective) -> (Vec<f64>, bool, usize) {
        if targets.iter().any(|&(k, c)| c > self.max[k]) {
            return (vec![f64::NAN; self.top.len()], false, 0);
        }
        let (mut lambda, ok, it) = newton(&self.table, &self.targets(targets), objective);
        for (k, l) in lambda.iter_mut().enumerate() {
            *l = *l / self.spread[k] / self.top[k];
        }
        (lambda, ok, it)
    }

    /// The tilt at `lambda` (in the table's units), evaluated on the standardized table;
    /// levels come back in the table's units.
    fn evaluate(&self, targets: &[(usize, f64)], lambda: &[f64], objective: Objective) -> Eval {
        let scaled: Vec<f64> = lambda
            .iter()
            .enumerate()
            .map(|(k, l)| l * self.top[k] * self.spread[k])
            .collect();
        let mut e = evaluate(&self.table, &self.targets(targets), &scaled, objective);
        for (k, level) in e.levels.iter_mut().enumerate() {
            *level = (*level * self.spread[k] + self.mean[k]) * self.top[k];
        }
        e
    }
}

/// The reference procedure: Adam(lr 0.1) on tau = log lambda from tau = 0, 150 steps; the
/// lambda computed at the start of the last step is returned; float32 `exp` overflow (any
/// lambda.r_j > 88.72) turns everything NaN, which the reference reports as infeasible.
fn adam150(
    table: &RewardTable,
    targets: &[(usize, f64)],
    objective: Objective,
) -> (Vec<f64>, bool) {
    let m = table.values.len();
    let t = targets.len();
    let mut tau = vec![0.0f64; t];
    let (mut mom, mut vel) = (vec![0.0; t], vec![0.0; t]);
    let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-8, 0.1);
    let mut lambda = vec![0.0; m];
    for step in 1..=150 {
        for (a, &(k, _)) in targets.iter().enumerate() {
            lambda[k] = tau[a].exp();
        }
        let overflow = table
            .rows
            .iter()
            .any(|r| targets.iter().map(|&(k, _)| lambda[k] * r[k]).sum::<f64>() > 88.72);
        if overflow || lambda.iter().any(|l| !l.is_finite()) {
            return (vec![f64::NAN; m], false);
        }
        if step == 150 {
            break;
        }
        let e = evaluate(table, targets, &lambda, objective);
        for a in 0..t {
            // d(-g)/d tau = -grad * lambda
            let gr = -e.grad[a] * lambda[targets[a].0];
            mom[a] = b1 * mom[a] + (1.0 - b1) * gr;
            vel[a] = b2 * vel[a] + (1.0 - b2) * gr * gr;
            let mh = mom[a] / (1.0 - b1.powi(step));
            let vh = vel[a] / (1.0 - b2.powi(step));
            tau[a] -= lr * mh / (vh.sqrt() + eps);
        }
    }
    (lambda, true)
}

/// Solves the palette `targets` (value index, target level) on `table`. `min_ess` is the
/// floor below which a feasible palette is flagged.
pub fn solve(
    table: &RewardTable,
    targets: &[(usize, f64)],
    solver: Solver,
    objective: Objective,
    min_ess: f64,
) -> Solution {
    let std = Standardized::new(table);
    let (lambda, ok, iterations) = match solver {
        Solver::Newton => std.newton(targets, objective),
        Solver::Adam150 => {
            let (l, ok) = adam150(table, targets, objective);
            (l, ok, 150)
        }
    };
    if !ok {
        // The dual diverges: there is no lambda to report.
        return Solution {
            status: Status::Infeasible,
            levels: vec![f64::NAN; table.values.len()],
            lambda: vec![f64::NAN; table.values.len()],
            kl: f64::NAN,
            ess: f64::NAN,
            iterations,
        };
    }
    // Adam reproduces the reference in the table's own units; its lambda evaluates the same
    // on the standardized table.
    let e = std.evaluate(targets, &lambda, objective);
    let status = if e.ess < min_ess {
        Status::FeasibleLowEss
    } else {
        Status::Feasible
    };
    Solution {
        status,
        lambda,
        levels: e.levels,
        kl: e.g,
        ess: e.ess,
        iterations,
    }
}

/// The paper's automatic palette adjustment (Algorithm 2): bisect rho in [0, 1] along
/// c(rho) = base + rho (target - base) for the furthest feasible palette; the bracket stops
/// at 1e-3 in palette distance, or after `MAX_BISECTIONS` halvings (a distance of 1e300
/// would otherwise take a thousand Newton solves). Returns (rho, palette).
pub fn nearest_feasible(
    table: &RewardTable,
    targets: &[(usize, f64)],
    base: &[f64],
    objective: Objective,
) -> (f64, Vec<(usize, f64)>) {
    let at = |rho: f64| -> Vec<(usize, f64)> {
        targets
            .iter()
            .map(|&(k, c)| (k, base[k] + rho * (c - base[k])))
            .collect()
    };
    let dist: f64 = targets
        .iter()
        .map(|&(k, c)| (c - base[k]).powi(2))
        .sum::<f64>()
        .sqrt();
    let std = Standardized::new(table);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut halvings = 0;
    while (hi - lo) * dist > 1e-3 && halvings < MAX_BISECTIONS {
        halvings += 1;
        let mid = 0.5 * (lo + hi);
        if std.newton(&at(mid), objective).1 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo, at(lo))
}

/// Halvings of `nearest_feasible`'s bracket at most: rho to 2^-60, finer than any palette
/// distance a float can tell apart.
pub const MAX_BISECTIONS: usize = 60;

/// numpy.quantile (linear) of a column.
pub fn quantile(table: &RewardTable, k: usize, q: f64) -> f64 {
    let mut v: Vec<f64> = table.rows.iter().map(|r| r[k]).collect();
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

pub fn mean(table: &RewardTable, k: usize) -> f64 {
    table.rows.iter().map(|r| r[k]).sum::<f64>() / table.rows.len() as f64
}

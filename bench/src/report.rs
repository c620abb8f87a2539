//! Printing figures in the `case=… value=… unit=…` form, and medians.

/// The median of some measurements (the mean of the two middle ones for an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Prints one figure.
pub fn figure(case: &str, method: Option<&str>, value: f64, unit: &str) {
    match method {
        Some(m) => println!("case={case} method={m} value={value:.4} unit={unit}"),
        None => println!("case={case} value={value:.4} unit={unit}"),
    }
}

/// Prints a speedup over Python, for a time per operation (lower is better).
pub fn time_ratio(case: &str, label: &str, ours: f64, python: f64) {
    println!("case={case} {label}={:.2}", python / ours);
}

/// Prints a speedup over Python, for a rate (higher is better).
pub fn rate_ratio(case: &str, ours: f64, python: f64) {
    println!("case={case} ratio={:.2}", ours / python);
}

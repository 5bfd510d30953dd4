//! Helpers the kernel tests share.

use std::collections::BTreeMap;
use wafer_emulator::{Arch, Arrivals, RunConfig, RunResult};
use wafer_kernels::Fragment;

/// `f` run on its default inputs with them arriving late, as
/// [`late_arrivals`] draws from `delays`: the run, and per input stream
/// the cycle each wavelet is then pushed in.
pub fn run_late(
    f: &Fragment,
    arch: &Arch,
    delays: &[(u64, bool)],
) -> (RunResult, BTreeMap<String, Vec<u64>>) {
    let (arrivals, pushed) = late_arrivals(f, delays);
    let cfg = RunConfig {
        arrivals: Some(std::sync::Arc::new(arrivals)),
        ..RunConfig::default()
    };
    let (_, run) = f.run(arch, &f.default_inputs(), &cfg).unwrap();
    (run, pushed)
}

/// Arrivals for a fragment's input streams that start late and come in
/// bursts, drawn from `delays` (each pair: a gap of up to 6 cycles before
/// a wavelet, and whether the next stream is hindered at all); and, per
/// stream, the cycle each wavelet is then pushed in (in order, one a
/// cycle at most), as the kernels' fed cost models take them.
fn late_arrivals(f: &Fragment, delays: &[(u64, bool)]) -> (Arrivals, BTreeMap<String, Vec<u64>>) {
    let mut arrivals = Arrivals::new();
    let mut pushed = BTreeMap::new();
    let mut d = delays.iter().cycle();
    for input in &f.program.inputs {
        let hindered = d.next().is_none_or(|d| d.1);
        let mut t = 0u64;
        let (mut at, mut pushes) = (Vec::new(), Vec::<u64>::new());
        for _ in 0..input.wavelets() {
            if hindered {
                t += d.next().map_or(0, |d| d.0 % 7);
            }
            at.push(t);
            pushes.push(pushes.last().map_or(t, |p| (p + 1).max(t)));
        }
        pushed.insert(input.name.clone(), pushes);
        arrivals.insert(input.name.clone(), at);
    }
    (arrivals, pushed)
}
